"""race_features: point-in-time features of every entry of the day's races."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue, asset

from feature_assets.partitions import backfill_policy, daily_partitions, history_window
from feature_assets.racing.features import compute_race_features
from feature_assets.racing.quality import InvalidRacesError


@asset(
    partitions_def=daily_partitions,
    backfill_policy=backfill_policy(),
    ins={
        "raw_races": AssetIn(partition_mapping=history_window),
        "raw_race_entries": AssetIn(partition_mapping=history_window),
    },
    group_name="features",
)
def race_features(
    context: AssetExecutionContext, raw_races: pd.DataFrame, raw_race_entries: pd.DataFrame
) -> pd.DataFrame:
    """One row per entry of the day's races: the contract's history and same-day features.

    A day with an invalid race fails with a message naming each invalid race and rule, and
    nothing is written for the run's days.
    """
    try:
        return compute_race_features(raw_races, raw_race_entries, context.partition_keys)
    except InvalidRacesError as err:
        raise Failure(
            description=str(err),
            metadata={
                "invalid_days": MetadataValue.text(", ".join(err.invalid_days)),
                "invalid_races": len(err.violations["race_id"].unique()),
            },
            allow_retries=False,  # the same data fails the same way
        ) from err
