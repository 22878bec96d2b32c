"""`feature-assets plan`: the estimate's arithmetic, and seconds per day from run history."""

import datetime as dt
import math
import re
import subprocess

import optuna
import pytest
from dagster import DagsterInstance
from optuna.trial import TrialState

from feature_assets.defs.features import feature_set_asset
from feature_assets.feature_sets.racer_form import racer_form
from feature_assets.io import synthetic
from feature_assets.ops.planning import (
    MACHINES,
    Cluster,
    SetWorkload,
    best_plan,
    best_set_plan,
    estimate,
    estimate_search,
    measured_seconds_per_day,
    measured_seconds_per_race,
    measured_seconds_per_trial,
)
from tests.conftest import FIRST_DAY
from tests.helpers import CONTRACT_ASSETS, REPO, command_env, materialize_range, nth_day


def test_a_ten_year_plan_is_bounded_by_quota_pool_and_submission():
    cluster = Cluster(machine="e2-standard-4", vcpu_quota=24, max_concurrent_runs=200)
    plan = estimate(3650, 30, 0.05, cluster)
    assert plan.runs == 2 * 122  # raw and feature runs of 30 days
    assert plan.concurrent_runs == 18 and plan.quota_limited
    assert plan.nodes == 6  # 24 vCPU of quota: 6 nodes of 4 vCPU, 3 one-vCPU run pods each
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


