"""Per-day facts for people and for change detection: content hashes and feature summaries.

No Dagster here; `feature_assets.assets` turns these into materialisation metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from feature_assets.core.dates import day_labels
from feature_assets.core.quality import find_invalid_races


def _row_hashes_by_day(frame: pd.DataFrame, days: np.ndarray, order: list[str]) -> dict:
    """Each day's row hashes (uint64), in a canonical row order that ignores read order."""
    ordered = frame.assign(_day=days).sort_values(["_day", *order], kind="stable")
    hashes = pd.util.hash_pandas_object(ordered.drop(columns="_day"), index=False).to_numpy()
    labels = ordered["_day"].to_numpy(dtype=str)
    if not len(labels):  # a range of days without races
        return {}
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = [*starts[1:], len(labels)]
    return {labels[s]: hashes[s:e] for s, e in zip(starts, ends, strict=True)}


def content_hash_by_day(
    races: pd.DataFrame, entries: pd.DataFrame, days: Sequence[str]
) -> dict[str, str]:
    """A SHA-256 per day over the day's races and their entries, whatever the row order.

    Two snapshots of a day hash alike exactly when every value of every row is the same, so
    a corrected finish position, a new entry or a deleted race changes the day's hash.
    """
    race_days = day_labels(races["race_date"])
    entry_days = day_labels(entries["race_date"])
    race_hashes = _row_hashes_by_day(races, race_days, ["race_id"])
    entry_hashes = _row_hashes_by_day(entries, entry_days, ["race_id", "lane"])
    empty = np.array([], dtype=np.uint64)
    schema = ",".join([*races.columns, "|", *entries.columns]).encode()
    hashes = {}
    for day in days:
        digest = hashlib.sha256(schema)
        digest.update(race_hashes.get(day, empty).tobytes())
        digest.update(b"|")
        digest.update(entry_hashes.get(day, empty).tobytes())
        hashes[day] = digest.hexdigest()
    return hashes


def feature_facts_by_day(
    features: pd.DataFrame,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    days: Sequence[str],
    feature_columns: Sequence[str],
) -> pd.DataFrame:
    """One row per day: rows, races, invalid races, and each feature's share of NULLs.

    `races`/`entries` are the raw rows the features were computed from (more days are fine).
    """
    feature_days = pd.Series(day_labels(features["race_date"]), index=features.index)
    grouped = features.groupby(feature_days)
    facts = pd.DataFrame(
        {"rows": grouped.size(), "races": grouped["race_id"].nunique()}, index=list(days)
    )
    invalid = find_invalid_races(races, entries)
    invalid_per_day = invalid.groupby(day_labels(invalid["race_date"]))["race_id"].nunique()
    facts["invalid_races"] = invalid_per_day.reindex(facts.index)
    null_shares = features[list(feature_columns)].isna().groupby(feature_days).mean()
    facts = facts.join(null_shares.add_prefix("null_share."))
    return facts.fillna({"rows": 0, "races": 0, "invalid_races": 0}).astype(
        {"rows": int, "races": int, "invalid_races": int}
    )


def feature_summary(features: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """Per numeric feature: NULL share, mean, min and max over the given rows (one day,
    typically)."""
    numeric = [
        c
        for c in feature_columns
        if pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_bool_dtype(features[c])
    ]
    values = features[numeric].astype("float64")
    summary = pd.DataFrame(
        {
            "null_share": values.isna().mean(),
            "mean": values.mean(),
            "min": values.min(),
            "max": values.max(),
        }
    )
    return summary.rename_axis("feature").reset_index()
