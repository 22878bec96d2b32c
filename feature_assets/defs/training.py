"""Training and tuning, wired into Dagster (the work lives in `feature_assets.training`).

- `training_data`: every feature set's days of the window joined with the label, split by
  time, stored as one Parquet file with its lineage (sets, code versions, days).
- `tune_win_model`: a job whose runs draw trials from one Optuna study until its queue is
  empty; `feature-assets tune --trials N --parallel K` fills the queue and `tuning_workers`
  starts K runs (one pod each under the K8s run launcher).
- `win_model`: the best parameters trained on training + validation, judged once on the
  test period, stored with the training data's lineage and the metrics people look first.
"""

import base64
import dataclasses
import datetime as dt
import hashlib
import importlib.util
import json
import uuid
from typing import TYPE_CHECKING

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    job,
    op,
    sensor,
)

from feature_assets.core.dates import compact_days
from feature_assets.core.feature_set import PREDICTION_STAGES
from feature_assets.defs.resources import TrainingStorage
from feature_assets.feature_sets import registered_sets
from feature_assets.ops.status import stale_days
from feature_assets.settings import available_cpus
from feature_assets.training import data
from feature_assets.training.predict import MODEL_INFO_PATH, model_sha256, store_model

if TYPE_CHECKING:
    import optuna
# `model` and `search` (LightGBM, scikit-learn, Optuna: ~1.5 s to import) are imported where
# they are used, not by every run, sensor tick and command that loads this code location.