@pytest.mark.e2e
def test_seconds_per_day_come_from_finished_runs(mysql_url, tmp_path, monkeypatch):
    synthetic.load(mysql_url, synthetic.generate(FIRST_DAY, days=10, races_per_day=6, seed=3))
    env = command_env(tmp_path)

    def plan(*args):
        return subprocess.run(
            ["feature-assets", "plan", "--day-count", "3650", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    empty = plan("--from-history")
    assert empty.returncode == 2 and "no finished runs" in empty.stderr

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # as `feature-assets` has it
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert materialize_range(
            mysql_url, str(tmp_path / "parquet"), instance, CONTRACT_ASSETS, nth_day(0), nth_day(9)
        ).success
        measured = measured_seconds_per_day(instance)
    assert measured is not None and 0 < measured < 60
    planned = plan("--from-history", "--machine", "n2-standard-8")
    assert planned.returncode == 0, planned.stderr
    assert "measured in this instance" in planned.stdout
    assert f"seconds per day     {measured:.3f}" in planned.stdout
    assert "<- recommended" in planned.stdout


def test_the_users_workload_fits_in_15_minutes_given_the_quota_it_names():
    """3,650 days of 40 races at 4 s a race: a week of CPU in at most 15 minutes."""
    workload = SetWorkload(days=3650, races_per_day=40, seconds_per_race=4.0)
    within, on_time = best_set_plan(workload, Cluster(), target_seconds=15 * 60)
    assert within.wall_seconds > 15 * 60 and within.node_vcpus <= 24  # a new project's quota
    assert on_time.wall_seconds <= 15 * 60 and on_time.cost_usd > 0
    # the quota it names is enough: planned again with it, the plan ends in time
    enough = Cluster(vcpu_quota=on_time.node_vcpus)
    planned, more = best_set_plan(workload, enough, target_seconds=15 * 60)
    assert more is None and planned.wall_seconds <= 15 * 60
    assert planned.runs_at_once * planned.cpus_per_pod <= enough.vcpu_quota
    # every day computed: pods x days per run cover the ten years
    assert planned.runs * planned.days_per_run >= 3650


@pytest.mark.e2e
def test_plan_prints_the_plan_its_cost_and_the_quota_to_request(tmp_path):
    env = command_env(tmp_path)
    run = subprocess.run(
        ["feature-assets", "plan", "--day-count", "3650", "--seconds-per-race", "4"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    wall = float(re.search(r"wall time\s+([\d.]+) min", run.stdout).group(1))
    assert wall <= 15 and re.search(r"cost\s+\$\d+\.\d\d", run.stdout)
    assert re.search(r"request CPUS .*quota of at least [\d,]+ vCPU", run.stdout)


@pytest.mark.e2e
def test_seconds_per_race_come_from_a_sets_materialisations(mysql_url, tmp_path, monkeypatch):
    synthetic.load(mysql_url, synthetic.generate(FIRST_DAY, days=6, races_per_day=6, seed=3))
    env = command_env(tmp_path)
    universe = [CONTRACT_ASSETS[0], feature_set_asset(racer_form)]
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # as `feature-assets` has it
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        storage = str(tmp_path / "parquet")
        ran = materialize_range(
            mysql_url, storage, instance, universe, nth_day(0), nth_day(5), universe=universe
        )
        assert ran.success
        measured = measured_seconds_per_race(instance, "racer_form")
    assert measured is not None and 0 < measured < 1
    planned = subprocess.run(
        ["feature-assets", "plan", "--day-count", "3650", "--set", "racer_form"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "seconds per race measured in this instance" in planned.stdout
    assert f"x {measured:g} s" in planned.stdout
    assert "dagster-k8s/config=" in planned.stdout  # the tag for UI backfills


def test_a_search_plan_waves_its_trials_over_the_pods_the_cluster_allows(tmp_path):
    cluster = Cluster(vcpu_quota=24, max_concurrent_runs=15)
    quota_bound = estimate_search(400, 120, 40, cluster)
    assert quota_bound.workers == 15 and quota_bound.limited_by == "maxConcurrentRuns"
    assert quota_bound.nodes == 5  # three one-vCPU pods on each e2-standard-4
    # 400 trials over 15 pods: 27 waves of two minutes, after the nodes' and pods' start
    waves = math.ceil(400 / 15) * 120
    assert quota_bound.wall_seconds == cluster.scale_up + cluster.pod_start + waves
    roomy = estimate_search(400, 120, 40, Cluster(vcpu_quota=200, max_concurrent_runs=100))
    assert roomy.workers == 40 and roomy.limited_by is None
    assert roomy.wall_seconds < quota_bound.wall_seconds / 2
    assert estimate_search(3, 120, 40, Cluster()).workers == 3  # no idle pods

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.sqlite'}")
    start = dt.datetime(2026, 1, 1)
    for seconds, state in ((10, TrialState.COMPLETE), (30, TrialState.PRUNED)):
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0,
                trial_id=0,
                state=state,
                value=0.5 if seconds == 10 else None,
                datetime_start=start,
                datetime_complete=start + dt.timedelta(seconds=seconds),
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={1: 0.6} if state == TrialState.PRUNED else {},
            )
        )
    assert measured_seconds_per_trial(study) == 20


@pytest.mark.unit
def test_a_set_too_big_for_every_node_stops_the_load_naming_it(monkeypatch):
    from feature_assets import settings
    from feature_assets.feature_sets import registered_sets
    from feature_assets.ops.pods import check_set_pods

    monkeypatch.setenv("FEATURE_ASSETS_FEATURE_SETS", "tests.feature_sets.heavy")
    monkeypatch.setenv("FEATURE_ASSETS_RUN_MACHINE", "e2-standard-4")
    registered_sets.cache_clear()
    try:
        with pytest.raises(settings.ConfigurationError) as refused:
            settings.check_configuration(check_set_pods)
        assert (
            "feature set heavy asks 4 CPU and 6Gi, but the largest run pod an e2-standard-4"
            " node holds (FEATURE_ASSETS_RUN_MACHINE) is 3.61 CPU and 13.4Gi"
        ) in str(refused.value)
        monkeypatch.setenv("FEATURE_ASSETS_RUN_MACHINE", "e2-standard-8")
        settings.check_configuration(check_set_pods)  # an 8-vCPU node holds it
    finally:
        monkeypatch.undo()
        registered_sets.cache_clear()
