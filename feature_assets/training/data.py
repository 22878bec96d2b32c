"""The training table: every feature set's stored days joined on (race_id, lane), the label
`is_win` (finish_position = 1) and each entry's final odds, split by time.

Read from the stored Parquet days (each day's schema and checksums checked), never copied
first. A day that failed for invalid races has no feature file: it is left out and named.
A day of the window that no set stored for another reason fails the whole table: training on
a window with holes would look good and be wrong.

The split is by calendar day, never shuffled: the last `test_days` days of the window are the
test period, the `validation_days` before them validation, every earlier day training. A row's
features only read days before its own, so no training row sees a validation or test result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_assets.core import schema
from feature_assets.core.dates import compact_days
from feature_assets.core.feature_set import KEY_COLUMNS, FeatureSet
from feature_assets.core.quality import find_invalid_races
from feature_assets.io.storage import DailyParquetStorage

KEYS = ["race_id", "lane"]
LABEL = "is_win"
SPLITS = ("train", "validation", "test")
# Kept beside the features for evaluation only (market favourite, payout), never learnt from.
ODDS = "win_odds"


class TrainingDataError(ValueError):
    """The window cannot give honest training data; names the days, sets and settings."""


@dataclass(frozen=True)
class Window:
    """The days the training data covers, and where the held-out periods start."""

    first: dt.date
    last: dt.date
    validation_start: dt.date
    test_start: dt.date

    @property
    def days(self) -> list[str]:
        count = (self.last - self.first).days + 1
        return [(self.first + dt.timedelta(days=i)).isoformat() for i in range(count)]

    def split_of(self, day: str) -> str:
        date = dt.date.fromisoformat(day)
        if date >= self.test_start:
            return "test"
        return "validation" if date >= self.validation_start else "train"


def window(first: dt.date, last: dt.date, validation_days: int, test_days: int) -> Window:
    """The window `first..last` with its last `test_days` days for test and the
    `validation_days` before them for validation; at least one day is left to train on."""
    test_start = last - dt.timedelta(days=test_days - 1)
    validation_start = test_start - dt.timedelta(days=validation_days)
    if validation_start <= first:
        span = (last - first).days + 1
        raise TrainingDataError(
            f"the training window {first}...{last} ({span} days) is too short to hold out"
            f" {validation_days} validation and {test_days} test days and train on the rest;"
            " lower FEATURE_ASSETS_VALIDATION_DAYS / FEATURE_ASSETS_TEST_DAYS or widen"
            " FEATURE_ASSETS_TRAIN_START / _END"
        )
    return Window(first, last, validation_start, test_start)


def feature_columns(sets: Sequence[FeatureSet]) -> dict[tuple[str, str], str]:
    """(set, column) -> the column's name in the training table: its own name, or
    `<set>__<column>` where two sets declare the same name."""
    counts: dict[str, int] = {}
    for feature_set in sets:
        for column in feature_set.columns:
            counts[column] = counts.get(column, 0) + 1
    return {
        (s.name, column): column if counts[column] == 1 else f"{s.name}__{column}"
        for s in sets
        for column in s.columns
    }


@dataclass(frozen=True)
class StoredWindow:
    """The days of the window to read, and those left out because they hold invalid races."""

    days: list[str]
    invalid_days: list[str]


def days_to_read(
    storage: DailyParquetStorage, sets: Sequence[FeatureSet], days: Sequence[str]
) -> StoredWindow:
    """Every day of `days` that each set stored. A day some set lacks is left out when its
    raw snapshot holds invalid races (the set failed it on purpose); any other absent day
    raises TrainingDataError naming the days and the command that stores them."""
    absent: dict[str, list[str]] = {}
    for feature_set in sets:
        stored = set(storage.stored_days(feature_set.name))
        lacking = [day for day in days if day not in stored]
        if lacking:
            absent[feature_set.name] = lacking
    lacking_days = sorted({day for lacking in absent.values() for day in lacking})
    invalid = set(_days_with_invalid_races(storage, lacking_days))
    missing = {name: [d for d in lacking if d not in invalid] for name, lacking in absent.items()}
    missing = {name: lacking for name, lacking in missing.items() if lacking}
    if missing:
        named = "; ".join(f"{name}: {compact_days(lacking)}" for name, lacking in missing.items())
        every = sorted({day for lacking in missing.values() for day in lacking})
        raise TrainingDataError(
            f"the training window has {len(every)} day(s) without stored features ({named});"
            f" to fix: feature-assets backfill --days {compact_days(every, separator=',')}"
            f" --assets {','.join(missing)} --wait"
        )
    return StoredWindow([d for d in days if d not in invalid], sorted(invalid))


def _days_with_invalid_races(storage: DailyParquetStorage, days: Sequence[str]) -> list[str]:
    """Those of `days` whose stored raw snapshot breaks a rule of the contract."""
    stored = set(storage.stored_days("raw_races"))
    raw = [d for d in days if d in stored]
    if not raw:
        return []
    races = storage.read_days("raw_races", raw, schema.arrow_schema(schema.RACES_COLUMNS))
    entries = storage.read_days(
        "raw_race_entries", raw, schema.arrow_schema(schema.RACE_ENTRIES_COLUMNS)
    )
    violations = find_invalid_races(races, entries)
    return sorted(violations["race_date"].dt.strftime("%Y-%m-%d").unique())


def assemble(
    storage: DailyParquetStorage, sets: Sequence[FeatureSet], days: Sequence[str], split_of
) -> pd.DataFrame:
    """One row per entry of `days`: keys, `split`, every set's columns, the label and odds.

    Every set must hold the same entries for each day (they all cover each valid race of the
    day); a set with other rows fails the table rather than losing rows in the join.
    """
    names = feature_columns(sets)
    table = None
    for feature_set in sets:
        frame = storage.read_days(feature_set.name, days, _stored_schema(feature_set))
        frame = frame[[*KEY_COLUMNS, *feature_set.columns]].rename(
            columns={c: names[(feature_set.name, c)] for c in feature_set.columns}
        )
        if table is None:
            table = frame
            continue
        joined = table.merge(frame.drop(columns=["racer_id", "race_date"]), on=KEYS, how="inner")
        if len(joined) != len(table) or len(joined) != len(frame):
            raise TrainingDataError(
                f"feature set {feature_set.name} holds other entries than {sets[0].name} on the"
                f" window's days ({len(frame)} rows against {len(table)}, {len(joined)} in"
                " common); materialise both for the same days again"
            )
        table = joined
    entries = storage.read_days(
        "raw_race_entries", days, schema.arrow_schema(schema.RACE_ENTRIES_COLUMNS)
    )[[*KEYS, "finish_position", ODDS]]
    table = table.merge(entries, on=KEYS, how="left", validate="one_to_one")
    table[LABEL] = table["finish_position"].eq(1).fillna(False).astype(bool)
    table = table.drop(columns=["finish_position"])
    labels = table["race_date"].dt.strftime("%Y-%m-%d")
    split_by_day = {day: split_of(day) for day in labels.unique()}
    table.insert(4, "split", pd.Categorical(labels.map(split_by_day), categories=SPLITS))
    return table.sort_values(["race_date", *KEYS], ignore_index=True)


def _stored_schema(feature_set: FeatureSet):
    return schema.arrow_schema(feature_set.output_columns)


def check_splits(table: pd.DataFrame) -> None:
    """Each split holds rows and a winner; every test day lies after every validation day,
    and every validation day after every training day."""
    last_before = None
    for split in SPLITS:
        rows = table[table["split"] == split]
        if rows.empty or not rows[LABEL].any():
            raise TrainingDataError(
                f"the {split} period holds no {'rows' if rows.empty else 'winners'}; widen the"
                " window or change FEATURE_ASSETS_VALIDATION_DAYS / FEATURE_ASSETS_TEST_DAYS"
            )
        if last_before is not None and rows["race_date"].min() <= last_before:
            raise TrainingDataError(f"the {split} period starts before the one before it ends")
        last_before = rows["race_date"].max()


TABLE_PATH = "training_data/data.parquet"
LINEAGE_KEY = b"feature_assets.lineage"


def store(storage: DailyParquetStorage, table: pd.DataFrame, lineage: dict) -> str:
    """Writes the table as one Parquet file (replaced at once) with its lineage inside."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), LINEAGE_KEY: json.dumps(lineage).encode()}
    )
    buffer = pa.BufferOutputStream()
    pq.write_table(arrow, buffer, write_page_checksum=True)
    return storage.write_file(TABLE_PATH, buffer.getvalue().to_pybytes())


