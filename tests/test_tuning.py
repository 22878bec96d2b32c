"""An Optuna search shared by worker processes, its study in a real PostgreSQL database.

The workers are real processes; one is killed with SIGKILL in the middle of a trial, as a
Spot node's pod is. The training data is features materialised from real MariaDB (the
`features` fixture of test_training).
"""

import multiprocessing
import os
import shutil
import signal
import subprocess
import time
import uuid

import optuna
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)
from optuna.trial import TrialState

from feature_assets import settings
from feature_assets.defs.resources import TrainingStorage
from feature_assets.defs.training import STUDY_TAG, TUNE_JOB, tuning_workers
from feature_assets.feature_sets import registered_sets
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.training import data, model, search
from tests.conftest import HELD_OUT, materialize_training_data
from tests.helpers import REPO, command_env, dagster_dev, wait_for

pytestmark = pytest.mark.usefixtures("held_out_periods")


@pytest.fixture
def optuna_url(postgres_database):
    db = postgres_database
    return f"postgresql://{db['username']}@{db['hostname']}:{db['port']}/{db['db_name']}"


@pytest.fixture
def training_table(feature_lake):
    storage, _ = feature_lake
    with instance_for_test() as instance:
        assert materialize_training_data(storage, instance).success
    return storage, data.lineage_of(DailyParquetStorage(storage))["training_data"]


def _worker(optuna_url, study, storage, heartbeat, seconds_before_training):
    """A worker as the tuning op runs it, optionally slowed so a test can catch it mid-trial."""
    table, lineage = data.load(DailyParquetStorage(storage))
    features = lineage["features"]
    train = model.dataset(table[table["split"] == "train"], features)
    validation = model.dataset(table[table["split"] == "validation"], features, reference=train)
    worker = f"pid-{os.getpid()}"
    objective = search.win_objective(train, validation, 1, 7, worker)

    def slowed(trial):
        model.suggest_params(trial)  # the parameters first, as the real objective does
        trial.set_user_attr("worker", worker)
        time.sleep(seconds_before_training)
        return objective(trial)

    search.run_trials(search.open_storage(optuna_url, heartbeat), study, slowed)


def _start_workers(count, *args):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=args) for _ in range(count)]
    for worker in workers:
        worker.start()
    return workers


def _trials(optuna_url, study):
    storage = search.open_storage(optuna_url, 1)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


