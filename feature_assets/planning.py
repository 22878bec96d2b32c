"""`feature-assets plan`: what a backfill will take on GKE, before anyone pays for it.

The model, per run of R days (a backfill of N days makes ceil(N/R) raw runs and as many
feature runs, the backfill policy's multi_run(R)):

- a run costs `pod_start` seconds (Spot node already up: image pull, Python and Dagster
  start-up, the instance's bookkeeping) plus `seconds_per_day` x R; a feature run also
  reads the 365 days before its range, each at HISTORY_READ_SHARE of a day's cost;
- the backfill daemon submits about one run per second;
- raw runs read MySQL, so at most `source_pool` of them run at once (the concurrency pool);
  feature runs use every slot: min(max_concurrent_runs, vCPU quota / vCPU per run);
- the Spot pool first scales up from zero (`scale_up` seconds);
- nodes = slots x vCPU per run / vCPU per node; cost = nodes x hours x price per node-hour,
  plus the on-demand system node (webserver, daemon, code server) and the Cloud SQL
  instance for the whole time.

`seconds_per_day` comes from the instance's run history when it has finished runs
(`measured_seconds_per_day`): the median of a run's duration divided by its days.
Prices are list prices per node-hour in us-central1 (USD), parameters with defaults below.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from feature_assets.day_status import run_days
from feature_assets.racing.features import HISTORY_DAYS


@dataclasses.dataclass(frozen=True)
class Machine:
    vcpus: int
    memory_gb: int
    on_demand_per_hour: float
    spot_per_hour: float


MACHINES = {
    "e2-standard-2": Machine(2, 8, 0.067, 0.020),
    "e2-standard-4": Machine(4, 16, 0.134, 0.040),
    "e2-standard-8": Machine(8, 32, 0.268, 0.080),
    "n2-standard-4": Machine(4, 16, 0.194, 0.047),
    "n2-standard-8": Machine(8, 32, 0.388, 0.094),
    "c3-standard-4": Machine(4, 16, 0.209, 0.050),
}
SYSTEM_MACHINE = "e2-standard-2"
CLOUD_SQL_PER_HOUR = 0.07  # db-custom-1-3840, PostgreSQL, zonal
HISTORY_READ_SHARE = 0.5
DAYS_PER_RUN_CHOICES = (1, 7, 15, 30, 60, 90, 180, 365)
# Measured on 2 cores (benchmarks/RESULTS.md): a ten-year ranged run takes ~46 s on a
# PostgreSQL instance, ~0.0126 s a day; doubled for one vCPU a run, doubled again because a
# feature run of 30 days reads 395 days (its history window) from GCS.
DEFAULT_SECONDS_PER_DAY = 0.05


@dataclasses.dataclass(frozen=True)
class Cluster:
    machine: str = "e2-standard-4"
    spot: bool = True
    vcpu_per_run: float = 1.0
    vcpu_quota: int = 24  # a new project's regional CPUS quota
    max_concurrent_runs: int = 20  # deploy/helm/values.yaml
    source_pool: int = 8
    pod_start: float = 45.0
    scale_up: float = 180.0
    submissions_per_second: float = 1.0


@dataclasses.dataclass(frozen=True)
class Plan:
    days: int
    days_per_run: int
    runs: int
    concurrent_runs: int
    nodes: int
    vcpus: float
    seconds_per_day: float
    wall_seconds: float
    cost_usd: float
    quota_limited: bool

    def describe(self) -> str:
        return "\n".join(
            [
                f"days                {self.days:,}",
                f"days per run        {self.days_per_run}",
                f"runs (pods)         {self.runs:,} (raw and feature runs)",
                f"runs at once        {self.concurrent_runs}"
                + (" (limited by the vCPU quota)" if self.quota_limited else ""),
                f"vCPU at peak        {self.vcpus:g}",
                f"nodes at peak       {self.nodes}",
                f"seconds per day     {self.seconds_per_day:.3f}",
                f"wall time           {self.wall_seconds / 60:.1f} min",
                f"cost                ${self.cost_usd:.2f}",
            ]
        )


def estimate(days: int, days_per_run: int, seconds_per_day: float, cluster: Cluster) -> Plan:
    machine = MACHINES[cluster.machine]
    runs_per_asset = math.ceil(days / days_per_run)
    by_quota = int(cluster.vcpu_quota // cluster.vcpu_per_run)
    slots = max(1, min(cluster.max_concurrent_runs, by_quota, runs_per_asset))
    raw_seconds = cluster.pod_start + seconds_per_day * days_per_run
    history = seconds_per_day * HISTORY_READ_SHARE * min(HISTORY_DAYS, days - 1)
    feature_seconds = raw_seconds + history
    raw_waves = math.ceil(runs_per_asset / min(slots, cluster.source_pool))
    feature_waves = math.ceil(runs_per_asset / slots)
    submitting = 2 * runs_per_asset / cluster.submissions_per_second
    working = raw_waves * raw_seconds + feature_waves * feature_seconds
    wall = cluster.scale_up + max(submitting, working)
    nodes = math.ceil(slots * cluster.vcpu_per_run / machine.vcpus)
    price = machine.spot_per_hour if cluster.spot else machine.on_demand_per_hour
    run_seconds = runs_per_asset * (raw_seconds + feature_seconds)
    busy_node_seconds = run_seconds * cluster.vcpu_per_run / machine.vcpus
    always_on = MACHINES[SYSTEM_MACHINE].on_demand_per_hour + CLOUD_SQL_PER_HOUR
    system = always_on * wall / 3600
    return Plan(
        days=days,
        days_per_run=days_per_run,
        runs=2 * runs_per_asset,
        concurrent_runs=slots,
        nodes=nodes,
        vcpus=slots * cluster.vcpu_per_run,
        seconds_per_day=seconds_per_day,
        wall_seconds=wall,
        cost_usd=busy_node_seconds / 3600 * price + system,
        quota_limited=by_quota < min(cluster.max_concurrent_runs, runs_per_asset),
    )


def best_plan(days: int, seconds_per_day: float, cluster: Cluster) -> Plan:
    """The days per run with the shortest wall time; cheaper on a tie (within 5 %)."""
    plans = [
        estimate(days, choice, seconds_per_day, cluster)
        for choice in sorted({*DAYS_PER_RUN_CHOICES, days})
        if choice <= days
    ]
    fastest = min(plan.wall_seconds for plan in plans)
    return min(
        (plan for plan in plans if plan.wall_seconds <= fastest * 1.05),
        key=lambda plan: plan.cost_usd,
    )


def measured_seconds_per_day(instance: DagsterInstance, limit: int = 500) -> float | None:
    """Median seconds per day of the instance's finished runs, or None without any."""
    records = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]), limit=limit)
    rates = []
    for record in records:
        days = len(run_days(record.dagster_run.tags))
        if days and record.start_time and record.end_time:
            rates.append((record.end_time - record.start_time) / days)
    return statistics.median(rates) if rates else None
