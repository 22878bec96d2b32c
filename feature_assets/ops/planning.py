"""`feature-assets plan`: what a backfill will take on GKE, before anyone pays for it.

The model, per run of R days (a backfill of N days makes ceil(N/R) raw runs and as many
feature runs, the backfill policy's multi_run(R)):

- a run costs `pod_start` seconds (Spot node already up: image pull, Python and Dagster
  start-up, the instance's bookkeeping) plus `seconds_per_day` x R; a feature run also
  reads the 365 days before its range, each at HISTORY_READ_SHARE of a day's cost;
- the backfill daemon submits about one run per second;
- raw runs read MySQL, so at most `source_pool` of them run at once (the concurrency pool);
  feature runs use every slot: min(max_concurrent_runs, the run pods that fit on the nodes
  the vCPU quota allows), a node taking as many run pods as its allocatable CPU and memory
  hold (`pods_per_node`: 3 one-vCPU pods on an e2-standard-4, not 4);
- the Spot pool first scales up from zero (`scale_up` seconds);
- nodes = slots / pods per node; cost = node hours of work x price per node-hour,
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

from feature_assets.core.machines import MACHINES, pods_per_node
from feature_assets.ops.status import run_days

HISTORY_DAYS = 365  # the built-in set's window: what a pipeline run reads before its range


# the quota a machine type's vCPUs count against, besides the regional CPUS quota
QUOTA_METRIC = {"n2": "N2_CPUS", "c2d": "C2D_CPUS", "c3": "C3_CPUS"}
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
    vcpu_per_run: float = 1.0  # deploy/helm/values.yaml, runK8sConfig
    memory_per_run_gb: float = 2.0
    vcpu_quota: int = 24  # a new project's regional CPUS quota
    # deploy/helm/values.yaml: what the Spot pool holds, 5 nodes x 3 run pods
    # (tests/test_run_pod.py derives both from the scripts' pool)
    max_concurrent_runs: int = 15
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
    per_node = max(1, pods_per_node(machine, cluster.vcpu_per_run, cluster.memory_per_run_gb))
    by_quota = int(cluster.vcpu_quota // machine.vcpus) * per_node
    slots = max(1, min(cluster.max_concurrent_runs, by_quota, runs_per_asset))
    raw_seconds = cluster.pod_start + seconds_per_day * days_per_run
    history = seconds_per_day * HISTORY_READ_SHARE * min(HISTORY_DAYS, days - 1)
    feature_seconds = raw_seconds + history
    raw_waves = math.ceil(runs_per_asset / min(slots, cluster.source_pool))
    feature_waves = math.ceil(runs_per_asset / slots)
    submitting = 2 * runs_per_asset / cluster.submissions_per_second
    working = raw_waves * raw_seconds + feature_waves * feature_seconds
    wall = cluster.scale_up + max(submitting, working)
    nodes = math.ceil(slots / per_node)
    price = machine.spot_per_hour if cluster.spot else machine.on_demand_per_hour
    run_seconds = runs_per_asset * (raw_seconds + feature_seconds)
    busy_node_seconds = run_seconds / per_node
    always_on = MACHINES[SYSTEM_MACHINE].on_demand_per_hour + CLOUD_SQL_PER_HOUR
    system = always_on * wall / 3600
    return Plan(
        days=days,
        days_per_run=days_per_run,
        runs=2 * runs_per_asset,
        concurrent_runs=slots,
        nodes=nodes,
        vcpus=nodes * machine.vcpus,
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


# --- feature sets: CPU-heavy code, spread over many pods -------------------------------
CPUS_PER_POD_CHOICES = (1, 2, 4, 7, 15, 30)  # what fits a node of 2, 4, 8, 16, 32 vCPUs
SET_DAYS_PER_RUN_CHOICES = (1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 365)
POD_MEMORY_BASE_GB = 1.5  # the run worker and the run's history (benchmarks/)
POD_MEMORY_PER_WORKER_GB = 0.3
HISTORY_READ_SECONDS_PER_DAY = 0.02  # raw days read back from GCS before computing


@dataclasses.dataclass(frozen=True)
class SetWorkload:
    days: int
    races_per_day: float
    seconds_per_race: float  # CPU seconds of the set's code per race
    history_days: int = 365

    @property
    def day_seconds(self) -> float:
        """One day is one unit of work for one worker."""
        return self.races_per_day * self.seconds_per_race


@dataclasses.dataclass(frozen=True)
class SetPlan:
    workload: SetWorkload
    machine: str
    cpus_per_pod: int
    days_per_run: int
    runs: int
    runs_at_once: int
    nodes: int
    node_vcpus: int
    run_seconds: float
    wall_seconds: float
    cost_usd: float

    def describe(self) -> str:
        w = self.workload
        return "\n".join(
            [
                f"work                {w.days:,} days x {w.races_per_day:g} races x"
                f" {w.seconds_per_race:g} s = {w.days * w.day_seconds / 3600:,.1f} CPU-hours",
                f"machine             {self.machine} (Spot)",
                f"CPUs per pod        {self.cpus_per_pod} (the set's cpus=; as many workers)",
                f"days per run        {self.days_per_run} (FEATURE_ASSETS_DAYS_PER_RUN)",
                f"runs (pods)         {self.runs:,}",
                f"runs at once        {self.runs_at_once} (maxConcurrentRuns at least this)",
                f"nodes at peak       {self.nodes} ({self.node_vcpus:,} vCPU of quota)",
                f"one run             {self.run_seconds / 60:.1f} min (start, history, compute)",
                f"wall time           {self.wall_seconds / 60:.1f} min",
                f"cost                ${self.cost_usd:.2f}",
            ]
        )


def estimate_set(
    workload: SetWorkload,
    machine_name: str,
    cpus_per_pod: int,
    days_per_run: int,
    cluster: Cluster,
    vcpu_quota: int | None = None,
) -> SetPlan | None:
    """The plan for these choices, or None when a pod does not fit the machine."""
    machine = MACHINES[machine_name]
    memory_gb = POD_MEMORY_BASE_GB + POD_MEMORY_PER_WORKER_GB * cpus_per_pod
    per_node = pods_per_node(machine, cpus_per_pod, memory_gb)
    if per_node == 0:
        return None
    runs = math.ceil(workload.days / days_per_run)
    quota = cluster.vcpu_quota if vcpu_quota is None else vcpu_quota
    max_nodes = quota // machine.vcpus
    at_once = min(runs, max_nodes * per_node)
    if at_once == 0:
        return None
    nodes = math.ceil(at_once / per_node)
    history = HISTORY_READ_SECONDS_PER_DAY * (workload.history_days + days_per_run)
    compute = math.ceil(days_per_run / cpus_per_pod) * workload.day_seconds
    run_seconds = cluster.pod_start + history + compute
    waves = math.ceil(runs / at_once)
    submitting = runs / cluster.submissions_per_second
    wall = cluster.scale_up + max(waves * run_seconds, submitting + run_seconds)
    node_seconds = nodes * (wall - cluster.scale_up / 2)
    always_on = MACHINES[SYSTEM_MACHINE].on_demand_per_hour + CLOUD_SQL_PER_HOUR
    cost = node_seconds / 3600 * machine.spot_per_hour + always_on * wall / 3600
    return SetPlan(
        workload,
        machine_name,
        cpus_per_pod,
        days_per_run,
        runs,
        at_once,
        nodes,
        nodes * machine.vcpus,
        run_seconds,
        wall,
        cost,
    )


def set_plans(workload: SetWorkload, cluster: Cluster, vcpu_quota: int | None = None):
    for machine_name in MACHINES:
        for cpus in CPUS_PER_POD_CHOICES:
            for days_per_run in SET_DAYS_PER_RUN_CHOICES:
                if days_per_run <= workload.days:
                    plan = estimate_set(
                        workload, machine_name, cpus, days_per_run, cluster, vcpu_quota
                    )
                    if plan is not None:
                        yield plan


def best_set_plan(
    workload: SetWorkload, cluster: Cluster, target_seconds: float
) -> tuple[SetPlan, SetPlan | None]:
    """The cheapest plan within the vCPU quota that ends within `target_seconds`, else the
    fastest within the quota; and when that one is late, the cheapest plan that ends in
    time with more quota (None when the quota suffices, or when no plan ends in time)."""
    within = list(set_plans(workload, cluster))
    on_time = [plan for plan in within if plan.wall_seconds <= target_seconds]
    if on_time:
        return min(on_time, key=lambda plan: (plan.cost_usd, plan.wall_seconds)), None
    fastest = min(within, key=lambda plan: (plan.wall_seconds, plan.cost_usd))
    unbounded = [
        plan
        for plan in set_plans(workload, cluster, vcpu_quota=10**6)
        if plan.wall_seconds <= target_seconds
    ]
    if not unbounded:
        return fastest, None
    return fastest, min(unbounded, key=lambda plan: (plan.cost_usd, plan.wall_seconds))


def quota_advice(plan: SetPlan, vcpus: int, region: str = "us-central1") -> str:
    family = QUOTA_METRIC.get(plan.machine.split("-")[0])
    metrics = "CPUS" + (f" and {family}" if family else "")
    return (
        f"request {metrics} quota of at least {vcpus:,} vCPU in {region} (IAM & Admin >"
        " Quotas; Spot nodes count against PREEMPTIBLE_CPUS instead where that quota is set)"
    )


def measured_seconds_per_race(instance: DagsterInstance, set_name: str, limit: int = 500):
    """Median CPU seconds per race of the set's latest materialised days, or None."""
    from dagster import AssetKey, AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(set_name)), limit=limit
    ).records
    values = [
        entry.value
        for record in records
        if (entry := record.asset_materialization.metadata.get("seconds_per_race")) is not None
    ]
    return statistics.median(values) if values else None


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    trials: int
    workers: int
    nodes: int
    seconds_per_trial: float
    wall_seconds: float
    cost_usd: float
    limited_by: str | None  # what kept the workers below those asked for

    def describe(self) -> str:
        limited = f" (limited by {self.limited_by})" if self.limited_by else ""
        return "\n".join(
            [
                f"trials              {self.trials:,}",
                f"worker runs (pods)  {self.workers}{limited}",
                f"nodes at peak       {self.nodes}",
                f"seconds per trial   {self.seconds_per_trial:,.1f}",
                f"wall time           {self.wall_seconds / 60:,.1f} min",
                f"cost                ${self.cost_usd:.2f}",
            ]
        )


