"""Every day of every asset in exactly one state: materialized, failed, in progress or missing.

Read from Dagster's partition status (the instance's status cache), not from the files, so
it takes a fraction of a second for ten years of days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.partition_status_cache import AssetPartitionStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from feature_assets.dates import compact_days
from feature_assets.partitions import daily_partitions

ASSETS = ("raw_races", "raw_race_entries", "race_features")
RUNS_SEARCHED_FOR_ERRORS = 1000
_FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "  # our own, deliberate failures


@dataclass
class AssetDays:
    asset: str
    materialized: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # failed day -> first error line

    @property
    def complete(self) -> bool:
        return not self.failed and not self.missing

    def as_json(self) -> dict:
        return {
            "asset": self.asset,
            "days": sum(map(len, (self.materialized, self.failed, self.in_progress, self.missing))),
            "materialized": len(self.materialized),
            "in_progress": compact_days(self.in_progress).split(", ") if self.in_progress else [],
            "failed": compact_days(self.failed).split(", ") if self.failed else [],
            "missing": compact_days(self.missing).split(", ") if self.missing else [],
            "errors": self.errors,
        }


def days_by_state(instance: DagsterInstance, assets: Iterable[str] = ASSETS) -> list[AssetDays]:
    """The state of every partition of each asset, with the last error of each failed day."""
    keys = daily_partitions.get_partition_keys()
    result = []
    for asset in assets:
        # None when the asset was never materialised at all
        statuses = instance.get_status_by_partition(AssetKey(asset), keys, daily_partitions) or {}
        days = AssetDays(asset)
        for day in keys:
            status = statuses.get(day)
            if status == AssetPartitionStatus.MATERIALIZED:
                days.materialized.append(day)
            elif status == AssetPartitionStatus.FAILED:
                days.failed.append(day)
            elif status == AssetPartitionStatus.IN_PROGRESS:
                days.in_progress.append(day)
            else:
                days.missing.append(day)
        days.errors = last_errors(instance, asset, days.failed)
        result.append(days)
    return result


def run_days(tags: dict[str, str]) -> set[str]:
    """The days a run covered, from its partition tags."""
    if PARTITION_NAME_TAG in tags:
        return {tags[PARTITION_NAME_TAG]}
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not start or not end:
        return set()
    keys = daily_partitions.get_partition_keys()
    return set(keys[keys.index(start) : keys.index(end) + 1]) if start in keys else set()


def last_errors(instance: DagsterInstance, asset: str, failed: Sequence[str]) -> dict[str, str]:
    """For each failed day, the first line of the error of the newest failed run that
    covered it and targeted `asset`."""
    remaining, errors = set(failed), {}
    if not remaining:
        return errors
    records = instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.FAILURE]), limit=RUNS_SEARCHED_FOR_ERRORS
    )
    for record in records:  # newest first
        run = record.dagster_run
        if run.asset_selection is not None and AssetKey(asset) not in run.asset_selection:
            continue
        covered = remaining & run_days(run.tags)
        if not covered:
            continue
        line = first_error_line(instance, run.run_id)
        errors.update({day: line for day in covered})
        remaining -= covered
        if not remaining:
            break
    return dict(sorted(errors.items()))


def first_error_line(instance: DagsterInstance, run_id: str) -> str:
    for event_type in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
        records = instance.get_records_for_run(run_id, of_type=event_type).records
        for record in records:
            event = record.event_log_entry.dagster_event
            error = event.step_failure_data.error if event.step_failure_data else None
            message = error.message if error else event.message
            if message:
                line = message.strip().splitlines()[0].removeprefix(_FAILURE_PREFIX)
                return f"run {run_id[:8]}: {line}"
    return f"run {run_id[:8]}: failed without an error message"
