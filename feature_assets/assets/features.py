"""race_features: point-in-time features of every entry of the day's races."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetMaterialization,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from feature_assets.assets.checks import (
    ONE_ROW_PER_VALID_ENTRY,
    check_result,
    feature_rows_by_day,
    log_day_evaluations,
)
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
    required_resource_keys={"io_manager"},
    group_name="features",
    check_specs=[ONE_ROW_PER_VALID_ENTRY],
)
def race_features(
    context: AssetExecutionContext, raw_races: pd.DataFrame, raw_race_entries: pd.DataFrame
):
    """One row per entry of the day's races: the contract's history and same-day features.

    A day with an invalid race fails with a message naming each invalid race and rule. In a
    run of several days the other days are still written and recorded as materialised, so
    partition status ends with exactly the bad days failed: nobody has to split the range.
    """
    days = context.partition_keys
    try:
        features = compute_race_features(raw_races, raw_race_entries, days)
    except InvalidRacesError as err:
        good_days = sorted(set(days) - set(err.invalid_days))
        if good_days:
            features = _write_good_days(context, raw_races, raw_race_entries, good_days)
            outcomes = feature_rows_by_day(features, raw_races, raw_race_entries, good_days)
            log_day_evaluations(context, ONE_ROW_PER_VALID_ENTRY, outcomes)
        raise Failure(
            description=str(err),
            metadata={
                "invalid_days": MetadataValue.text(", ".join(err.invalid_days)),
                "invalid_races": len(err.violations["race_id"].unique()),
            },
            allow_retries=False,  # the same data fails the same way
        ) from err
    yield Output(features)
    outcomes = feature_rows_by_day(features, raw_races, raw_race_entries, days)
    yield check_result(context, ONE_ROW_PER_VALID_ENTRY, outcomes)


def _write_good_days(
    context: AssetExecutionContext,
    raw_races: pd.DataFrame,
    raw_race_entries: pd.DataFrame,
    good_days: list[str],
) -> pd.DataFrame:
    """Stores the valid days of a failing range and records each as materialised."""
    features = compute_race_features(raw_races, raw_race_entries, good_days)
    storage = context.resources.io_manager.storage
    storage.write_days("race_features", features, good_days)
    rows_per_day = features.groupby(features["race_date"].dt.strftime("%Y-%m-%d")).size()
    for day in good_days:
        context.log_event(
            AssetMaterialization(
                asset_key=context.asset_key,
                partition=day,
                metadata={"rows": int(rows_per_day.get(day, 0))},
            )
        )
    context.log.info(f"wrote the {len(good_days)} valid day(s) of the range")
    return features