@pytest.fixture(params=["postgresql", "sqlite"])
def study_url(request, tmp_path):
    """The studies' database: PostgreSQL, or the local default, a SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    return request.getfixturevalue("optuna_url")


def test_two_workers_share_one_study_and_finish_exactly_n_trials(training_table, study_url):
    storage, training_id = training_table
    optuna_url = study_url
    name = f"s-{uuid.uuid4().hex[:6]}"
    search.start_search(search.open_storage(optuna_url, 5), name, 9, 2, training_id)
    workers = _start_workers(2, optuna_url, name, storage, 5, 0.0)
    for worker in workers:
        worker.join(300)
        assert worker.exitcode == 0

    trials = _trials(optuna_url, name)
    assert len(trials) == 9  # none created beyond the queue, however the workers raced
    assert all(t.state in search.FINISHED for t in trials)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 1
    by_worker = {t.user_attrs["worker"] for t in trials}
    assert by_worker == {f"pid-{w.pid}" for w in workers}  # both took trials
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert 0 < trial.value < 1 and trial.user_attrs["best_iteration"] >= 1


def test_a_worker_killed_mid_trial_costs_no_trial(training_table, optuna_url):
    storage, training_id = training_table
    name = f"s-{uuid.uuid4().hex[:6]}"
    trials_asked = 6
    search.start_search(search.open_storage(optuna_url, 1), name, trials_asked, 2, training_id)
    doomed, survivor = _start_workers(2, optuna_url, name, storage, 1, 1.5)

    deadline = time.monotonic() + 120
    while True:  # a trial of the doomed worker that is under way
        running = [
            t
            for t in _trials(optuna_url, name)
            if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == f"pid-{doomed.pid}"
        ]
        if running:
            break
        assert time.monotonic() < deadline, "the worker never ran a trial"
        time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(10)
    [killed] = running
    survivor.join(300)
    assert survivor.exitcode == 0

    trials = {t.number: t for t in _trials(optuna_url, name)}
    assert trials[killed.number].state == TrialState.FAIL  # not left "running"
    finished = [t for t in trials.values() if t.state in search.FINISHED]
    assert len(finished) == trials_asked
    [retry] = [t for t in finished if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == trials[killed.number].params  # the same trial, run again
    assert retry.user_attrs["worker"] == f"pid-{survivor.pid}"
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def _dagster(env, *args, timeout=600):
    return subprocess.run(
        ["dagster", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.e2e
def test_tune_then_model_as_a_new_user_would(feature_lake, optuna_url, tmp_path):
    """`feature-assets tune --parallel 2` with a running daemon: two Dagster runs share one
    study in PostgreSQL; then `win_model` is materialised, twice, to the same model."""
    storage, _ = feature_lake
    lake = tmp_path / "parquet"
    shutil.copytree(storage, lake)
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_STORAGE_URL=str(lake),
        FEATURE_ASSETS_OPTUNA_URL=optuna_url,
        FEATURE_ASSETS_TRIAL_HEARTBEAT="2",
        **HELD_OUT,
    )
    select = ["asset", "materialize", "-m", "feature_assets.definitions", "--select"]
    done = _dagster(env, *select, "training_data")
    assert done.returncode == 0, done.stderr[-3000:]

    with dagster_dev(env, tmp_path / "dagster-dev.log") as instance:
        tune = subprocess.run(
            # 30 trials: the small table's trials take ~0.5 s, and a second worker starting
            # 2 s after the first must still find trials left to share
            ["feature-assets", "tune", "--trials", "30", "--parallel", "2", "--study", "first"]
            + ["--wait"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert tune.returncode == 0, tune.stderr[-3000:] + tune.stdout
        assert "best validation log loss" in tune.stdout
        wait_for(
            lambda: all(
                r.is_finished
                for r in instance.get_runs(RunsFilter(job_name=TUNE_JOB, tags={STUDY_TAG: "first"}))
            ),
            60,
            "the tuning runs",
        )
        runs = instance.get_runs(RunsFilter(job_name=TUNE_JOB, tags={STUDY_TAG: "first"}))
        assert len(runs) == 2 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}

    trials = _trials(optuna_url, "first")
    assert len(trials) == 30 and all(t.state in search.FINISHED for t in trials)
    assert {t.user_attrs["worker"] for t in trials} <= {r.run_id for r in runs}
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the runs shared the study

    for _ in range(2):
        done = _dagster(env, *select, "win_model")
        assert done.returncode == 0, done.stderr[-3000:]
    walked = _dagster(env, *select, "walk_forward_backtest")
    assert walked.returncode == 0, walked.stderr[-3000:]
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        with DagsterInstance.get() as instance:
            records = instance.fetch_materializations(AssetKey("win_model"), limit=2).records
            metadata = [r.asset_materialization.metadata for r in records]
            [walk] = instance.fetch_materializations(
                AssetKey("walk_forward_backtest"), limit=1
            ).records
    finally:
        os.environ.pop("DAGSTER_HOME")
    digests = {m["model_sha256"].value for m in metadata}
    assert len(digests) == 1  # the same model, bit for bit, from the same study and seed
    latest = metadata[0]
    for period in ("validation", "test"):
        for name in ("log_loss", "auc", "top_pick_hit_rate", "favourite_hit_rate"):
            value = latest[f"{period}_{name}"].value
            assert isinstance(value, float) and 0 < value < 1, (period, name, value)
        assert isinstance(latest[f"{period}_flat_stake_return"].value, float)
    for name in ("log_loss", "winner_log_loss", "ece", "top_pick_hit_rate"):
        assert 0 < latest[f"backtest_{name}"].value < 2, name
    assert latest["calibration"].value["kind"] == "platt"
    assert latest["backtest_reliability"].value.startswith("![reliability")
    assert "final odds" in latest["odds_assumed"].value
    assert latest["stage"].value.startswith("predicts at close")  # race_features is close
    walked = walk.asset_materialization.metadata
    assert walked["bets"].value >= 0 and walked["kelly_bankroll"].value > 0
    assert "| month | trained up to |" in walked["months"].value
    importance = latest["feature_importance"].value.records
    assert importance and all(0 <= r.data["gain_share"] <= 1 for r in importance)
    for plot in ("search_history", "parameter_importance"):
        assert latest[plot].value.startswith("![")
        assert "data:image/png;base64," in latest[plot].value
    lineage = latest["lineage"].value
    assert set(lineage["sets"]) == {s.name for s in registered_sets()}
    train_end = lineage["splits"]["train"].split("...")[1]
    test_start = lineage["splits"]["test"].split("...")[0]
    assert train_end < lineage["splits"]["validation"].split("...")[0] <= test_start
    assert latest["study"].value == "first" and latest["trials_finished"].value == 30


def test_the_sensor_starts_the_workers_asked_for_and_revives_a_search_whose_workers_died(
    tmp_path,
):
    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    storage = search.open_storage(url, 1)
    study = search.start_search(storage, "s", 3, 2, "t1")
    training = TrainingStorage(storage_url=str(tmp_path), optuna_url=url, heartbeat_seconds=1)
    with instance_for_test() as instance:
        context = build_sensor_context(instance=instance, resources={"training": training})
        requests = tuning_workers(context)
        assert len(requests) == 2
        assert {r.tags[STUDY_TAG] for r in requests} == {"s"}
        assert requests[0].run_config["ops"]["run_trials"]["config"]["study"] == "s"

        # every worker gone: two trials done, the third left running without a heartbeat
        for value in (0.3, 0.4):
            trial = study.ask()
            study.tell(trial, value)
        [lost] = storage.get_all_trials(study._study_id, states=(TrialState.WAITING,))
        storage.set_trial_state_values(lost._trial_id, TrialState.RUNNING)
        storage.record_heartbeat(lost._trial_id)
        time.sleep(5)  # three heartbeats missed (SQLite keeps whole seconds: a margin)
        [revived] = tuning_workers(context)
        assert revived.tags[STUDY_TAG] == "s"
        states = search.counts(study)
        assert states["FAIL"] == 1 and states["WAITING"] == 1  # run again by the new worker

        trial = study.ask()
        study.tell(trial, 0.2)
        assert isinstance(tuning_workers(context), SkipReason)  # the search is done
        assert optuna.load_study(study_name="s", storage=url).user_attrs["workers"] == 0


def test_a_bad_study_url_is_named_without_its_password(monkeypatch):
    monkeypatch.setenv("FEATURE_ASSETS_OPTUNA_URL", "postgres:/tuner:S3cret-pw@db/optuna")
    with pytest.raises(settings.ConfigurationError) as caught:
        settings.check_configuration()
    assert "FEATURE_ASSETS_OPTUNA_URL" in str(caught.value)
    assert "S3cret-pw" not in str(caught.value)


def test_a_study_is_not_extended_on_other_training_data(tmp_path):
    storage = search.open_storage(f"sqlite:///{tmp_path / 'optuna.sqlite'}", 5)
    search.start_search(storage, "s", 2, 1, "first-table")
    with pytest.raises(search.SearchError, match="first-table.*second-table"):
        search.start_search(storage, "s", 2, 1, "second-table")
    study = optuna.load_study(study_name="s", storage=storage)
    assert search.counts(study)["WAITING"] == 2  # the refused call queued nothing


def _connections_to(optuna_url: str) -> int:
    """Connections to this test's own database: the server may be shared."""
    import psycopg2

    with psycopg2.connect(optuna_url) as server, server.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_sensor_leaves_no_connection_open_between_ticks(optuna_url, tmp_path):
    storage = search.open_storage(optuna_url, 60)
    search.start_search(storage, "s", 4, 2, "t1")
    storage.engine.dispose()
    training = TrainingStorage(storage_url=str(tmp_path), optuna_url=optuna_url)
    with instance_for_test() as instance:
        context = build_sensor_context(instance=instance, resources={"training": training})
        most = 0
        for _ in range(40):
            assert len(tuning_workers(context)) == 2  # no run started: asks for both again
            most = max(most, _connections_to(optuna_url))
    assert most <= 1, f"{most} idle connections to the study's database between ticks"


