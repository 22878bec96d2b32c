"""`feature-assets backfill` targets exactly the chosen days of each asset (no daemon needed)."""

import subprocess

import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test

from feature_assets.ops.backfills import max_runtime_seconds, with_raw_assets_together
from tests.helpers import REPO, backfill_command, backfill_targets, command_env


@pytest.mark.e2e
def test_a_range_targets_each_asset_on_exactly_those_days(tmp_path):
    env = command_env(tmp_path)
    run = backfill_command(env, "--range", "2024-03-01...2024-03-03", "--assets", "raw_races")
    assert run.returncode == 0, run.stderr
    assert "no dagster-daemon is running" in run.stderr
    [target] = backfill_targets(tmp_path / "dagster_home")
    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert target == {"raw_races": days, "raw_race_entries": days}


@pytest.mark.e2e
def test_days_and_raw_assets_go_together(tmp_path):
    env = command_env(tmp_path)
    run = backfill_command(env, "--days", "2024-01-05,2024-02-01", "--assets", "raw_races")
    assert run.returncode == 0, run.stderr
    [target] = backfill_targets(tmp_path / "dagster_home")
    assert target == {
        "raw_races": ["2024-01-05", "2024-02-01"],
        "raw_race_entries": ["2024-01-05", "2024-02-01"],
    }


@pytest.mark.e2e
def test_missing_days_after_moving_the_start_date_earlier(tmp_path):
    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE="2026-11-01")
    assert backfill_command(env, "--missing").returncode == 0
    [first] = backfill_targets(tmp_path / "dagster_home")
    assert first["raw_races"][0] == "2026-11-01"
    # pretend the first backfill's days were all materialised, then move the start earlier
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        from dagster import AssetMaterialization

        for asset, days in first.items():
            for day in days:
                instance.report_runless_asset_event(
                    AssetMaterialization(asset_key=AssetKey(asset), partition=day)
                )
    env["FEATURE_ASSETS_START_DATE"] = "2026-10-25"
    assert backfill_command(env, "--missing").returncode == 0
    second = backfill_targets(tmp_path / "dagster_home")[1]
    new_days = [f"2026-10-{d}" for d in range(25, 32)]
    assert second == {asset: new_days for asset in first}


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, message",
    [
        (["--range", "2024-01-05...2024-01-01"], "the range is reversed"),
        (["--days", "2023-12-31"], "not a day of the partitions"),
        (["--missing", "--failed"], "exactly one of"),
        (["--range", "2024-01-01...2024-01-02", "--assets", "features"], "unknown asset"),
    ],
)
def test_bad_requests_are_named(tmp_path, args, message):
    run = backfill_command(command_env(tmp_path), *args)
    assert run.returncode == 2 and message in run.stderr


def test_runs_get_a_runtime_limit_from_their_size():
    assert max_runtime_seconds(3650) > max_runtime_seconds(1) >= 600
    assert with_raw_assets_together({"raw_races": ["b"], "raw_race_entries": ["a"]}) == {
        "raw_races": ["a", "b"],
        "raw_race_entries": ["a", "b"],
    }


def test_runs_in_order_store_raw_days_first_then_sets_by_ranges():
    from feature_assets.ops.backfills import PlannedRun, runs_in_order

    runs = runs_in_order(
        {
            "raw_races": ["2024-01-01", "2024-01-02", "2024-01-05"],
            "racer_form": ["2024-01-02", "2024-01-05"],
            "race_context": ["2024-01-02", "2024-01-05"],
            "race_features": ["2024-01-01", "2024-01-02", "2024-01-03"],
        },
        days_per_run=2,
    )
    raw = ("raw_races", "raw_race_entries")
    assert runs == [
        PlannedRun(raw, "2024-01-01", "2024-01-02"),
        PlannedRun(raw, "2024-01-05", "2024-01-05"),
        PlannedRun(("race_context", "racer_form"), "2024-01-02", "2024-01-02"),
        PlannedRun(("race_context", "racer_form"), "2024-01-05", "2024-01-05"),
        PlannedRun(("race_features",), "2024-01-01", "2024-01-02"),
        PlannedRun(("race_features",), "2024-01-03", "2024-01-03"),
    ]


@pytest.mark.e2e
def test_wait_without_a_daemon_runs_the_backfill_here(tmp_path, monkeypatch):
    """As "Add your own features" has it: no daemon, `--wait` still ends with the days."""
    import datetime as dt

    from feature_assets.io import synthetic
    from feature_assets.ops.status import days_by_state

    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE="2024-01-01")
    source = tmp_path / "dagster_home" / "data" / "demo.sqlite"
    synthetic.load(
        f"sqlite:///{source}", synthetic.generate(dt.date(2024, 1, 1), days=12, races_per_day=3)
    )
    run = subprocess.run(
        ["feature-assets", "backfill", "--range", "2024-01-08...2024-01-10", "--assets",
         "racer_form", "--wait"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "No dagster-daemon runs for this instance: running the backfill here" in run.stdout
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with DagsterInstance.get() as instance:
        assert instance.get_backfills() == []  # nothing left queued for a daemon
        raw, form = days_by_state(instance, ["raw_race_entries", "racer_form"])
    assert form.materialized == ["2024-01-08", "2024-01-09", "2024-01-10"]
    assert raw.materialized[:1] == ["2024-01-01"] and "2024-01-10" in raw.materialized


@pytest.mark.unit
def test_raw_runs_go_apart_only_beside_a_set_with_a_bigger_pod(monkeypatch):
    from feature_assets.feature_sets import registered_sets
    from feature_assets.ops.backfills import raw_runs_apart

    monkeypatch.setenv("FEATURE_ASSETS_FEATURE_SETS", "tests.feature_sets.heavy")
    registered_sets.cache_clear()
    try:
        raw = {"raw_races": ["2024-01-01"], "raw_race_entries": ["2024-01-01"]}
        assert raw_runs_apart({**raw, "heavy": ["2024-01-01"]})  # 4 CPU, 6Gi
        assert not raw_runs_apart({**raw, "racer_form": ["2024-01-01"]})  # the default pod
        assert not raw_runs_apart({"heavy": ["2024-01-01"]})  # no raw day to keep small
    finally:
        monkeypatch.undo()
        registered_sets.cache_clear()


@pytest.mark.e2e
def test_a_set_with_a_bigger_pod_waits_for_a_daemon_instead_of_hanging(tmp_path):
    env = command_env(
        tmp_path, FEATURE_ASSETS_FEATURE_SETS="tests.feature_sets.heavy", PYTHONPATH=str(REPO)
    )
    run = backfill_command(env, "--range", "2024-03-01...2024-03-02", "--assets", "heavy")
    assert run.returncode == 1
    assert "the raw days are stored first, by a daemon" in run.stderr
    assert backfill_targets(tmp_path / "dagster_home") == []  # nothing half-launched
