"""Race cards: day D's races and entries as the source holds them before their results, read
at a moment.

A card snapshot is one Parquet file, `race_cards/race_date=D/<taken_at>-<id>.parquet`, apart
from the raw days (which stay the record of the day after its results): the entries joined
with their race's columns, as known at `close` at most (`schema.KNOWN_AT`); the result
columns are never stored, even when the source already holds them. `taken_at` is the source
server's clock when it was read. A later snapshot (a racer scratched, odds moved) is a new
file; none is ever overwritten, so a prediction can always name the card it used. Pages
carry CRC checksums, verified on read: a damaged snapshot fails naming itself
(`DamagedDayError`), never reads as other odds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from feature_assets.core import schema
from feature_assets.io.storage import PARTITION_COLUMN, DailyParquetStorage, DamagedDayError

TABLE = "race_cards"
TAKEN_AT_KEY = b"feature_assets.taken_at"
_RESULTS = schema.unknown_at("close")
_RACE_COLUMNS = [c for c in schema.RACES_COLUMNS if c not in ("race_id", "race_date")]


class NoCardError(FileNotFoundError):
    """No card snapshot is stored for the day."""


@dataclasses.dataclass(frozen=True)
class Card:
    """One snapshot of day D's card: `races` and `entries` in the contract's columns (the
    result columns NULL), `taken_at` (seconds since 1970, the source's clock) and its `id`."""

    day: str
    id: str
    taken_at: float
    races: pd.DataFrame
    entries: pd.DataFrame


def from_source(races: pd.DataFrame, entries: pd.DataFrame, day: str, taken_at: float) -> Card:
    """The card of `day` in the source's rows as read at `taken_at`: results removed."""
    when = pd.Timestamp(day)
    races = races[races["race_date"] == when].reset_index(drop=True)
    entries = entries[entries["race_date"] == when].reset_index(drop=True)
    return Card(day, _new_id(taken_at), taken_at, races, _without_results(entries))


def store(storage: DailyParquetStorage, card: Card) -> str:
    """Writes the snapshot as a new file and returns its path; refuses to replace one."""
    path = f"{TABLE}/{PARTITION_COLUMN}={card.day}/{card.id}.parquet"
    target = f"{storage.root.rstrip('/')}/{path}"
    if storage.filesystem.get_file_info(target).type != pafs.FileType.NotFound:
        raise FileExistsError(f"card snapshot {card.id} of {card.day} is already stored")
    joined = card.entries.merge(
        card.races[["race_id", *_RACE_COLUMNS]], on="race_id", how="left", validate="many_to_one"
    )
    table = pa.Table.from_pandas(joined, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), TAKEN_AT_KEY: repr(card.taken_at).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, write_page_checksum=True)
    return storage.write_file(path, buffer.getvalue())


def snapshot_ids(storage: DailyParquetStorage, day: str) -> list[str]:
    """The ids of the day's stored snapshots, oldest first."""
    folder = f"{storage.table_path(TABLE)}/{PARTITION_COLUMN}={day}"
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return sorted(
        info.base_name.removesuffix(".parquet")
        for info in storage.filesystem.get_file_info(selector)
        if info.is_file and info.base_name.endswith(".parquet") and not info.base_name[0] == "."
    )


def read(storage: DailyParquetStorage, day: str, snapshot: str | None = None) -> Card:
    """The snapshot `snapshot` of `day`, or its latest; NoCardError when there is none."""
    ids = snapshot_ids(storage, day)
    if snapshot is None and not ids:
        raise NoCardError(
            f"no race card is stored for {day}; take one with: feature-assets predict --day {day}"
        )
    chosen = snapshot or ids[-1]
    data = storage.read_file(f"{TABLE}/{PARTITION_COLUMN}={day}/{chosen}.parquet")
    try:
        table = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
        taken_at = float(table.schema.metadata[TAKEN_AT_KEY])
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        raise DamagedDayError(
            f"race card snapshot {chosen} of {day} is damaged ({type(err).__name__}: {err});"
            f" take a new one with: feature-assets predict --day {day}"
        ) from None
    joined = table.to_pandas()
    races = joined.drop_duplicates("race_id")[["race_id", "race_date", *_RACE_COLUMNS]]
    races = schema.typed_frame(races.reset_index(drop=True), schema.RACES_COLUMNS)
    entries = schema.typed_frame(joined, schema.RACE_ENTRIES_COLUMNS)
    return Card(day, chosen, taken_at, races, entries)


def _without_results(entries: pd.DataFrame) -> pd.DataFrame:
    entries = entries.copy()
    for column in _RESULTS:
        entries[column] = pd.array([None] * len(entries), dtype=entries[column].dtype)
    return entries


def _new_id(taken_at: float) -> str:
    stamp = dt.datetime.fromtimestamp(taken_at, dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"
