"""Incremental operation: the daily schedule, and recomputation after late corrections.

Every morning (FEATURE_ASSETS_DAILY_CRON, Asia/Tokyo) `daily_race_features` asks for two
runs: the last FEATURE_ASSETS_RECHECK_DAYS days are snapshotted again (raw assets only),
then the new day (yesterday in Tokyo) is snapshotted and its features computed, one small
run. The re-snapshot goes first so the new day's features already see its corrections.

Each raw day records whether its content is new, unchanged or changed
(`feature_assets.defs.raw`). `recompute_after_corrections` reads the raw days stored
since its last tick and, for each new or changed day D, recomputes the feature days that
read it, D .. D+365, that were computed before it and that no run or backfill holding D
already computes. Unchanged days cost nothing. Its run tags say which days changed: the
UI shows them on the run and on the sensor's ticks, and each raw day's `content` metadata
shows the change (with the previous hash).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    schedule,
    sensor,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PRIORITY_TAG,
)

from feature_assets import feature_sets, settings
from feature_assets.core.dates import compact_days, day_ranges
from feature_assets.defs.raw import CHANGED, NEW, RAW_RACE_ENTRIES, RAW_RACES
from feature_assets.ops.pods import k8s_run_tags
from feature_assets.ops.status import run_days
from feature_assets.partitions import daily_partitions

JOB_NAME = "race_features_job"
TIMEZONE = "Asia/Tokyo"
TOKYO = ZoneInfo(TIMEZONE)
RECORDS_PER_TICK = 1000
CHANGED_DAYS_TAG = "feature_assets/changed_days"
DAILY_TAG = "feature_assets/daily_runs_for"
YET_TO_FINISH = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def _iso(day: dt.date) -> str:
    return day.isoformat()


def daily_run_requests(new_day: dt.date, recheck_days: int) -> list[RunRequest]:
    """The re-snapshot of the days before `new_day` (if any), then the new day's run.

    Both carry DAILY_TAG, by which the schedule sees that a day was already requested:
    Dagster's run keys only deduplicate within one schedule tick.
    """
    first_day = dt.date.fromisoformat(settings.start_date())
    if new_day < first_day:
        return []
    requests = []
    recheck_from = max(first_day, new_day - dt.timedelta(days=recheck_days))
    if recheck_days and recheck_from < new_day:
        last = _iso(new_day - dt.timedelta(days=1))
        requests.append(
            RunRequest(
                run_key=f"recheck:{_iso(recheck_from)}...{last}",
                asset_selection=[RAW_RACES, RAW_RACE_ENTRIES],
                tags={
                    **_range_tags(_iso(recheck_from), last),
                    PRIORITY_TAG: "1",
                    DAILY_TAG: _iso(new_day),
                },
            )
        )
    requests.append(
        RunRequest(
            run_key=f"new-day:{_iso(new_day)}",
            partition_key=_iso(new_day),
            tags={DAILY_TAG: _iso(new_day), **k8s_run_tags(feature_sets.registered_sets())},
        )
    )
    return requests


def _schedule_status() -> DefaultScheduleStatus:
    on = settings.automation_on()
    return DefaultScheduleStatus.RUNNING if on else DefaultScheduleStatus.STOPPED


@schedule(
    name="daily_race_features",
    cron_schedule=settings.daily_cron(),
    execution_timezone=TIMEZONE,
    job_name=JOB_NAME,
    default_status=_schedule_status(),
    description=(
        "The new race day (yesterday in Tokyo): snapshot and features in one run; and a"
        " new snapshot of the days before it, to catch late corrections."
    ),
)
def daily_race_features(context: ScheduleEvaluationContext):
    new_day = context.scheduled_execution_time.astimezone(TOKYO).date() - dt.timedelta(days=1)
    if context.instance.get_run_ids(RunsFilter(tags={DAILY_TAG: _iso(new_day)}), limit=1):
        return SkipReason(f"the runs for {_iso(new_day)} were already requested")
    requests = daily_run_requests(new_day, settings.recheck_days())
    return requests or SkipReason(f"{_iso(new_day)} is before the first partition")


def _run_days(instance: DagsterInstance, run: DagsterRun | None, asset: AssetKey) -> set[str]:
    """The days of a feature set's `asset` that a run, or the backfill it belongs to, computes."""
    if run is None:
        return set()
    backfill_id = run.tags.get(BACKFILL_ID_TAG)
    backfill = instance.get_backfill(backfill_id) if backfill_id else None
    if backfill is not None and backfill.asset_backfill_data is not None:
        target = backfill.asset_backfill_data.target_subset
        if asset not in target.partitions_subsets_by_asset_key:
            return set()
        return set(target.get_partitions_subset(asset).get_partition_keys())
    if run.asset_selection is not None and asset not in run.asset_selection:
        return set()
    return run_days(run.tags)


