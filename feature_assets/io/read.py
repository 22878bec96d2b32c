"""Reading stored features back as a DataFrame: `feature_assets.read_features`."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from feature_assets import settings
from feature_assets.core import schema
from feature_assets.io.storage import DailyParquetStorage


def read_features(
    name: str,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    storage_url: str | None = None,
) -> pd.DataFrame:
    """The stored rows of feature set (or raw asset) `name` for the days start..end
    (inclusive; default every stored day), in day order, `race_date` as datetime64.

    Reads FEATURE_ASSETS_STORAGE_URL (default the local lake) unless `storage_url` is given;
    every day file is checked against the set's declared columns and types, so a damaged
    or foreign file fails naming its day instead of being read as NULLs. Days of the range
    that were never stored are left out: `feature-assets status` names them.
    """
    storage = DailyParquetStorage(storage_url or settings.storage_url())
    first, last = (str(day) if day is not None else None for day in (start, end))
    days = [
        day
        for day in storage.stored_days(name)
        if (first is None or day >= first) and (last is None or day <= last)
    ]
    columns = _stored_columns(name)
    if not days:
        return schema.typed_frame({c: [] for c in columns}, columns)
    frame = storage.read_days(name, days, schema.arrow_schema(columns))
    frame["race_date"] = pd.to_datetime(frame["race_date"])
    return frame


def _stored_columns(name: str) -> dict[str, object]:
    from feature_assets.feature_sets import registered_sets

    raw = {"raw_races": schema.RACES_COLUMNS, "raw_race_entries": schema.RACE_ENTRIES_COLUMNS}
    if name in raw:
        return dict(raw[name])
    for feature_set in registered_sets():
        if feature_set.name == name:
            return feature_set.output_columns
    known = [*raw, *(s.name for s in registered_sets())]
    raise KeyError(f"no feature set or raw asset named {name!r} (known: {', '.join(known)})")
