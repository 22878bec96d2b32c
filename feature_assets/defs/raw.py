"""raw_races and raw_race_entries: a faithful daily snapshot of the source tables.

Each day's materialisation records its rows and a content hash of the day (races and
entries together), and whether that content is new, unchanged or changed since the day's
previous snapshot. The hash is per day, not a Dagster data version: in a run of many days
Dagster gives every day of an output the same data version, and it does not track
staleness across more than 100 upstream partitions (a feature day reads 366 raw days;
`SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD` in dagster/_core/definitions/
data_version.py). `feature_assets.defs.automation` acts on changed days instead.
"""

import datetime as dt

import pandas as pd
from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    Output,
    multi_asset,
)

from feature_assets.core.dates import compact_days, day_labels
from feature_assets.core.summaries import content_hash_by_day
from feature_assets.defs.checks import NO_INVALID_RACES, check_result, invalid_races_by_day
from feature_assets.defs.day_metadata import add_metadata_by_day
from feature_assets.defs.resources import SourceDatabase, stored_schema
from feature_assets.io.source import Snapshot
from feature_assets.io.storage import StoredDays
from feature_assets.partitions import (
    backfill_policy,
    daily_partitions,
    prediction_days,
    require_days,
)

# Runs that read the source share this concurrency pool, so its limit caps the number of
# connections any backfill opens.
SOURCE_DATABASE_POOL = "source_database"
RAW_RACES = AssetKey("raw_races")
RAW_RACE_ENTRIES = AssetKey("raw_race_entries")

# values of the `content` metadata entry of a raw day
NEW, UNCHANGED, CHANGED = "new", "unchanged", "changed"


@multi_asset(
    outs={
        "raw_races": AssetOut(
            group_name="raw", description="The `races` rows of the day, as the source has them."
        ),
        "raw_race_entries": AssetOut(
            group_name="raw",
            description="The `race_entries` rows of the day's races, as the source has them.",
        ),
    },
    partitions_def=daily_partitions,
    backfill_policy=backfill_policy(),
    pool=SOURCE_DATABASE_POOL,
    can_subset=False,  # both tables come from one snapshot so that they agree
    # io_manager: the step writes both tables together itself
    required_resource_keys={"source", "io_manager"},
    check_specs=[NO_INVALID_RACES],
)
def raw_snapshot(context: AssetExecutionContext):
    """Reads every day of the run through one connection, in windows of whole days (one
    consistent snapshot and one query per table each), and stores both tables together."""
    source: SourceDatabase = context.resources.source
    days = require_days(context)
    # the cards of today and tomorrow (prediction days) are not strays
    partitions = (
        daily_partitions.get_first_partition_key(),
        prediction_days.get_last_partition_key(),
    )
    snapshot = source.read_snapshot(
        dt.date.fromisoformat(days[0]),
        dt.date.fromisoformat(days[-1]),
        partitions=(dt.date.fromisoformat(partitions[0]), dt.date.fromisoformat(partitions[1])),
    )
    races, entries = _store(context, snapshot, days)
    context.log.info(
        f"read {len(races)} races and {len(entries)} entries of {len(days)} day(s)"
        f" from {source.location.describe()}"
    )
    if snapshot.races_without_a_day:
        context.log.warning(
            f"the source holds {snapshot.races_without_a_day} race(s) without a race_date or"
            f" dated outside the partitions ({partitions[0]} ... {partitions[1]}): they belong"
            " to no day and are in no snapshot"
        )
    hashes = content_hash_by_day(races, entries, days)
    previous = previous_content_hashes(context.instance, days)
    races_per_day = pd.Series(day_labels(races["race_date"])).value_counts()
    entries_per_day = pd.Series(day_labels(entries["race_date"])).value_counts()
    changes = {day: content_change(previous, hashes, day) for day in days}
    content = {day: {"content_hash": hashes[day], "content": changes[day]} for day in days}
    for day in days:
        if changes[day] == CHANGED:
            content[day]["previous_content_hash"] = previous[day]
    for key, rows in ((RAW_RACES, races_per_day), (RAW_RACE_ENTRIES, entries_per_day)):
        by_day = {day: {"rows": int(rows.get(day, 0)), **content[day]} for day in days}
        add_metadata_by_day(context, key, by_day)
    changed = [day for day in days if changes[day] == CHANGED]
    if changed:
        context.log.info(f"content changed since the last snapshot on: {', '.join(changed)}")
    yield Output(StoredDays("raw_races", tuple(days), len(races)), output_name="raw_races")
    yield Output(
        StoredDays("raw_race_entries", tuple(days), len(entries)), output_name="raw_race_entries"
    )
    outcomes = invalid_races_by_day(races, entries, days)
    for _, metadata in outcomes.values():
        metadata["source_races_without_a_day"] = snapshot.races_without_a_day or 0
    yield check_result(context, NO_INVALID_RACES, outcomes, AssetCheckSeverity.WARN)


def _store(
    context: AssetExecutionContext, snapshot: Snapshot, days: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Writes both tables of every day together (or nothing, if the write fails), unless a
    newer snapshot of the day is stored already: then the newer one stays, and the rows
    returned for the day (for its hash and checks) are the stored ones."""
    storage = context.resources.io_manager.storage
    frames = {"raw_races": snapshot.races, "raw_race_entries": snapshot.entries}
    kept = storage.write_tables(frames, days, snapshot.taken_at)
    if not kept:
        return snapshot.races, snapshot.entries
    context.log.warning(
        f"kept the newer snapshot that another run stored for {compact_days(kept)}:"
        " this run read the source earlier"
    )
    result = []
    for table, frame in frames.items():
        stored = storage.read_days(table, kept, stored_schema(table))
        fresh = frame[~pd.Series(day_labels(frame["race_date"]), index=frame.index).isin(kept)]
        order = ["race_id"] if table == "raw_races" else ["race_id", "lane"]
        result.append(pd.concat([fresh, stored]).sort_values(order, ignore_index=True))
    return result[0], result[1]


def content_change(previous: dict[str, str], hashes: dict[str, str], day: str) -> str:
    if day not in previous:
        return NEW
    return UNCHANGED if previous[day] == hashes[day] else CHANGED


def previous_content_hashes(instance: DagsterInstance, days: list[str]) -> dict[str, str]:
    """The content hash of each day's latest raw_races materialisation that recorded one."""
    latest = instance.get_latest_storage_id_by_partition(
        RAW_RACES, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(days)
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=RAW_RACES, storage_ids=list(latest.values())),
        limit=len(latest),
    ).records
    hashes = {}
    for record in records:
        materialization = record.asset_materialization
        entry = materialization.metadata.get("content_hash") if materialization else None
        if entry is not None:
            hashes[materialization.partition] = entry.value
    return hashes
