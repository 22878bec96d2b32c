"""The code location, loaded by `dagster dev` (workspace.yaml) and `dagster ... -m`."""

# ruff: noqa: E402  (the configuration is checked before the modules that read it load)

from __future__ import annotations

import warnings

from dagster import AssetSelection, BetaWarning, Definitions, define_asset_job, in_process_executor

from feature_assets import settings
from feature_assets.defs.resources import check_source_url
from feature_assets.io import memory
from feature_assets.ops.pods import check_set_pods

# Every bad FEATURE_ASSETS_* value is named at load, before any module reads one or any run
# starts (a bad storage URL would otherwise fail every day of a run after reading the source).
settings.check_configuration(check_source_url, check_set_pods)
settings.enable_event_batches()  # this process's runs write their events in batches
memory.use_the_system_allocator()  # Arrow's buffers from malloc, handed back after big steps

from feature_assets.defs.alerts import slack_on_run_failure
from feature_assets.defs.automation import (
    JOB_NAME,
    daily_race_features,
    recompute_after_corrections,
)
from feature_assets.defs.features import feature_set_asset
from feature_assets.defs.predictions import (
    measure_predicted_days,
    predict_job,
    predict_today,
    prediction_results,
    predictions,
)
from feature_assets.defs.raw import raw_snapshot
from feature_assets.defs.resources import build_resources
from feature_assets.defs.stale import stale_days_check, stale_days_sensor
from feature_assets.defs.training import (
    training_data,
    tune_win_model,
    tuning_workers,
    walk_forward_backtest,
    win_model,
)
from feature_assets.feature_sets import registered_sets

feature_set_assets = [feature_set_asset(feature_set) for feature_set in registered_sets()]

race_features_job = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.assets(raw_snapshot, *feature_set_assets),
    description="Snapshot the source and compute every feature set for the selected days.",
)

# Dagster 1.13 copies a sensor that targets a job to bind its resources and passes the copy
# `owners=[]` (SensorDefinition.with_attributes), which warns that `owners` is beta on every
# load, though no sensor here sets owners.
warnings.filterwarnings(
    "ignore", category=BetaWarning, message="Parameter `owners` of initializer `SensorDefinition"
)

defs = Definitions(
    assets=[
        raw_snapshot,
        *feature_set_assets,
        training_data,
        win_model,
        walk_forward_backtest,
        predictions,
        prediction_results,
    ],
    asset_checks=[stale_days_check(feature_set) for feature_set in registered_sets()],
    jobs=[race_features_job, tune_win_model, predict_job],
    schedules=[daily_race_features, predict_today],
    sensors=[
        slack_on_run_failure,
        recompute_after_corrections,
        tuning_workers,
        stale_days_sensor,
        measure_predicted_days,
    ],
    resources=build_resources(),
    # The steps run one after the other in one process (features need the snapshot); a
    # feature set spreads its days over worker processes itself (FEATURE_ASSETS_WORKERS).
    # One process per step would cost a Python start-up per step, and a step process
    # orphaned by a killed run worker could still write.
    executor=in_process_executor,
)