def _reading_days(day: str, last_day: str, window: int) -> list[str]:
    """The feature days whose history window holds raw `day`: day .. day+window, up to last."""
    start = dt.date.fromisoformat(day)
    end = min(start + dt.timedelta(days=window), dt.date.fromisoformat(last_day))
    return [_iso(start + dt.timedelta(days=i)) for i in range((end - start).days + 1)]


def _runs_yet_to_read(
    instance: DagsterInstance, asset: AssetKey
) -> list[tuple[float | None, set[str]]]:
    """(start time, days of `asset`) of the runs that are waiting or working now."""
    records = instance.get_run_records(RunsFilter(statuses=YET_TO_FINISH))
    return [
        (record.start_time, _run_days(instance, record.dagster_run, asset)) for record in records
    ]


def _content(record) -> str | None:
    """The `content` metadata (new, unchanged, changed) of a raw_races materialisation."""
    materialization = record.asset_materialization
    entry = materialization.metadata.get("content") if materialization else None
    return entry.value if entry else None


def stale_feature_days(
    instance: DagsterInstance, after_storage_id: int | None, last_day: str
) -> tuple[dict[str, dict[str, set[str]]], int | None]:
    """Per feature set, the days to recompute, each with the raw days that made it stale,
    from the raw days stored after `after_storage_id`; and the storage id to continue from.

    A feature day is left alone when a run will compute it after the raw day was stored:
    the run that stored it (or its backfill), or a run that had not started by then.
    """
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=RAW_RACES, after_storage_id=after_storage_id),
        limit=RECORDS_PER_TICK,
        ascending=True,
    ).records
    if not records:
        return {}, after_storage_id
    changes = [record for record in records if _content(record) in (NEW, CHANGED)]
    stale = {}
    for feature_set in feature_sets.registered_sets():
        of_set = _stale_days_of(instance, changes, last_day, feature_set)
        if of_set:
            stale[feature_set.name] = of_set
    return stale, records[-1].storage_id


def _stale_days_of(instance, changes, last_day, feature_set) -> dict[str, set[str]]:
    asset = AssetKey(feature_set.name)
    changed = [
        (
            record,
            _reading_days(
                record.asset_materialization.partition, last_day, feature_set.history_days
            ),
        )
        for record in changes
    ]
    # the latest materialisations of every day these raw days feed, read once per tick
    readers = set().union(*(days for _, days in changed))
    computed = instance.get_latest_storage_id_by_partition(
        asset, DagsterEventType.ASSET_MATERIALIZATION, partitions=readers
    )
    available = instance.get_latest_storage_id_by_partition(
        RAW_RACES, DagsterEventType.ASSET_MATERIALIZATION, partitions=readers
    )
    stale: dict[str, set[str]] = {}
    covered_by_run: dict[str, set[str]] = {}
    in_flight = _runs_yet_to_read(instance, asset) if changed else []
    for record, feeds in changed:
        if record.run_id not in covered_by_run:
            covered_by_run[record.run_id] = _run_days(
                instance, instance.get_run_by_id(record.run_id), asset
            )
        covered = covered_by_run[record.run_id].union(
            *(days for started, days in in_flight if started is None or started > record.timestamp)
        )
        for day in feeds:
            if (
                day in available
                and computed.get(day, -1) < record.storage_id
                and day not in covered
            ):
                stale.setdefault(day, set()).add(record.asset_materialization.partition)
    return stale


def recompute_requests(
    stale_by_set: dict[str, dict[str, set[str]]], cursor: int
) -> Iterator[RunRequest]:
    """Per feature set, one run per stretch of consecutive stale days."""
    for name, stale in sorted(stale_by_set.items()):
        for first, last in day_ranges(list(stale)):
            causes = sorted(set().union(*(stale[d] for d in stale if first <= d <= last)))
            yield RunRequest(
                run_key=f"recompute:{name}:{first}...{last}:{cursor}",
                asset_selection=[AssetKey(name)],
                tags={
                    **_range_tags(first, last),
                    CHANGED_DAYS_TAG: compact_days(causes),
                    **k8s_run_tags([feature_sets.feature_set(name)]),
                },
            )


@sensor(
    name="recompute_after_corrections",
    job_name=JOB_NAME,
    minimum_interval_seconds=30,
    default_status=(
        DefaultSensorStatus.RUNNING if settings.automation_on() else DefaultSensorStatus.STOPPED
    ),
    description=(
        "Recomputes the feature days (D .. D+365) that read a raw day D whose snapshot is"
        " new or changed; unchanged snapshots cost nothing."
    ),
)
def recompute_after_corrections(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    last_day = daily_partitions.get_last_partition_key()
    stale, cursor = stale_feature_days(context.instance, after, last_day)
    if cursor is not None:
        context.update_cursor(str(cursor))
    if not stale:
        return SkipReason("no raw day changed since the features that read it")
    return list(recompute_requests(stale, cursor))
