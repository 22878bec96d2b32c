"""The code location, loaded by `dagster dev` (workspace.yaml) and `dagster ... -m`."""

# ruff: noqa: E402  (the configuration is checked before the modules that read it load)

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from feature_assets import settings

# Every bad FEATURE_ASSETS_* value is named at load, before any module reads one or any run
# starts (a bad storage URL would otherwise fail every day of a run after reading the source).
settings.check_configuration()

from feature_assets.alerts import slack_on_run_failure
from feature_assets.assets.features import race_features
from feature_assets.assets.raw import raw_snapshot
from feature_assets.automation import JOB_NAME, daily_race_features, recompute_after_corrections
from feature_assets.resources import build_resources

race_features_job = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.assets(raw_snapshot, race_features),
    description="Snapshot the source and compute the features for the selected days.",
)

defs = Definitions(
    assets=[raw_snapshot, race_features],
    jobs=[race_features_job],
    schedules=[daily_race_features],
    sensors=[slack_on_run_failure, recompute_after_corrections],
    resources=build_resources(),
    # The steps run one after the other (features need the snapshot), so a process per step
    # buys no parallelism; it costs a Python start-up per step, and a step process orphaned by
    # a killed run worker could still write. One process per run avoids both.
    executor=in_process_executor,
)
