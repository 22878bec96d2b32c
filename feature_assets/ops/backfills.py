"""Launching and following Dagster asset backfills of exactly the days asked for.

A backfill is created the way the UI's "Materialize" dialog creates one (GraphQL
`launchPartitionBackfill` with `partitionsByAssets`): each asset gets its own days, so
naming raw days never pulls in the 365 downstream feature days. It is stored in the
instance, shows under Backfills in the UI, and the daemon runs it through the instance's
run launcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.selector import (
    PartitionRangeSelector,
    PartitionsByAssetSelector,
    PartitionsSelector,
)
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from feature_assets import settings
from feature_assets.core.dates import day_ranges
from feature_assets.core.feature_set import FeatureSet
from feature_assets.feature_sets import registered_sets
from feature_assets.ops.pods import k8s_run_tags
from feature_assets.ops.status import RAW_ASSETS
from feature_assets.partitions import daily_partitions

RUNNING = (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING)


def max_runtime_seconds(days_in_run: int) -> int:
    """How long a run of this many days may take before run monitoring fails it.

    Ten years take about 3 minutes on 2 cores; the margin covers slow nodes and queues.
    """
    return 600 + 2 * days_in_run


def with_raw_assets_together(days_by_asset: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Both raw assets come from one snapshot, so each gets the union of their days."""
    result = {asset: sorted(set(days)) for asset, days in days_by_asset.items() if days}
    raw_days = sorted({day for asset in RAW_ASSETS for day in result.get(asset, [])})
    if raw_days:
        result.update({asset: raw_days for asset in RAW_ASSETS})
    return result


def history_days(feature_days: Sequence[str], window: int) -> list[str]:
    """The raw days that the feature days read: D-window .. D of each, within the partitions."""
    keys = daily_partitions.get_partition_keys()
    index = {key: i for i, key in enumerate(keys)}
    needed: set[int] = set()
    for day in feature_days:
        last = index[day]
        needed.update(range(max(0, last - window), last + 1))
    return [keys[i] for i in sorted(needed)]


def with_raw_days_needed(
    days_by_asset: Mapping[str, Sequence[str]],
    stored_raw_days: set[str],
    snapshot_again: bool = False,
) -> dict[str, list[str]]:
    """Adds to the raw assets the history days the feature days read that are not stored;
    with `snapshot_again`, the feature days themselves too (a failed day is snapshotted again,
    since its source may have been fixed since)."""
    raw = {day for asset in RAW_ASSETS for day in days_by_asset.get(asset, [])}
    for feature_set in registered_sets():
        feature_days = list(days_by_asset.get(feature_set.name, []))
        raw |= set(history_days(feature_days, feature_set.history_days)) - stored_raw_days
        if snapshot_again:
            raw |= set(feature_days)
    result = {asset: list(days) for asset, days in days_by_asset.items()}
    if raw:
        result.update({asset: sorted(raw) for asset in RAW_ASSETS})
    return with_raw_assets_together(result)


def launch_backfill(
    instance: DagsterInstance,
    asset_graph,
    days_by_asset: Mapping[str, Sequence[str]],
    title: str,
) -> str:
    """Stores a backfill of exactly `days_by_asset` for the daemon; returns its id.
    `asset_graph`: the code location's (`defs.resolve_asset_graph()`)."""
    days_by_asset = with_raw_assets_together(days_by_asset)
    longest = max(len(days) for days in days_by_asset.values())
    tags = {
        "dagster/max_runtime": str(
            max_runtime_seconds(min(longest, settings.days_per_run() or longest))
        ),
        # a retried run redoes every step: writes are idempotent, and a worker killed after
        # a step finished would otherwise leave "no steps needed to be retried"
        "dagster/retry_strategy": "ALL_STEPS",
        # the pod asks for what the feature sets of the backfill declare (K8sRunLauncher)
        **k8s_run_tags([s for s in registered_sets() if s.name in days_by_asset]),
    }
    selectors = [
        PartitionsByAssetSelector(
            asset_key=AssetKey(asset),
            partitions=PartitionsSelector(
                ranges=[
                    PartitionRangeSelector(start=start, end=end) for start, end in day_ranges(days)
                ]
            ),
        )
        for asset, days in sorted(days_by_asset.items())
    ]
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        backfill_timestamp=time.time(),
        tags=tags,
        dynamic_partitions_store=instance,
        partitions_by_assets=selectors,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


@dataclass
class BackfillProgress:
    total: int
    done: int
    failed: int
    running: int
    finished: bool


def backfill_progress(instance: DagsterInstance, backfill_ids: Sequence[str]) -> BackfillProgress:
    """Asset-days done, failed and running over the backfills, and whether all have ended."""
    total = done = failed = running = 0
    finished = True
    for backfill_id in backfill_ids:
        backfill = instance.get_backfill(backfill_id)
        data = backfill.asset_backfill_data
        total += data.target_subset.num_partitions_and_non_partitioned_assets
        done += data.materialized_subset.num_partitions_and_non_partitioned_assets
        failed += data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets
        in_flight = (
            data.requested_subset - data.materialized_subset - data.failed_and_downstream_subset
        )
        running += in_flight.num_partitions_and_non_partitioned_assets
        finished = finished and backfill.status not in RUNNING
    return BackfillProgress(total, done, failed, running, finished)


