"""`feature-assets plan`: the estimate's arithmetic, and seconds per day from run history."""

import subprocess

from dagster import DagsterInstance

from feature_assets import demo
from feature_assets.planning import MACHINES, Cluster, best_plan, estimate, measured_seconds_per_day
from tests.conftest import FIRST_DAY
from tests.test_commands import REPO, _environment
from tests.test_pipeline import ALL, _day, _run


def test_a_ten_year_plan_is_bounded_by_quota_pool_and_submission():
    cluster = Cluster(machine="e2-standard-4", vcpu_quota=24, max_concurrent_runs=200)
    plan = estimate(3650, 30, 0.05, cluster)
    assert plan.runs == 2 * 122  # raw and feature runs of 30 days
    assert plan.concurrent_runs == 24 and plan.quota_limited
    assert plan.nodes == 6  # 24 runs x 1 vCPU on 4-vCPU nodes
    # more quota: more runs at once, shorter, never dearer per run-second
    wider = estimate(3650, 30, 0.05, Cluster(vcpu_quota=200, max_concurrent_runs=200))
    assert wider.wall_seconds < plan.wall_seconds and not wider.quota_limited
    # one run per day: thousands of pods, and the daemon's one-per-second submission shows
    per_day = estimate(3650, 1, 0.05, Cluster())
    assert per_day.runs == 7300 and per_day.wall_seconds >= 7300
    best = best_plan(3650, 0.05, Cluster())
    assert best.wall_seconds <= min(per_day.wall_seconds, wider.wall_seconds)
    spot, on_demand = (estimate(3650, 30, 0.05, Cluster(spot=s)) for s in (True, False))
    assert spot.cost_usd < on_demand.cost_usd
    assert set(MACHINES) >= {"e2-standard-4", "n2-standard-8"}


def test_seconds_per_day_come_from_finished_runs(mysql_url, tmp_path):
    demo.load(mysql_url, demo.generate(FIRST_DAY, days=10, races_per_day=6, seed=3))
    env = _environment(tmp_path)

    def plan(*args):
        return subprocess.run(
            ["feature-assets", "plan", "--days", "3650", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    empty = plan("--from-history")
    assert empty.returncode == 2 and "no finished runs" in empty.stderr

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert _run(mysql_url, str(tmp_path / "parquet"), instance, ALL, _day(0), _day(9)).success
        measured = measured_seconds_per_day(instance)
    assert measured is not None and 0 < measured < 60
    planned = plan("--from-history", "--machine", "n2-standard-8")
    assert planned.returncode == 0, planned.stderr
    assert "measured in this instance" in planned.stdout
    assert f"seconds per day     {measured:.3f}" in planned.stdout
    assert "<- recommended" in planned.stdout
