"""Feature sets as plug-ins, against real MariaDB: the example sets, point in time, faults."""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import textwrap

import pandas as pd
import pytest
from dagster import instance_for_test
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets import settings
from feature_assets.core import engine
from feature_assets.core.engine import compute_days, run_days
from feature_assets.core.feature_set import FeatureSetDefinitionError, per_day
from feature_assets.core.history import RunHistory
from feature_assets.core.quality import find_invalid_races
from feature_assets.feature_sets.race_context import race_context
from feature_assets.feature_sets.race_features import race_features
from feature_assets.feature_sets.racer_form import racer_form
from feature_assets.io import synthetic
from feature_assets.io.source import SourceLocation, read_snapshot
from feature_assets.io.storage import DailyParquetStorage
from tests import reference
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.feature_sets.faulty import dies_on_day, raises_on_day
from tests.feature_sets.peeking import peeking
from tests.helpers import REPO, command_env, materialize_days, partition_status

YEAR = 366
RUN_RETRIES = {  # as dagster_home/dagster.yaml has them
    "run_retries": {"enabled": True, "max_retries": 3, "retry_on_asset_or_op_failure": False}
}


def _day(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def _failed_days(instance, name: str) -> list[str]:
    return sorted(
        d for d, s in partition_status(instance, name).items() if s == AssetPartitionStatus.FAILED
    )


def _direct(feature_set, races, entries, day: str) -> pd.DataFrame:
    """The set's function called on its inputs for `day`, built here, without the engine."""
    invalid = find_invalid_races(races, entries)["race_id"]
    races = races[~races["race_id"].isin(invalid)]
    entries = entries[entries["race_id"].isin(races["race_id"])]
    history = RunHistory(races, entries).at(day, feature_set.history_days)
    on_day = entries["race_date"] == pd.Timestamp(day)
    day_entries = (
        entries[on_day]
        .drop(columns=["finish_position", "start_timing"])
        .join(races.drop(columns="race_date").set_index("race_id"), on="race_id")
        .sort_values(["race_id", "lane"], ignore_index=True)
    )
    from feature_assets.core.history import Day

    day_races = races[races["race_date"] == pd.Timestamp(day)].sort_values("race_id")
    day_input = Day(day, day_races.reset_index(drop=True), day_entries)
    if feature_set.per == "day":
        return feature_set(day_input, history).reset_index(drop=True)
    rows = [row for race in day_input.each_race() for row in feature_set(race, history)]
    return pd.DataFrame.from_records(rows, columns=list(feature_set.columns))


@pytest.fixture(scope="module")
def year_source(mysql_server):
    """A year of results (6 races a day, some invalid) in a MariaDB database of its own."""
    data = synthetic.generate(FIRST_DAY, days=YEAR + 4, races_per_day=6, invalid_races=3, seed=12)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        yield url, data


def test_example_sets_backfilled_over_a_year_match_direct_calls(year_source, tmp_path):
    url, data = year_source
    storage = str(tmp_path / "parquet")
    sets = [racer_form, race_context]
    with instance_for_test() as instance:
        result = materialize_days(url, storage, instance, sets, _day(0), _day(YEAR + 3))
        bad_days = _invalid_days(data)
        assert not result.success  # exactly the invalid days fail, for every set
        for feature_set in sets:
            failed = _failed_days(instance, feature_set.name)
            assert sorted(failed) == sorted(bad_days)
    snapshot = read_snapshot(
        SourceLocation.from_url(url), FIRST_DAY, FIRST_DAY + dt.timedelta(YEAR + 3)
    )
    checked = [_day(o) for o in (0, 1, 40, 200, YEAR - 1, YEAR + 3)]
    checked = [d for d in checked if d not in bad_days]
    for feature_set in sets:
        stored = DailyParquetStorage(storage).read_days(feature_set.name, checked)
        for day in checked:
            direct = _direct(feature_set, snapshot.races, snapshot.entries, day)
            of_day = stored[stored["race_date"] == pd.Timestamp(day)].reset_index(drop=True)
            assert len(of_day) == len(direct) > 0
            got = reference.rows_of(of_day[list(feature_set.columns)])
            dtypes = {c: feature_set.output_dtypes[c] for c in feature_set.columns}
            expected = reference.rows_of(direct.astype(dtypes))
            assert reference.mismatches(got, expected) == [], (feature_set.name, day)
        # keys and labels come from the framework, whatever the set returns
        assert list(stored.columns)[:4] == ["race_id", "lane", "racer_id", "race_date"]


def _invalid_days(data) -> set[str]:
    return {pd.Timestamp(str(r)[:8]).strftime("%Y-%m-%d") for r in data.invalid_race_ids}


def test_a_set_sees_neither_later_rows_nor_the_days_results(year_source, tmp_path):
    url, data = year_source
    storage = str(tmp_path / "parquet")
    days = [_day(i) for i in range(100, 141)]
    with instance_for_test() as instance:
        assert materialize_days(url, storage, instance, [], _day(60), _day(140)).success
        # a ranged run: its loaded history holds every later day of the range
        run = materialize_days(url, storage, instance, [peeking], days[0], days[-1], raw=False)
        failed = {
            day
            for day, s in partition_status(instance, "peeking").items()
            if s == AssetPartitionStatus.FAILED
        }
        assert failed == _invalid_days(data) & set(days)  # only invalid days fail
        assert run.success == (not failed)
    stored = DailyParquetStorage(storage).read_days("peeking", sorted(set(days) - failed))
    assert len(stored) > 200
    assert stored["history_gap_days"].min() >= 1
    assert stored["lookup_gap_days"].dropna().min() >= 1
    assert stored["lookup_gap_days"].dropna().max() <= 30  # and nothing older than its window
    assert not stored["sees_results"].any()


def test_an_exception_fails_exactly_its_day_naming_set_day_and_race(
    year_source, tmp_path, monkeypatch
):
    url, _ = year_source
    monkeypatch.setenv("FAULTY_DAY", _day(12))
    monkeypatch.setenv("FEATURE_ASSETS_WORKERS", "2")
    storage = str(tmp_path / "parquet")
    with instance_for_test(overrides=RUN_RETRIES) as instance:
        result = materialize_days(url, storage, instance, [raises_on_day], _day(10), _day(14))
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message
        ymd = _day(12).replace("-", "")
        assert re.search(
            rf"feature set raises_on_day, day {_day(12)}, race_id {ymd}\d\d02:", message
        )
        assert "ZeroDivisionError: the user's code divided by zero" in message
        logs = [e.message for e in result.all_events if e.event_type_value == "ENGINE_EVENT"] + [
            r.user_message for r in instance.all_logs(result.run_id)
        ]
        assert any("Traceback" in m and "faulty.py" in m for m in logs)  # its traceback
        status = partition_status(instance, "raises_on_day")
        assert status[_day(12)] == AssetPartitionStatus.FAILED
        run = instance.get_run_by_id(result.run_id)  # the same code fails the same way again
        assert not auto_reexecution_should_retry_run(instance, run, RunFailureReason.STEP_FAILURE)
        for offset in (10, 11, 13, 14):
            assert status[_day(offset)] == AssetPartitionStatus.MATERIALIZED
    written = sorted(p.name[-10:] for p in (tmp_path / "parquet" / "raises_on_day").glob("race_*"))
    assert written == [_day(o) for o in (10, 11, 13, 14)]


def test_a_killed_worker_fails_only_the_day_it_held(year_source, tmp_path, monkeypatch):
    url, _ = year_source
    monkeypatch.setenv("FAULTY_DAY", _day(23))
    monkeypatch.setenv("FEATURE_ASSETS_WORKERS", "2")
    storage = str(tmp_path / "parquet")
    with instance_for_test(overrides=RUN_RETRIES) as instance:
        result = materialize_days(url, storage, instance, [dies_on_day], _day(20), _day(27))
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message
        assert f"day {_day(23)}: the worker process" in message
        assert "killed by signal 9 (SIGKILL" in message
        status = partition_status(instance, "dies_on_day")
        assert status[_day(23)] == AssetPartitionStatus.FAILED
        done = [o for o in range(20, 28) if o != 23]
        assert all(status[_day(o)] == AssetPartitionStatus.MATERIALIZED for o in done)
        # the instance's run retries take it up (they skip runs that failed on bad data)
        run = instance.get_run_by_id(result.run_id)
        assert auto_reexecution_should_retry_run(instance, run, RunFailureReason.STEP_FAILURE)


def test_results_do_not_depend_on_the_number_of_workers(year_source, monkeypatch):
    url, _ = year_source
    monkeypatch.setattr(engine, "BATCH_DAYS", 7)  # several batches: most go to the workers
    snapshot = read_snapshot(SourceLocation.from_url(url), FIRST_DAY, FIRST_DAY + dt.timedelta(80))
    days = [_day(o) for o in range(50, 80)]
    for feature_set in (racer_form, race_features):  # one day per call, and batches
        one, two = (
            {o.days: o for o in run_days(feature_set, snapshot.races, snapshot.entries, days, n)}
            for n in (1, 2)
        )
        assert one.keys() == two.keys()
        assert sorted(d for unit in one for d in unit) == days
        for unit, outcome in one.items():
            assert outcome.error == two[unit].error
            if outcome.ok:
                pd.testing.assert_frame_equal(outcome.rows, two[unit].rows)


def test_a_wrong_declaration_or_wrong_rows_are_named():
    with pytest.raises(FeatureSetDefinitionError, match="column 'x': type 'integer'"):
        per_day(history_days=5, columns={"x": "integer"})(lambda day, history: None)

    @per_day(history_days=5, columns={"x": "int"})
    def wrong(day, history):
        return pd.DataFrame({"x": [1.5] * len(day.entries)})

    data = synthetic.generate(FIRST_DAY, days=8, races_per_day=3, seed=1)
    [result] = run_days(wrong, data.races, data.entries, [_day(7)])
    assert not result.ok and result.error.startswith(f"feature set wrong, day {_day(7)}: column x")


def _feature_assets(env, *args):
    return subprocess.run(
        ["feature-assets", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _dagster_materialize(env, select: str, first: str, last: str):
    return subprocess.run(
        [
            "dagster", "asset", "materialize", "-m", "feature_assets.definitions",
            "--select", select, "--partition-range", f"{first}...{last}",
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.e2e
def test_check_leakage_catches_a_set_that_reads_around_the_api(year_source, tmp_path):
    url, _ = year_source
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_SOURCE_URL=url,
        FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_FEATURE_SETS="tests.feature_sets.leaky",
        PYTHONPATH=str(REPO),
    )
    # the raw history the sets read (racer_form: 180 days), then the sets
    raw = _dagster_materialize(env, "raw_races,raw_race_entries", _day(20), _day(209))
    assert raw.returncode == 0, raw.stderr[-3000:]
    run = _dagster_materialize(env, "leaky,racer_form", _day(200), _day(209))
    assert run.returncode == 0, run.stderr[-3000:]
    leak = _feature_assets(env, "check-leakage", "leaky", "--sample", "3")
    assert leak.returncode == 1, leak.stderr[-3000:]
    assert "LEAK:" in leak.stdout and "racer_wins_from_today: stored" in leak.stdout
    clean = _feature_assets(env, "check-leakage", "racer_form", "--sample", "3")
    assert clean.returncode == 0, clean.stdout + clean.stderr[-3000:]
    assert "No leak: 3 day(s)" in clean.stdout


USER_SET = '''
from feature_assets.core.feature_set import per_day


@per_day(history_days=7, columns={"{column}": "float"}, stage="close")
def my_set(day, history):
    """My first feature set."""
    import pandas as pd
    return pd.DataFrame({"{column}": day.entries["win_odds"] * {factor}})
'''


def _write_user_set(folder, factor: int) -> None:
    code = USER_SET.replace("{column}", "odds_times").replace("{factor}", str(factor))
    (folder / "my_features.py").write_text(textwrap.dedent(code))
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)


@pytest.mark.e2e
def test_a_user_set_in_its_own_package_changed_turns_only_its_days_stale(year_source, tmp_path):
    url, _ = year_source
    package = tmp_path / "user_code"
    package.mkdir()
    _write_user_set(package, 2)
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_SOURCE_URL=url,
        FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_FEATURE_SETS="my_features",
        PYTHONPATH=str(package),
    )
    first, last = _day(30), _day(39)
    raw = _dagster_materialize(env, "raw_races,raw_race_entries", _day(0), last)
    assert raw.returncode == 0, raw.stderr[-3000:]
    run = _dagster_materialize(env, "race_features,my_set", first, last)
    assert run.returncode == 0, run.stderr[-3000:]
    status = _feature_assets(env, "status", "--assets", "my_set", "--json")
    [my_set] = [a for a in json.loads(status.stdout) if a["asset"] == "my_set"]
    assert my_set["stale"] == []

    _write_user_set(package, 3)  # the user edits their set
    stale = _feature_assets(env, "status", "--json")
    by_asset = {a["asset"]: a for a in json.loads(stale.stdout)}
    assert by_asset["my_set"]["stale"] == [f"{first}...{last}"]
    assert by_asset["race_features"]["stale"] == []

    backfill = _feature_assets(env, "backfill", "--stale")
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    from tests.helpers import backfill_targets

    [target] = backfill_targets(tmp_path / "dagster_home")
    assert target == {"my_set": [_day(o) for o in range(30, 40)]}
    # what the daemon runs for it
    rerun = _dagster_materialize(env, "my_set", first, last)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _feature_assets(env, "status", "--assets", "my_set", "--json")
    assert json.loads(after.stdout)[0]["stale"] == []
    stored = DailyParquetStorage(str(tmp_path / "parquet")).read_days("my_set", [last])
    day = FIRST_DAY + dt.timedelta(39)
    source = read_snapshot(SourceLocation.from_url(url), day, day).entries
    both = stored.merge(source, on=["race_id", "lane"])
    assert len(both) == len(stored) > 0
    pd.testing.assert_series_equal(
        both["odds_times"], both["win_odds"] * 3, check_names=False, rtol=1e-12
    )


def test_a_batch_set_gives_each_row_its_own_window_and_no_frames():
    data = synthetic.generate(FIRST_DAY, days=30, races_per_day=4, seed=2)
    days = [_day(o) for o in range(10, 30)]

    def last_seen(day, history):
        sums = history.window_sums(day.entries, ["racer_id"], days=7)
        return pd.DataFrame({"days_since_seen": sums["days_since_last"]})

    declared = {"history_days": 7, "columns": {"days_since_seen": "int"}}
    batched = per_day(**declared, batch_days=True, name="batched")(last_seen)
    daily = per_day(**declared, name="daily")(last_seen)
    outcomes = run_days(batched, data.races, data.entries, days)
    assert [o.days for o in outcomes] == [tuple(days)]  # one call for all 20 days
    pd.testing.assert_frame_equal(
        compute_days(batched, data.races, data.entries, days),
        compute_days(daily, data.races, data.entries, days),
    )
    seen = compute_days(batched, data.races, data.entries, days)["days_since_seen"].dropna()
    assert len(seen) > 0 and seen.between(1, 7).all()  # never its own day, never older

    @per_day(history_days=7, columns={"rows": "int"}, batch_days=True)
    def reads_frames(day, history):
        return pd.DataFrame({"rows": [len(history.entries)] * len(day.entries)})

    failed = run_days(reads_frames, data.races, data.entries, days[:3])
    assert [o.days for o in failed] == [(d,) for d in days[:3]]  # each day named on its own
    assert all("batch_days=True" in o.error and not o.ok for o in failed)


def test_a_races_entry_tuples_are_its_entries_rows():
    data = synthetic.generate(FIRST_DAY, days=3, races_per_day=3, seed=5)
    run, _ = engine.prepare(racer_form, data.races, data.entries, [_day(2)])
    _, day = run.inputs((_day(2),))
    races = list(day.each_race())
    assert len(races) == 3 and sum(len(race) for race in races) == len(day.entries)
    for race in races:
        assert list(race.entries["race_id"].unique()) == [race.race_id] == [race.row["race_id"]]
        assert "finish_position" not in race.entries.columns  # D's results stay hidden
        frame = race.entries.astype(object).where(race.entries.notna(), None)
        assert [tuple(e) for e in race.each_entry()] == list(frame.itertuples(index=False))


def test_the_history_is_in_day_race_lane_order_however_its_rows_come():
    data = synthetic.generate(FIRST_DAY, days=5, races_per_day=4, invalid_races=0, seed=2)
    in_order = data.entries.sort_values(["race_date", "race_id", "lane"], ignore_index=True)
    shuffled = in_order.sample(frac=1, random_state=1)
    expected = RunHistory(data.races, in_order).frame
    pd.testing.assert_frame_equal(RunHistory(data.races, shuffled).frame, expected)
    swapped = in_order.copy()
    swapped.iloc[[3, 4]] = swapped.iloc[[4, 3]].to_numpy()  # two lanes out of order
    pd.testing.assert_frame_equal(RunHistory(data.races, swapped).frame, expected)


def test_a_lookups_rows_are_its_frames_rows_newest_first_and_private_copies():
    data = synthetic.generate(FIRST_DAY, days=30, races_per_day=6, invalid_races=0, seed=3)
    entries = data.entries.copy()
    entries.loc[entries.index[::3], ["racer_weight_kg", "racer_age"]] = None  # NULLs
    history = RunHistory(data.races, entries).at(_day(29), 28)
    racer_id = int(entries["racer_id"].value_counts().index[0])
    rows = history.racer(racer_id)
    frame = rows.to_frame()
    expected = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for record in expected:
        record["race_date"] = record["race_date"].strftime("%Y-%m-%d")
    assert list(rows) == expected and len(expected) > 3
    assert any(r["racer_weight_kg"] is None for r in rows)
    assert all(type(r["racer_age"]) in (int, type(None)) for r in rows)
    assert rows.last(2) == expected[::-1][:2]
    rows.last(1)[0]["finish_position"] = -1  # a set that changes a row changes its copy only
    assert rows.last(1) == expected[-1:]


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2: a pod limited to 2 CPUs
        ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: one worker
        ({"cpu.max": "max 100000\n"}, None),  # no limit: the CPUs it may run on
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ],
)
def test_workers_follow_the_cpus_a_pod_was_granted(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert settings.available_cpus(str(tmp_path)) == min(affinity, expected or affinity)
