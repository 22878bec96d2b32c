"""Column names and in-memory dtypes of the three tables (the contract's types).

In memory: integers are pandas `Int64` (NULL stays an integer NULL), decimals and rates are
float64 with NaN for NULL (written to Parquet as null), text is pandas `string`, `race_date`
is `datetime64[ns]` at midnight of the Japanese calendar day.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

INT = "Int64"
FLOAT = "float64"
TEXT = pd.StringDtype()
DATE = "datetime64[ns]"
BOOL = "bool"

RACES_COLUMNS: dict[str, object] = {
    "race_id": INT,
    "race_date": DATE,
    "venue_code": INT,
    "race_no": INT,
    "grade": TEXT,
    "distance_m": INT,
    "weather": TEXT,
    "wind_speed_mps": FLOAT,
    "wave_height_cm": INT,
}

# race_date is not a column of the source table; the snapshot carries it so that each
# entry belongs to a day (it is the partition folder, never repeated inside the files).
RACE_ENTRIES_COLUMNS: dict[str, object] = {
    "race_id": INT,
    "race_date": DATE,
    "lane": INT,
    "racer_id": INT,
    "racer_class": TEXT,
    "racer_age": INT,
    "racer_weight_kg": FLOAT,
    "motor_no": INT,
    "boat_no": INT,
    "exhibition_time": FLOAT,
    "start_timing": FLOAT,
    "finish_position": INT,
    "win_odds": FLOAT,
}

RACE_FEATURES_COLUMNS: dict[str, object] = {
    "race_id": INT,
    "lane": INT,
    "racer_id": INT,
    "race_date": DATE,
    "venue_code": INT,
    "race_no": INT,
    "finish_position": INT,
    "is_win": BOOL,
    "racer_starts_90d": INT,
    "racer_win_rate_90d": FLOAT,
    "racer_top2_rate_90d": FLOAT,
    "racer_avg_finish_90d": FLOAT,
    "racer_avg_start_timing_90d": FLOAT,
    "racer_lane_win_rate_365d": FLOAT,
    "motor_top2_rate_180d": FLOAT,
    "venue_lane_win_rate_365d": FLOAT,
    "days_since_last_race": INT,
    "exhibition_time_rank": INT,
    "implied_win_prob": FLOAT,
    "racer_class_ordinal": INT,
}

# When each source column is known on its own race day (the spec's table): `card` when the
# race card is published, `close` just before the race (exhibition, weather, the odds of the
# moment), `result` after it. The source keeps only the final odds in `win_odds`; a set that
# uses D's `win_odds` predicts at `close` and is optimistic about them (final odds are later
# than any bet). History (days before D) holds every column.
STAGES = ("card", "close", "result")
KNOWN_AT: dict[str, str] = {
    **dict.fromkeys(
        ["race_id", "race_date", "venue_code", "race_no", "grade", "distance_m"], "card"
    ),
    **dict.fromkeys(
        ["lane", "racer_id", "racer_class", "racer_age", "racer_weight_kg", "motor_no"], "card"
    ),
    "boat_no": "card",
    **dict.fromkeys(
        ["weather", "wind_speed_mps", "wave_height_cm", "exhibition_time", "win_odds"], "close"
    ),
    **dict.fromkeys(["finish_position", "start_timing"], "result"),
}


def unknown_at(stage: str) -> list[str]:
    """The source columns not yet known at `stage` on their race day."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {list(STAGES)}")
    return [c for c, known in KNOWN_AT.items() if STAGES.index(known) > STAGES.index(stage)]


# The source tables' columns, in the contract's order (race_entries has no race_date).
SOURCE_RACES_COLUMNS = list(RACES_COLUMNS)
SOURCE_RACE_ENTRIES_COLUMNS = [c for c in RACE_ENTRIES_COLUMNS if c != "race_date"]


def typed_frame(data: pd.DataFrame | dict, columns: dict[str, object]) -> pd.DataFrame:
    """A DataFrame with exactly `columns`, in order, each of its contract dtype.

    Columns already of the right dtype are not copied (this runs on ten-year frames).
    """
    missing = [name for name in columns if name not in data]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    typed = {}
    for name, dtype in columns.items():
        values = pd.array(data[name]) if not hasattr(data[name], "dtype") else data[name]
        if values.dtype != pd.api.types.pandas_dtype(dtype):
            values = pd.Series(values).astype(dtype)
        typed[name] = values.array if isinstance(values, pd.Series) else values
    return pd.DataFrame(typed, copy=False)


def arrow_schema(columns: dict[str, object]) -> pa.Schema:
    """The Arrow schema a frame of `columns` is stored with (Int64 -> int64, string, ...),
    with the pandas metadata that restores the contract's dtypes on reading."""
    empty = typed_frame({name: [] for name in columns}, columns)
    return pa.Schema.from_pandas(empty, preserve_index=False)
