"""Every day of every asset in exactly one state: materialized, failed, in progress or missing.

Read from Dagster's partition status (the instance's status cache), not from the files, so
it takes a fraction of a second for ten years of days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.definitions.data_version import CODE_VERSION_TAG
from dagster._core.storage.partition_status_cache import AssetPartitionStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from feature_assets.core.dates import compact_days
from feature_assets.core.day_errors import ERRORS_BY_DAY, INVALID_RACES_BY_DAY, day_cause
from feature_assets.core.feature_set import FeatureSet
from feature_assets.feature_sets import registered_sets
from feature_assets.partitions import daily_partitions, measured_days, prediction_days

RAW_ASSETS = ("raw_races", "raw_race_entries")  # one snapshot: always together
# race-day assets: from the day predicting started (FEATURE_ASSETS_PREDICT_START_DATE), and
# shown by `status` only when named, since they are no part of what backfills fill
RACE_DAY_PARTITIONS = {"predictions": prediction_days, "prediction_results": measured_days}


def feature_set_names() -> tuple[str, ...]:
    return tuple(feature_set.name for feature_set in registered_sets())


def _feature_set(name: str) -> FeatureSet:
    return next(s for s in registered_sets() if s.name == name)


def all_assets() -> tuple[str, ...]:
    """The raw assets, then one asset per feature set."""
    return (*RAW_ASSETS, *feature_set_names())


RUNS_SEARCHED_FOR_ERRORS = 1000


@dataclass(frozen=True)
class DayError:
    """Why a day failed, in the words of `core.day_errors` (which the UI shows too): `cause`
    groups days alike (the rules broken; race ids and pids blanked), `example` is this day's
    own (its race ids), `detail` this day's full account."""

    cause: str
    detail: str
    run_id: str
    example: str = ""


@dataclass
class AssetDays:
    asset: str
    materialized: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, DayError] = field(default_factory=dict)  # failed day -> its error
    stale: list[str] = field(default_factory=list)  # materialised by code changed since

    @property
    def complete(self) -> bool:
        """Every day materialised: a day in progress is not done yet."""
        return not self.failed and not self.missing and not self.in_progress

    def failures_by_cause(self) -> list[tuple[str, list[str]]]:
        """(cause, days) for the failed days, the most frequent cause first."""
        by_cause: dict[str, list[str]] = {}
        for day in self.failed:
            error = self.errors.get(day)
            by_cause.setdefault(error.cause if error else UNKNOWN_CAUSE, []).append(day)
        return sorted(by_cause.items(), key=lambda item: (-len(item[1]), item[1][0]))

    def example(self, days: list[str]) -> str:
        """The cause of a group of `days` as its first day has it: its race_id, not N."""
        error = self.errors.get(days[0])
        return (error.example or error.cause) if error else UNKNOWN_CAUSE

    def as_json(self) -> dict:
        return {
            "asset": self.asset,
            "days": sum(map(len, (self.materialized, self.failed, self.in_progress, self.missing))),
            "materialized": len(self.materialized),
            "in_progress": compact_days(self.in_progress).split(", ") if self.in_progress else [],
            "failed": compact_days(self.failed).split(", ") if self.failed else [],
            "missing": compact_days(self.missing).split(", ") if self.missing else [],
            "stale": compact_days(self.stale).split(", ") if self.stale else [],
            "causes": [
                {
                    "cause": cause,
                    "days": compact_days(days).split(", "),
                    "first_day": days[0],
                    "first": self.example(days),
                }
                for cause, days in self.failures_by_cause()
            ],
            "errors": {
                day: {"cause": e.cause, "detail": e.detail, "run_id": e.run_id}
                for day, e in self.errors.items()
            },
        }


UNKNOWN_CAUSE = "no failed run found that covered the day (older than the runs searched)"


def days_by_state(
    instance: DagsterInstance, assets: Iterable[str] | None = None, with_errors: bool = True
) -> list[AssetDays]:
    """The state of every partition of each asset, with the last error of each failed day."""
    assets = all_assets() if assets is None else assets
    result = []
    for asset in assets:
        partitions = RACE_DAY_PARTITIONS.get(asset, daily_partitions)
        keys = partitions.get_partition_keys()
        # None when the asset was never materialised at all
        statuses = instance.get_status_by_partition(AssetKey(asset), keys, partitions) or {}
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
        if with_errors:
            days.errors = last_errors(instance, asset, days.failed)
        if asset in feature_set_names():
            days.stale = stale_days(instance, _feature_set(asset))
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