def chunks(days: Sequence[str], size: int) -> list[list[str]]:
    days = sorted(days)
    return [days[i : i + size] for i in range(0, len(days), size)]


@dataclass(frozen=True)
class PlannedRun:
    """One ranged run of a backfill run in this process: assets over first..last."""

    assets: tuple[str, ...]
    first: str
    last: str


def runs_in_order(
    days_by_asset: Mapping[str, Sequence[str]], days_per_run: int | None = None
) -> list[PlannedRun]:
    """The ranged runs that store exactly `days_by_asset`: the raw days first (the features
    read them), then the feature sets, sets with the same days sharing each run; one run
    per range of consecutive days, at most `days_per_run` days each."""
    days_by_asset = with_raw_assets_together(days_by_asset)
    groups: dict[tuple[str, ...], list[str]] = {}
    raw = tuple(a for a in RAW_ASSETS if a in days_by_asset)
    if raw:
        groups[raw] = days_by_asset[raw[0]]
    by_days: dict[tuple[str, ...], list[str]] = {}
    for asset, days in sorted(days_by_asset.items()):
        if asset not in RAW_ASSETS:
            by_days.setdefault(tuple(days), []).append(asset)
    groups.update({tuple(assets): list(days) for days, assets in by_days.items()})
    runs = []
    for assets, days in groups.items():
        ordered, start = sorted(days), 0
        for _, last in day_ranges(ordered):  # consecutive stretches, in order
            end = ordered.index(last, start) + 1
            span, start = ordered[start:end], end
            for chunk in chunks(span, days_per_run or len(span)):
                runs.append(PlannedRun(assets, chunk[0], chunk[-1]))
    return runs


def run_in_process(instance: DagsterInstance, job, run: PlannedRun, title: str):
    """Materialises `run` here with `job` (the code location's implicit asset job), as
    `dagster asset materialize --partition-range` does: the instance records the run and its
    days like any other. Returns Dagster's result."""
    return job.execute_in_process(
        instance=instance,
        asset_selection=[AssetKey(asset) for asset in run.assets],
        tags={
            "dagster/asset_partition_range_start": run.first,
            "dagster/asset_partition_range_end": run.last,
            "feature_assets/backfill": title,
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )


def days_to_backfill(
    instance: DagsterInstance,
    assets: Sequence[str],
    *,
    missing: bool = False,
    failed: bool = False,
    stale: bool = False,
    days: Sequence[str] | None = None,
    described: str | None = None,
) -> tuple[dict[str, list[str]], str]:
    """The days of each asset a backfill stores, and its title: each asset's missing, failed
    or stale days, or `days`; feature days bring the raw history they read that is not
    stored (a failed day its own snapshot again, since the source may have been fixed);
    both raw assets get the same days. `assets`: known asset names (the command line's
    `asset_names` checks them)."""
    from feature_assets.feature_sets import feature_set
    from feature_assets.ops.status import days_by_state, feature_set_names, stale_days

    selected = list(assets)
    sets = [name for name in selected if name in feature_set_names()]
    if stale:
        days_by_asset = {name: stale_days(instance, feature_set(name)) for name in sets}
        title = "feature-assets: stale days (code changed)"
    elif missing or failed:
        states = days_by_state(instance, selected)
        days_by_asset = {s.asset: (s.missing if missing else s.failed) for s in states}
        title = "feature-assets: missing days" if missing else "feature-assets: failed days"
    else:
        days_by_asset = {asset: list(days or []) for asset in selected}
        title = f"feature-assets: {described}"
    if any(days_by_asset.get(name) for name in sets):
        [raw_state] = days_by_state(instance, ["raw_race_entries"], with_errors=False)
        days_by_asset = with_raw_days_needed(
            days_by_asset, set(raw_state.materialized), snapshot_again=failed
        )
    return with_raw_assets_together(days_by_asset), title


def run_here(
    instance: DagsterInstance,
    job,
    days_by_asset: Mapping[str, Sequence[str]],
    title: str,
    days_per_run: int | None,
    report: Callable[[str], None],
) -> int:
    """Runs the backfill's ranged runs in this process (`runs_in_order`), telling `report`
    each one's outcome; returns how many failed."""
    runs = runs_in_order(days_by_asset, days_per_run)
    report(
        f"No dagster-daemon runs for this instance: running the backfill here as {len(runs)}"
        " ranged run(s), as `dagster asset materialize` would."
    )
    failed = 0
    for run in runs:
        result = run_in_process(instance, job, run, title)
        state = "done" if result.success else "FAILED"
        report(f"  {', '.join(run.assets)} {run.first}...{run.last}: {state} (run {result.run_id})")
        failed += not result.success
    return failed


def raw_runs_apart(days_by_asset: Mapping[str, Sequence[str]]) -> bool:
    """True when raw days and a set that declares a pod other than the default are stored
    together: their runs go in separate backfills, the raw ones first, so that snapshot
    runs keep the default pod and only the set's runs ask for its size."""
    default = FeatureSet.__dataclass_fields__
    sized = [
        s
        for s in registered_sets()
        if days_by_asset.get(s.name)
        and (s.cpus, s.memory) != (default["cpus"].default, default["memory"].default)
    ]
    return bool(sized) and any(days_by_asset.get(asset) for asset in RAW_ASSETS)