def lineage_of(storage: DailyParquetStorage) -> dict:
    """The stored table's lineage (its id, sets, code versions, days), from its footer."""
    path = _path(storage)
    with _damage_named(path):
        return json.loads(
            pq.read_metadata(path, filesystem=storage.filesystem).metadata[LINEAGE_KEY]
        )


def load(storage: DailyParquetStorage) -> tuple[pd.DataFrame, dict]:
    """The stored table and its lineage."""
    path = _path(storage)
    with _damage_named(path):
        arrow = pq.read_table(path, filesystem=storage.filesystem, page_checksum_verification=True)
        return arrow.to_pandas(), json.loads(arrow.schema.metadata[LINEAGE_KEY])


@contextlib.contextmanager
def _damage_named(path: str):
    """A truncated or flipped file (its checksums), or one without lineage, named as such."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        raise TrainingDataError(
            f"the stored training data {path} is damaged ({type(err).__name__}: {err});"
            " materialise training_data again"
        ) from None


def _path(storage: DailyParquetStorage) -> str:
    path = f"{storage.root.rstrip('/')}/{TABLE_PATH}"
    if not storage.filesystem.get_file_info(path).is_file:
        raise TrainingDataError(
            f"no training data is stored at {path}; materialise it first: dagster asset"
            " materialize -m feature_assets.definitions --select training_data"
        )
    return path
