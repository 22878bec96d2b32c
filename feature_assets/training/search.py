"""A hyperparameter search shared by many workers (Dagster runs, one pod each on GKE).

`start_search` creates (or extends) an Optuna study in a real database and enqueues its N
trials as WAITING. A worker only ever takes a waiting trial: `FixedTrialsStorage` refuses to
create a new one, where Optuna's `study.ask()` would when the queue is empty, so K workers
racing for the last trial still finish exactly N between them, and none is run twice.

A worker that dies mid-trial (a Spot node preempted, kill -9) stops its trial's heartbeat;
the next worker to look fails that trial and Optuna's `RetryHeartbeatStaleTrialCallback` enqueues it
again with the same parameters, so a lost worker costs time, never a trial. A worker whose
queue is empty waits while another's trial is still running, in case that one dies.
Optuna's RDB storage, heartbeats and retry callback do the work; see
https://optuna.readthedocs.io/en/stable/reference/generated/optuna.storages.RDBStorage.html
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from feature_assets.training.model import (
    OBJECTIVES,
    VALIDATION,
    fit,
    fixed_params,
    suggest_params,
)

WORKERS_ATTR = "workers"  # how many workers the search asked for (the sensor starts them)
TRAINING_DATA_ATTR = "training_data"  # the id of the training table the search is tuned on
OBJECTIVE_ATTR = "objective"  # what its models learn (model.OBJECTIVES)
# boosting rounds between a trial's reports to the study (and pruning checks): each is a
# write and a read of the database, which every round would make the workers queue for
REPORT_EVERY = 10
MAX_RETRIES = 3  # a trial whose worker dies more often than this is given up (it kills it)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and their retry callback are marked experimental; they are what this relies on
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class NoTrialsLeft(RuntimeError):
    """Every trial of the search is taken: the worker's part is done."""


class SearchError(ValueError):
    """The search cannot go on as asked; names the study and why."""


class FixedTrialsStorage(RDBStorage):
    """Optuna's RDB storage, where trials only come from the study's queue."""

    # Optuna's cache layer calls the private `_create_new_trial` (optuna 5.0); the public
    # `create_new_trial` goes through it too. tests/test_tuning.py fails if this stops holding.
    def _create_new_trial(self, study_id, template_trial=None):
        if template_trial is None:  # `ask()` found no waiting trial
            raise NoTrialsLeft(f"study {study_id}: no waiting trial is left")
        return super()._create_new_trial(study_id, template_trial)


def open_storage(url: str, heartbeat_seconds: int) -> FixedTrialsStorage:
    """The studies' database: SQLite (a file) or a server (PostgreSQL, MySQL)."""
    if url.startswith("sqlite"):
        engine_kwargs: dict = {"connect_args": {"timeout": 60}}  # workers wait for the lock
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 1, "max_overflow": 1}
    storage = FixedTrialsStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat_seconds,
        grace_period=3 * heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
    )
    if url.startswith("sqlite"):
        _serialise_sqlite(storage.engine)
    return storage


def _serialise_sqlite(engine) -> None:
    """Every transaction on a SQLite study takes the database's write lock first.

    Optuna takes a waiting trial with SELECT ... FOR UPDATE, then UPDATE; PostgreSQL and
    MySQL lock the row, SQLite ignores FOR UPDATE, and pysqlite opens no transaction before
    the SELECT, so two workers could both read a trial as waiting and both run it (seen:
    "Cannot tell a COMPLETE trial"). BEGIN IMMEDIATE is SQLAlchemy's recipe for pysqlite
    ("Serializable isolation / Savepoints / Transactional DDL" in its SQLite dialect docs).
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _without_implicit_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections Optuna opened before these listeners


def start_search(
    storage: RDBStorage,
    name: str,
    trials: int,
    workers: int,
    training_data: str,
    objective: str = "binary",
) -> optuna.Study:
    """Adds `trials` waiting trials to study `name` (created if new) and asks for `workers`
    workers. A study is tuned on one training table and one objective (`model.OBJECTIVES`):
    extending it on another is refused."""
    direction = OBJECTIVES[objective][1]
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True
    )
    if objective_of(study) != objective and study.user_attrs.get(TRAINING_DATA_ATTR):
        raise SearchError(
            f"study {name!r} tunes the {objective_of(study)} objective, not {objective};"
            " start a new study (--study NEW_NAME)"
        )
    study.set_user_attr(OBJECTIVE_ATTR, objective)
    tuned_on = study.user_attrs.get(TRAINING_DATA_ATTR)
    if tuned_on not in (None, training_data):
        raise SearchError(
            f"study {name!r} was tuned on training data {tuned_on}, not on the stored"
            f" {training_data}; start a new study (--study NEW_NAME)"
        )
    study.set_user_attr(TRAINING_DATA_ATTR, training_data)
    study.set_user_attr(WORKERS_ATTR, workers)
    for _ in range(trials):
        study.enqueue_trial({}, skip_if_exists=False)  # parameters chosen when taken
    return study


def objective_of(study: optuna.Study) -> str:
    """The objective a study tunes (studies from before objectives were chosen: binary)."""
    return study.user_attrs.get(OBJECTIVE_ATTR, "binary")


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name (WAITING, RUNNING, COMPLETE, PRUNED, FAIL)."""
    result = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        result[trial.state.name] += 1
    return result


def win_objective(
    train, validation, threads: int, seed: int, worker: str, learns: str = "binary"
) -> Callable:
    """One trial: LightGBM with the trial's parameters, early stopping on the validation
    period, pruned by Optuna when its validation metric (log loss; NDCG@1 for lambdarank)
    lags the other trials'."""
    from optuna_integration import LightGBMPruningCallback

    metric = OBJECTIVES[learns][0]

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        params = {**fixed_params(threads, seed, learns), **suggest_params(trial)}
        pruning = LightGBMPruningCallback(
            trial, metric, valid_name=VALIDATION, report_interval=REPORT_EVERY
        )
        booster = fit(params, train, validation, callbacks=[pruning])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return booster.best_score[VALIDATION][metric]

    return objective


POLL_SECONDS = (
    1.0  # an idle worker looks again this often: the search ends when its last trial does
)


def run_trials(storage: RDBStorage, name: str, objective: Callable) -> int:
    """Takes the study's waiting trials one at a time until none is waiting or running;
    returns how many this worker finished."""
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        # constant_liar: a running trial counts as a bad result, so parallel workers spread
        # out instead of sampling the same region
        sampler=optuna.samplers.TPESampler(constant_liar=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10),
    )
    finished = 0
    while True:
        try:
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
            finished += 1
        except NoTrialsLeft:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return finished
            time.sleep(POLL_SECONDS)  # another worker's trial runs: take it over if it dies
            optuna.storages.fail_stale_trials(study)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SearchError(
            f"study {study.study_name!r} has no complete trial yet; run feature-assets tune first"
        )
    return study.best_trial


def history_plot(study: optuna.Study) -> bytes:
    """Optuna's optimisation history (each trial's validation log loss, best so far) as PNG."""
    _offscreen()
    from optuna.visualization.matplotlib import plot_optimization_history

    return _png(plot_optimization_history(study))


def importance_plot(study: optuna.Study) -> bytes | None:
    """Optuna's parameter importances as PNG; None with fewer than two complete trials."""
    _offscreen()
    from optuna.visualization.matplotlib import plot_param_importances

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    return _png(plot_param_importances(study))


def _offscreen() -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen: render to memory (before pyplot is imported)


def _png(axes) -> bytes:
    import matplotlib.pyplot as plt

    figure = axes.get_figure()
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()
