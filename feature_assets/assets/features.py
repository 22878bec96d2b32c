"""race_features: point-in-time features of every entry of the day's races."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetMaterialization,
    Failure,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from feature_assets.assets.checks import (
    ONE_ROW_PER_VALID_ENTRY,
    check_result,
    feature_rows_by_day,
    log_day_evaluations,
)
from feature_assets.assets.day_metadata import add_metadata_by_day
from feature_assets.dates import compact_days
from feature_assets.partitions import (
    backfill_policy,
    daily_partitions,
    history_window,
    require_days,
)
from feature_assets.racing.features import HISTORY_DAYS, compute_race_features
from feature_assets.racing.quality import InvalidRacesError
from feature_assets.racing.summaries import feature_facts_by_day, feature_summary
from feature_assets.storage import ReadInputs, StoredDays

# metadata of a failure for invalid races: {day: ["race_id R: rule; rule", ...]}
INVALID_RACES_BY_DAY = "invalid_races_by_day"


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

    Each day records its rows, races, invalid races and each feature's share of NULLs; the
    last day of a run also carries a summary table (NULL share, mean, min, max per feature).

    A day with an invalid race fails with a message naming each invalid race and rule. In a
    run of several days the other days are still written and recorded as materialised, so
    partition status ends with exactly the bad days failed: nobody has to split the range.
    A day that fails has no file afterwards: its previous file would read as if current.
    """
    days = require_days(context)
    storage = context.resources.io_manager.storage
    try:
        features = compute_race_features(raw_races, raw_race_entries, days)
    except InvalidRacesError as err:
        storage.delete_days("race_features", err.invalid_days)
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
                INVALID_RACES_BY_DAY: MetadataValue.json(invalid_races_by_day(err.violations)),
            },
            allow_retries=False,  # the same data fails the same way
        ) from err
    except Exception:
        storage.delete_days("race_features", days)
        raise
    superseded = _store(storage, features, days, raw_race_entries)
    if superseded:
        written = sorted(set(days) - set(superseded))
        _record_days(context, features, raw_races, raw_race_entries, written)
        raise _superseded_failure(superseded)
    metadata = day_metadata(features, raw_races, raw_race_entries, days)
    add_metadata_by_day(context, context.asset_key, metadata)
    yield Output(StoredDays("race_features", tuple(days), len(features)))
    outcomes = feature_rows_by_day(features, raw_races, raw_race_entries, days)
    yield check_result(context, ONE_ROW_PER_VALID_ENTRY, outcomes)


def _store(
    storage, features: pd.DataFrame, days: list[str], raw_race_entries: pd.DataFrame
) -> list[str]:
    """Writes the feature days unless a raw day they read was replaced since it was read
    (a run that overlaps on those raw days stored a newer snapshot); returns those days."""
    stamps = raw_race_entries.attrs.get("snapshot_at", {})

    def readers(raw_day: str) -> list[str]:
        start = pd.Timestamp(raw_day)
        return [d for d in days if 0 <= (pd.Timestamp(d) - start).days <= HISTORY_DAYS]

    inputs = ReadInputs("raw_race_entries", stamps, readers)
    return storage.write_tables({"race_features": features}, days, inputs=inputs)


def _superseded_failure(superseded: list[str]) -> Failure:
    return Failure(
        description=(
            f"raw days were replaced by a newer snapshot while this run computed the features"
            f" of {compact_days(superseded)}; those days were not written (the run that stored"
            " the newer snapshot, or the correction sensor, recomputes them; or run"
            f" feature-assets backfill --days {compact_days(superseded, separator=',')}"
            " --assets race_features --wait)"
        ),
        metadata={"superseded_days": MetadataValue.text(compact_days(superseded))},
    )


def invalid_races_by_day(violations: pd.DataFrame) -> dict[str, list[str]]:
    """{day: ["race_id R: rule; rule", ...]} from `find_invalid_races`' rows."""
    result: dict[str, list[str]] = {}
    labels = violations["race_date"].dt.strftime("%Y-%m-%d")
    for (day, race_id), of_race in violations.groupby([labels, "race_id"], sort=True):
        result.setdefault(day, []).append(f"race_id {race_id}: {'; '.join(of_race['rule'])}")
    return result


def _write_good_days(
    context: AssetExecutionContext,
    raw_races: pd.DataFrame,
    raw_race_entries: pd.DataFrame,
    good_days: list[str],
) -> pd.DataFrame:
    """Stores the valid days of a failing range and records each as materialised."""
    features = compute_race_features(raw_races, raw_race_entries, good_days)
    storage = context.resources.io_manager.storage
    superseded = _store(storage, features, good_days, raw_race_entries)
    written = sorted(set(good_days) - set(superseded))
    _record_days(context, features, raw_races, raw_race_entries, written)
    if superseded:
        context.log.warning(_superseded_failure(superseded).description)
    return features


def _record_days(
    context: AssetExecutionContext,
    features: pd.DataFrame,
    raw_races: pd.DataFrame,
    raw_race_entries: pd.DataFrame,
    days: list[str],
) -> None:
    """Records each of `days` as materialised (a run whose other days fail)."""
    if not days:
        return
    metadata = day_metadata(features, raw_races, raw_race_entries, days)
    for day in days:
        context.log_event(
            AssetMaterialization(asset_key=context.asset_key, partition=day, metadata=metadata[day])
        )
    context.log.info(f"wrote {len(days)} day(s) of the range")


SUMMARY_SCHEMA = TableSchema(
    columns=[
        TableColumn("feature", "string"),
        TableColumn("null_share", "float"),
        TableColumn("mean", "float"),
        TableColumn("min", "float"),
        TableColumn("max", "float"),
    ]
)


def day_metadata(
    features: pd.DataFrame, races: pd.DataFrame, entries: pd.DataFrame, days: list[str]
) -> dict[str, dict]:
    """Each day's materialisation metadata; the run's last day gets the summary table."""
    facts = feature_facts_by_day(features, races, entries, days)
    metadata = {
        day: {name: value for name, value in row.items() if pd.notna(value)}
        for day, row in zip(facts.index, facts.to_dict("records"), strict=True)
    }
    last = max(days)
    of_last_day = features[features["race_date"] == pd.Timestamp(last)]
    metadata[last]["summary"] = summary_table(feature_summary(of_last_day))
    return metadata


def summary_table(summary: pd.DataFrame) -> MetadataValue:
    records = [
        TableRecord({k: (None if pd.isna(v) else v) for k, v in row.items()})
        for row in summary.to_dict("records")
    ]
    return MetadataValue.table(records, schema=SUMMARY_SCHEMA)