def last_errors(
    instance: DagsterInstance, asset: str, failed: Sequence[str]
) -> dict[str, DayError]:
    """For each failed day, the error of the newest failed run that covered it and
    targeted `asset`."""
    remaining, errors = set(failed), {}
    if not remaining:
        return errors
    records = instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.FAILURE]), limit=RUNS_SEARCHED_FOR_ERRORS
    )
    for record in records:  # newest first
        run = record.dagster_run
        if run.asset_selection and AssetKey(asset) not in run.asset_selection:
            continue
        covered = remaining & run_days(run.tags)
        if not covered:
            continue
        errors.update(run_errors(instance, run.run_id, covered, asset))
        remaining -= covered
        if not remaining:
            break
    return dict(sorted(errors.items()))


def run_errors(
    instance: DagsterInstance, run_id: str, days: Iterable[str], asset: str | None = None
) -> dict[str, DayError]:
    """Each day's error in a failed run: the root cause, not Dagster's wrapper.

    A step failure of `asset`'s step comes first (the step of another asset failing, say the
    raw snapshot, is the cause when the asset's own step never ran); a day that the failure
    names as invalid gets its own races and rules.
    """
    failures = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
    events = [record.event_log_entry.dagster_event for record in failures]
    if asset is not None:
        events.sort(key=lambda event: asset not in (event.step_key or ""))
    for event in events:
        data = event.step_failure_data
        if data is None or data.error is None:
            continue
        cause = root_cause(data.error)
        by_day = _invalid_races_by_day(data)
        errors_by_day = _metadata_json(data, ERRORS_BY_DAY)
        result = {}
        for day in days:
            if day in by_day:
                words = day_cause("invalid races\n" + "\n".join(by_day[day]), day)
                races = "; ".join(by_day[day])
                result[day] = DayError(
                    words.cause,
                    f"run {run_id[:8]}: invalid races on {day}: {races}",
                    run_id,
                    words.example,
                )
            elif day in errors_by_day:
                words = day_cause(errors_by_day[day], day)
                result[day] = DayError(
                    words.cause, f"run {run_id[:8]}: {errors_by_day[day]}", run_id, words.example
                )
            else:
                result[day] = DayError(cause, f"run {run_id[:8]}: {cause}", run_id)
        return result
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    message = next(
        (r.event_log_entry.dagster_event.message for r in records if r.event_log_entry), None
    )
    cause = (message or "failed without an error message").strip().splitlines()[0]
    return {day: DayError(cause, f"run {run_id[:8]}: {cause}", run_id) for day in days}


def root_cause(error) -> str:
    """The first line of the innermost exception of a `SerializableErrorInfo`, as
    `ExceptionName: message`; a `dagster.Failure` (a deliberate failure) gives its own
    description."""
    while error.cause is not None and error.cls_name != "Failure":
        error = error.cause
    lines = error.message.strip().splitlines() or [""]
    text = lines[0].split(": ", 1)[-1] if ": " in lines[0] else lines[0]
    if error.cls_name == "Failure":
        return text
    return f"{error.cls_name}: {text}"


def _metadata_json(data, key: str) -> dict:
    metadata = data.user_failure_data.metadata if data.user_failure_data else {}
    entry = metadata.get(key)
    return dict(entry.value) if entry is not None else {}


def _invalid_races_by_day(data) -> dict[str, list[str]]:
    return _metadata_json(data, INVALID_RACES_BY_DAY)


def first_error_line(instance: DagsterInstance, run_id: str) -> str:
    """The root cause of a failed run, for alerts."""
    error = next(iter(run_errors(instance, run_id, ["run"]).values()))
    return f"run {run_id[:8]}: {error.cause}"


def stale_days(instance: DagsterInstance, feature_set: FeatureSet) -> list[str]:
    """The materialised days of `feature_set` whose stored rows were computed by other code
    than its current code (each materialisation records the asset's code version)."""
    name, current = feature_set.name, feature_set.current_versions
    asset = AssetKey(name)
    stored = DagsterEventType.ASSET_MATERIALIZATION
    latest = instance.get_latest_storage_id_by_partition(asset, stored)
    if not latest:
        return []
    versions = {}
    events = instance.event_log_storage
    if events.get_asset_tags_to_index({CODE_VERSION_TAG}):  # feature_assets.defs.event_log
        tags = events.get_latest_tags_by_partition(asset, stored, [CODE_VERSION_TAG])
        versions = {day: day_tags[CODE_VERSION_TAG] for day, day_tags in tags.items()}
    stale = [day for day, version in versions.items() if version not in current]
    # days stored before their code version was indexed, or on Dagster's own event log
    day_of = {storage_id: day for day, storage_id in latest.items() if day not in versions}
    ids = sorted(day_of)
    for start in range(0, len(ids), 1000):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset, storage_ids=ids[start : start + 1000]),
            limit=1000,
        ).records
        for record in records:
            tags = record.asset_materialization.tags or {}
            if tags.get(CODE_VERSION_TAG) not in current:
                stale.append(day_of[record.storage_id])
    return sorted(stale)