TUNE_JOB = "tune_win_model"
STUDY_TAG = "feature_assets/study"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _code_version(module: str) -> str:
    """A hash of the module's source, read without importing it."""
    with open(importlib.util.find_spec(module).origin, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()[:16]


@asset(
    deps=[AssetKey("raw_race_entries"), *(AssetKey(s.name) for s in registered_sets())],
    group_name="training",
    code_version=_code_version(data.__name__),
    description="Every feature set's columns of the training window with the label is_win,"
    " split by time into train, validation and test (one Parquet file).",
)
def training_data(context: AssetExecutionContext, training: TrainingStorage) -> MaterializeResult:
    lake, sets = training.lake, registered_sets()
    try:
        window = data.window(
            *_window_bounds(training, sets), training.validation_days, training.test_days
        )
        _refuse_stale_days(context, sets, window.days)
        read = data.days_to_read(lake, sets, window.days)
        table = data.assemble(lake, sets, read.days, window.split_of)
        data.check_splits(table)
    except data.TrainingDataError as err:
        raise Failure(description=str(err)) from None
    names = data.feature_columns(sets)
    lineage = {
        "training_data": uuid.uuid4().hex[:12],
        "sets": {s.name: s.code_version for s in sets},
        "features": list(names.values()),
        "first_day": str(window.first),
        "last_day": str(window.last),
        "splits": {split: _period(table, split) for split in data.SPLITS},
        "invalid_days_left_out": read.invalid_days,
    }
    path = data.store(lake, table, lineage)
    rows = table["split"].value_counts()
    return MaterializeResult(
        metadata={
            "path": path,
            "rows": len(table),
            **{f"{split}_rows": int(rows[split]) for split in data.SPLITS},
            **{f"{split}_period": lineage["splits"][split] for split in data.SPLITS},
            "features": len(names),
            "invalid_days_left_out": compact_days(read.invalid_days),
            "lineage": MetadataValue.json(lineage),
        }
    )


def _window_bounds(training: TrainingStorage, sets):
    first = dt.date.fromisoformat(training.train_start) if training.train_start else None
    last = dt.date.fromisoformat(training.train_end) if training.train_end else None
    if first and last:
        return first, last
    lake = training.lake
    stored = sorted({day for s in sets for day in lake.stored_days(s.name)})
    if not stored:
        raise data.TrainingDataError(
            "no feature set has stored days yet; materialise the feature sets first"
            " (feature-assets backfill --missing --wait)"
        )
    return first or dt.date.fromisoformat(stored[0]), last or dt.date.fromisoformat(stored[-1])


def _refuse_stale_days(context, sets, days) -> None:
    """Days stored by older code of a set than today's would mix two versions of a feature."""
    window = set(days)
    stale = {
        s.name: found
        for s in sets
        if (found := [d for d in stale_days(context.instance, s) if d in window])
    }
    if stale:
        named = "; ".join(f"{name}: {compact_days(found)}" for name, found in stale.items())
        raise data.TrainingDataError(
            f"days computed by older code of their feature set ({named}); recompute them"
            " first: feature-assets backfill --stale --wait"
        )


def _period(table, split: str) -> str:
    dates = table.loc[table["split"] == split, "race_date"]
    return f"{dates.min():%Y-%m-%d}...{dates.max():%Y-%m-%d}"


class TuneConfig(Config):
    study: str
    threads: int = 0  # LightGBM threads; 0: the CPUs this process may use
    seed: int = 7


@op(description="Runs the study's waiting trials, one at a time, until none is left.")
def run_trials(context: OpExecutionContext, config: TuneConfig, training: TrainingStorage) -> None:
    import optuna

    from feature_assets.training import model, search

    table, lineage = _load_training_data(training)
    storage = training.studies()
    study = optuna.load_study(study_name=config.study, storage=storage)
    _require_same_training_data(study, lineage)
    features, learns = lineage["features"], search.objective_of(study)
    train = model.dataset(table[table["split"] == "train"], features, objective=learns)
    validation = model.dataset(
        table[table["split"] == "validation"], features, reference=train, objective=learns
    )
    threads = config.threads or available_cpus()
    objective = search.win_objective(
        train, validation, threads, config.seed, context.run_id, learns
    )
    finished = search.run_trials(storage, config.study, objective)
    context.log.info(f"study {config.study}: this run finished {finished} trial(s)")


@job(name=TUNE_JOB, description="A worker of a hyperparameter search (feature-assets tune).")
def tune_win_model():
    run_trials()


def _load_training_data(training: TrainingStorage):
    try:
        return data.load(training.lake)
    except data.TrainingDataError as err:
        raise Failure(description=str(err)) from None


def _require_same_training_data(study: "optuna.Study", lineage: dict) -> None:
    from feature_assets.training import search

    tuned_on = study.user_attrs.get(search.TRAINING_DATA_ATTR)
    if tuned_on != lineage["training_data"]:
        raise Failure(
            description=f"study {study.study_name!r} was tuned on training data {tuned_on},"
            f" but {lineage['training_data']} is stored now (training_data was materialised"
            " again); tune a new study: feature-assets tune --trials N --parallel K"
        )


@sensor(
    job=tune_win_model,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,  # idle until a search asks for workers
    description="Starts the workers each Optuna search asked for while it has waiting trials.",
)
def tuning_workers(context: SensorEvaluationContext, training: TrainingStorage):
    if not training.has_studies():
        return SkipReason("no search has been started (feature-assets tune)")
    import optuna

    from feature_assets.training import search

    storage = training.studies()
    requests = []
    try:
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            wanted = summary.user_attrs.get(search.WORKERS_ATTR)
            if not wanted:
                continue
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            # trials of workers that all died (pods preempted) come back as waiting
            optuna.storages.fail_stale_trials(study)
            left = search.counts(study)
            if not left["WAITING"] and not left["RUNNING"]:
                study.set_user_attr(search.WORKERS_ATTR, 0)  # done: not looked at again
                continue
            running = context.instance.get_runs_count(
                RunsFilter(
                    job_name=TUNE_JOB, tags={STUDY_TAG: summary.study_name}, statuses=IN_FLIGHT
                )
            )
            for _ in range(min(wanted - running, left["WAITING"])):
                requests.append(_worker_run(context, summary.study_name, wanted))
    finally:
        # a tick every 10 s: its connections close with it, none is left idle on the server
        storage.engine.dispose()
    return requests or SkipReason("no search has waiting trials without a worker")


def _worker_run(context: SensorEvaluationContext, study: str, workers: int) -> RunRequest:
    from dagster import DefaultRunLauncher

    # several workers on one machine share its CPUs; a pod's worker has its own
    local = isinstance(context.instance.run_launcher, DefaultRunLauncher)
    threads = max(1, available_cpus() // workers) if local else 0
    return RunRequest(
        run_config={"ops": {"run_trials": {"config": {"study": study, "threads": threads}}}},
        # this sensor alone replaces a worker that died: with Dagster's run retries too,
        # both queued a replacement and K + 1 workers ran (the trial's own retry is Optuna's)
        tags={STUDY_TAG: study, "dagster/max_retries": "0"},
    )


class ModelConfig(Config):
    study: str = ""  # default: the newest study tuned on the stored training data
    seed: int = 7


@asset(
    deps=[training_data],
    group_name="training",
    code_version=_code_version("feature_assets.training.model"),
    description="LightGBM win model: the search's best parameters trained on training +"
    " validation, evaluated once on the test period.",
)
def win_model(
    context: AssetExecutionContext, config: ModelConfig, training: TrainingStorage
) -> MaterializeResult:
    from feature_assets.training import live, model, search

    table, lineage = _load_training_data(training)
    study = _study_for(training.studies(), config.study, lineage)
    try:
        best = search.best_trial(study)
    except search.SearchError as err:
        raise Failure(description=str(err)) from None
    threads = available_cpus()
    learns = search.objective_of(study)
    final = model.train_final(table, lineage["features"], best.params, threads, config.seed, learns)
    text = final.booster.model_to_string()
    test = table[table["split"] == "test"]
    probabilities = model.race_probabilities(
        final.booster, test, lineage["features"], final.calibration
    )
    sets = [s for s in registered_sets() if s.name in lineage["sets"]]
    info = {
        "stage": max((s.stage for s in sets), key=PREDICTION_STAGES.index, default="card"),
        "odds": "final",
        "objective": learns,
        "calibration": dataclasses.asdict(final.calibration),
        "backtest": live.backtest_record(test, probabilities),
        "study": study.study_name,
        "trial": best.number,
        "params": best.params,
        "rounds": final.rounds,
        "seed": config.seed,
        "threads": threads,
        "validation": final.validation,
        "test": final.test,
        "lineage": lineage,
    }
    path = store_model(training.lake, text, info)
    reliability = live.reliability_chart(live.backtest(test, probabilities))
    metadata = _model_metadata(study, final, info, path, text, reliability)
    return MaterializeResult(metadata=metadata)


@asset(
    deps=[win_model],
    group_name="training",
    code_version=_code_version("feature_assets.training.walk_forward"),
    description="Walk-forward backtest: each month of the test period scored by a model with"
    " the tuned parameters trained on the days before it; flat and fractional-Kelly bets on"
    " positive expected returns at the final odds.",
)
def walk_forward_backtest(
    context: AssetExecutionContext, training: TrainingStorage
) -> MaterializeResult:
    from feature_assets.training import walk_forward as wf

    table, lineage = _load_training_data(training)
    try:
        info = json.loads(training.lake.read_file(MODEL_INFO_PATH))
    except FileNotFoundError:
        raise Failure(description="no win model is stored; materialise win_model") from None
    if info["lineage"].get("training_data") != lineage["training_data"]:
        raise Failure(
            description="the stored win model was trained on other training data"
            f" ({info['lineage'].get('training_data')}, stored: {lineage['training_data']});"
            " materialise win_model again"
        )
    months = wf.walk_forward(
        table,
        lineage["features"],
        info["params"],
        info["rounds"],
        available_cpus(),
        info["seed"],
        table["split"] == "test",
        info.get("objective", "binary"),
    )
    overall = wf.betting(pd.concat([m.rows for m in months]))
    lines = ["| month | trained up to | bets | hit rate | flat return | Kelly bankroll |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for month in months:
        bets = wf.betting(month.rows)
        lines.append(
            f"| {month.month} | {month.last_training_day} | {bets['bets']} |"
            f" {bets['hit_rate']:.3f} | {bets['flat_return']:.3f} | {bets['kelly_bankroll']:.3f} |"
        )
    context.log.info(
        f"walk-forward: {len(months)} months in {sum(m.seconds for m in months):.0f} s"
    )
    return MaterializeResult(
        metadata={
            **{name: MetadataValue.float(float(value)) for name, value in overall.items()},
            "months": MetadataValue.md("\n".join(lines)),
            "seconds": MetadataValue.float(round(sum(m.seconds for m in months), 1)),
            "odds_assumed": MetadataValue.text(
                "final odds, fixed when betting closed: the returns overstate what a bettor gets"
            ),
            "kelly_fraction": MetadataValue.float(wf.KELLY_FRACTION),
        }
    )


def _study_for(storage, name: str, lineage: dict) -> "optuna.Study":
    import optuna

    from feature_assets.training import search

    if not name:
        tuned = [
            s
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if s.user_attrs.get(search.TRAINING_DATA_ATTR) == lineage["training_data"]
        ]
        if not tuned:
            raise Failure(
                description="no study is tuned on the stored training data "
                f"{lineage['training_data']}; run feature-assets tune --trials N --parallel K"
            )
        name = max(tuned, key=lambda s: s.datetime_start or 0).study_name
    study = optuna.load_study(study_name=name, storage=storage)
    _require_same_training_data(study, lineage)
    return study


def _model_metadata(study, final, info, path: str, text: str, reliability: str) -> dict:
    from feature_assets.training import model, search

    metadata: dict = {
        "path": path,
        "model_sha256": model_sha256(text),
        "study": study.study_name,
        "best_trial": info["trial"],
        "rounds": final.rounds,
        "trials_finished": sum(
            1 for t in study.get_trials(deepcopy=False) if t.state in search.FINISHED
        ),
    }
    for period, metrics in (("validation", final.validation), ("test", final.test)):
        for name, value in metrics.items():
            metadata[f"{period}_{name}"] = (
                MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)
            )
    metadata["feature_importance"] = MetadataValue.table(
        [
            TableRecord({"feature": n, "gain_share": float(g)})
            for n, g in model.importances(final.booster)
        ],
        schema=TableSchema([TableColumn("feature", "string"), TableColumn("gain_share", "float")]),
    )
    metadata["search_history"] = _image(search.history_plot(study), "search history")
    importance = search.importance_plot(study)
    if importance is not None:
        metadata["parameter_importance"] = _image(importance, "parameter importance")
    metadata["stage"] = MetadataValue.text(
        f"predicts at {info['stage']}: the day's columns known by then (docs/race-day.md)"
    )
    metadata["odds_assumed"] = MetadataValue.text(
        "final odds, fixed when betting closed: the returns overstate what a bettor gets"
    )
    metadata["calibration"] = MetadataValue.json(info["calibration"])
    metadata["backtest_reliability"] = MetadataValue.md(reliability)  # test split, inline
    for name, value in info["backtest"]["metrics"].items():
        metadata[f"backtest_{name}"] = (
            MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)
        )
    metadata["params"] = MetadataValue.json(info["params"])
    metadata["lineage"] = MetadataValue.json(info["lineage"])
    return metadata


def _image(png: bytes, title: str) -> MetadataValue:
    encoded = base64.b64encode(png).decode()
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
