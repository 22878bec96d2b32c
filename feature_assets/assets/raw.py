"""raw_races and raw_race_entries: a faithful daily snapshot of the source tables."""

import datetime as dt

from dagster import AssetCheckSeverity, AssetExecutionContext, AssetOut, Output, multi_asset

from feature_assets.assets.checks import NO_INVALID_RACES, check_result, invalid_races_by_day
from feature_assets.partitions import backfill_policy, daily_partitions
from feature_assets.resources import SourceDatabase

# Runs that read the source share this concurrency pool, so its limit caps the number of
# connections any backfill opens.
SOURCE_DATABASE_POOL = "source_database"


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
    check_specs=[NO_INVALID_RACES],
)
def raw_snapshot(context: AssetExecutionContext, source: SourceDatabase):
    """Reads every day of the run through one connection and one query per table."""
    days = sorted(context.partition_keys)
    races, entries = source.read_snapshot(
        dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
    )
    context.log.info(
        f"read {len(races)} races and {len(entries)} entries of {len(days)} day(s)"
        f" from {source.location.describe()}"
    )
    yield Output(races, output_name="raw_races")
    yield Output(entries, output_name="raw_race_entries")
    outcomes = invalid_races_by_day(races, entries, days)
    yield check_result(context, NO_INVALID_RACES, outcomes, AssetCheckSeverity.WARN)