def test_a_dead_worker_is_replaced_by_the_sensor_alone(tmp_path):
    """Dagster's run retry and the sensor both replaced a dead worker: K + 1 ran."""
    from dagster._core.events import RunFailureReason
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    search.start_search(search.open_storage(url, 1), "s", 3, 2, "t1")
    training = TrainingStorage(storage_url=str(tmp_path), optuna_url=url, heartbeat_seconds=1)
    overrides = {"run_retries": {"enabled": True, "max_retries": 3}}  # as dagster.yaml has
    with instance_for_test(overrides=overrides) as instance:
        context = build_sensor_context(instance=instance, resources={"training": training})
        first, second = tuning_workers(context)
        runs = [
            instance.create_run_for_job(
                job_def=_tune_job(), run_config=r.run_config, tags=r.tags, status=status
            )
            for r, status in ((first, DagsterRunStatus.STARTED), (second, DagsterRunStatus.FAILURE))
        ]  # the second worker's pod was preempted
        assert not auto_reexecution_should_retry_run(
            instance, runs[1], RunFailureReason.UNEXPECTED_TERMINATION
        )
        [replacement] = tuning_workers(context)  # the sensor's: exactly K again
        assert replacement.tags[STUDY_TAG] == "s"


def _tune_job():
    from feature_assets.definitions import defs

    return defs.resolve_job_def(TUNE_JOB)