def estimate_search(
    trials: int, seconds_per_trial: float, parallel: int, cluster: Cluster
) -> SearchPlan:
    """A search of `trials` trials on `parallel` worker pods of one trial at a time: the
    pods run at once as far as the run limit and the quota allow, each takes the next
    waiting trial, so the wall time is the waves of trials after the nodes' start."""
    machine = MACHINES[cluster.machine]
    per_node = max(1, pods_per_node(machine, cluster.vcpu_per_run, cluster.memory_per_run_gb))
    by_quota = int(cluster.vcpu_quota // machine.vcpus) * per_node
    limits = {"the asked workers": parallel, "the trials": trials}
    limits["maxConcurrentRuns"] = cluster.max_concurrent_runs
    limits["the vCPU quota"] = max(1, by_quota)
    workers = min(limits.values())
    limited_by = next((why for why, n in limits.items() if n == workers), None)
    working = cluster.pod_start + math.ceil(trials / workers) * seconds_per_trial
    wall = cluster.scale_up + working
    price = machine.spot_per_hour if cluster.spot else machine.on_demand_per_hour
    nodes = math.ceil(workers / per_node)
    always_on = MACHINES[SYSTEM_MACHINE].on_demand_per_hour + CLOUD_SQL_PER_HOUR
    return SearchPlan(
        trials=trials,
        workers=workers,
        nodes=nodes,
        seconds_per_trial=seconds_per_trial,
        wall_seconds=wall,
        cost_usd=nodes * working / 3600 * price + always_on * wall / 3600,
        limited_by=None if limited_by == "the asked workers" else limited_by,
    )


def measured_seconds_per_trial(study) -> float | None:
    """The mean duration of a study's finished trials (complete or pruned)."""
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.state.name != "FAIL" and t.datetime_start
    ]
    return sum(durations) / len(durations) if durations else None
