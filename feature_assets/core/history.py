"""Point-in-time views of the history a feature set reads, and the day and race it computes.

`RunHistory` holds every valid entry a run loaded (joined with its race's columns, sorted by
day) and is indexed once per run; its indexes are plain numpy arrays that forked workers
share without copying. `RunHistory.at(day, history_days)` gives the `History` of one day:
every frame, lookup and sum it offers covers the days `[D - history_days, D - 1]` only, so
a set cannot see day D's results or any later row through it.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

# the keys of the history's lookups
RACER, MOTOR, VENUE_LANE = ("racer_id",), ("venue_code", "motor_no"), ("venue_code", "lane")
LOOKUP_KEYS = (RACER, MOTOR, VENUE_LANE)
# Rows converted to dicts, kept per process: per-record code asks for the same rows again
# and again (a racer's last five finishes, on each of their next races). Emptied when full.
ROW_CACHE_SIZE = 200_000
_DAY_BITS = 22  # day numbers since 1970 stay far below 2**22
_KEY_SHIFT = 32


def day_number(day: str | pd.Timestamp) -> int:
    return int(np.datetime64(pd.Timestamp(day).date(), "D").astype(np.int64))


class Rows:
    """History entries of one key (a racer, a motor, a venue and lane), oldest first.

    Iterating gives one dict per entry (None for NULL); `column(name)` gives a numpy array
    (NaN for NULL); `to_frame()` a DataFrame. Built from shared arrays: cheap to make.
    """

    def __init__(self, history: RunHistory, positions: np.ndarray):
        self._history = history
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    def column(self, name: str) -> np.ndarray:
        return self._history.arrays[name][self._positions]

    def __iter__(self) -> Iterator[dict]:
        return iter(self._dicts(self._positions))

    def last(self, n: int) -> list[dict]:
        """The n latest entries, latest first."""
        return self._dicts(self._positions[::-1][:n])

    def _dicts(self, positions: np.ndarray) -> list[dict]:
        row = self._history.row
        return [dict(row(p)) for p in positions.tolist()]  # copies: the cache stays as it is

    def to_frame(self) -> pd.DataFrame:
        return self._history.frame.iloc[self._positions].reset_index(drop=True)


class Race:
    """One race of day D: its `row` (the races columns) and its `entries` (one row per lane,
    sorted by lane, with the race's columns known at the set's stage).

    `each_entry()` gives the entries as named tuples (`entry.racer_id`, None for NULL), like
    `entries.itertuples()` but prepared once per day: pandas' itertuples, and even the
    `entries` frame, cost about a millisecond a race, as much as the rest of the framework.
    The frame is made on first use."""

    def __init__(self, race_id: int, day: str, row: Mapping, of_day: Day, start: int, end: int):
        self.race_id = race_id
        self.day = day
        self.row = row
        self._of_day, self._start, self._end = of_day, start, end

    def __len__(self) -> int:
        return self._end - self._start

    def each_entry(self) -> Iterator[tuple]:
        return iter(self._of_day.entry_tuples[self._start : self._end])

    @functools.cached_property
    def entries(self) -> pd.DataFrame:
        frame = self._of_day.entries.iloc[self._start : self._end]
        frame.index = pd.RangeIndex(len(self))  # a view renumbered, not a copy
        return frame


@dataclasses.dataclass(frozen=True)
class Day:
    """Day D: its valid `races` and their `entries` (sorted by race_id, lane; with the
    race's columns, each with only the columns known at the set's stage)."""

    day: str
    races: pd.DataFrame
    entries: pd.DataFrame

    def each_race(self) -> Iterator[Race]:
        entries = self.entries
        race_ids = entries["race_id"].to_numpy()
        if not len(race_ids):  # a day without races
            return
        starts = np.flatnonzero(np.r_[True, race_ids[1:] != race_ids[:-1]])
        ends = [*starts[1:], len(race_ids)]
        rows = {row["race_id"]: row for row in self.races.to_dict("records")}
        for start, end in zip(starts, ends, strict=True):
            race_id = int(race_ids[start])
            yield Race(race_id, self.day, rows[race_id], self, start, end)

    @functools.cached_property
    def entry_tuples(self) -> list[tuple]:
        entry = collections.namedtuple("Entry", self.entries.columns)
        columns = map(_python_values, self.entries.items())
        return [entry._make(values) for values in zip(*columns, strict=True)]


def _python_values(item: tuple[str, pd.Series]) -> list:
    """A column as Python values, None for NULL."""
    column = item[1]
    return column.astype(object).where(column.notna(), None).tolist()


class _KeyIndex:
    """Row positions of the history grouped by a key, each group in day order."""

    def __init__(self, history: RunHistory, columns: Sequence[str]):
        packed = _packed(history.frame, columns)
        order = np.lexsort((np.arange(len(packed)), packed))  # by key, then day order
        sorted_keys = packed[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)].astype(np.int64)
        self.order = order
        self.days = history.days[order]
        self.groups = (
            dict(
                zip(
                    sorted_keys[starts].tolist(),
                    zip(starts.tolist(), ends.tolist(), strict=True),
                    strict=True,
                )
            )
            if len(order)
            else {}
        )


def _packed(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    packed = np.zeros(len(frame), np.int64)
    for column in columns:
        packed = (packed << _KEY_SHIFT) | frame[column].to_numpy(np.int64)
    return packed


def _pack_key(values: Sequence[int]) -> int:
    packed = 0
    for value in values:
        packed = (packed << _KEY_SHIFT) | int(value)
    return packed


class _WindowIndex:
    """Running totals over (key, day) daily sums: any trailing window of any key in two
    binary searches."""

    def __init__(self, history: RunHistory, keys: Sequence[str], values: Mapping[str, int]):
        frame = history.frame
        self.key_uniques = []
        codes = np.zeros(len(frame), np.int64)
        for key in keys:
            uniques, key_codes = np.unique(frame[key].to_numpy(np.int64), return_inverse=True)
            self.key_uniques.append(uniques)
            codes = codes * (len(uniques) + 1) + key_codes
        position = (codes << _DAY_BITS) | history.days
        order = np.argsort(position, kind="stable")
        sorted_position = position[order]
        starts = np.flatnonzero(np.r_[True, sorted_position[1:] != sorted_position[:-1]])
        self.daily_position = sorted_position[starts]
        self.daily_day = self.daily_position & ((1 << _DAY_BITS) - 1)

        def running(per_row: np.ndarray) -> np.ndarray:
            daily = (
                np.add.reduceat(per_row[order], starts, dtype=np.int64)
                if len(starts)
                else np.zeros(0, np.int64)
            )
            return np.concatenate([[0], np.cumsum(daily)])

        self.running = {"rows": running(np.ones(len(frame), np.int64))}
        for name, scale in values.items():
            column = frame[name]
            present = column.notna().to_numpy()
            scaled = np.rint(column.astype("float64").fillna(0).to_numpy() * scale)
            self.running[f"{name}_sum"] = running(scaled.astype(np.int64))
            self.running[f"{name}_n"] = running(present.astype(np.int64))
        self.scales = dict(values)

    def sums(self, rows: pd.DataFrame, keys: Sequence[str], day: int, width: int) -> dict:
        codes = np.zeros(len(rows), np.int64)
        known = np.ones(len(rows), bool)
        for key, uniques in zip(keys, self.key_uniques, strict=True):
            values = rows[key].to_numpy(np.int64)
            key_codes = np.minimum(np.searchsorted(uniques, values), max(len(uniques) - 1, 0))
            known &= uniques[key_codes] == values if len(uniques) else False
            codes = codes * (len(uniques) + 1) + key_codes
        # sorted queries search several times faster (cache); one order serves both ends
        ends = (codes << _DAY_BITS) | day
        order = np.argsort(ends, kind="stable")
        first, after_last = np.empty(len(ends), np.int64), np.empty(len(ends), np.int64)
        first[order] = np.searchsorted(self.daily_position, ends[order] - width)
        after_last[order] = np.searchsorted(self.daily_position, ends[order])
        after_last = np.where(known, after_last, first)  # a key never seen: an empty window
        result = {}
        for name, totals in self.running.items():
            summed = totals[after_last] - totals[first]
            base = name.rsplit("_", 1)[0]
            if name.endswith("_sum") and self.scales.get(base, 1) != 1:
                summed = summed / self.scales[base]
            result[name] = summed
        seen = after_last > first
        latest = np.append(self.daily_day, 0)[after_last - 1]
        days_since = pd.array(day - latest, dtype="Int64")
        days_since[~seen] = pd.NA
        result["days_since_last"] = days_since
        return result


class RunHistory:
    """Every valid entry a run loaded, with its race's columns, sorted by (day, race_id, lane).

    Indexes (by key; window sums) are built on first use and kept for the run.
    """

    def __init__(self, races: pd.DataFrame, entries: pd.DataFrame):
        race_columns = races.drop(columns=["race_date"]).set_index("race_id")
        joined = entries.join(race_columns, on="race_id", how="inner")
        finish = joined["finish_position"]
        joined["is_win"] = finish.eq(1).fillna(False).astype(bool)
        joined["is_top2"] = finish.isin([1, 2]).fillna(False).astype(bool)
        if _sorted_by_day_race_lane(joined):  # stored days come back sorted: no second copy
            joined.index = pd.RangeIndex(len(joined))
            self.frame = joined
        else:
            self.frame = joined.sort_values(["race_date", "race_id", "lane"], ignore_index=True)
        self.races = races.sort_values(["race_date", "race_id"], ignore_index=True)
        self.days = self.frame["race_date"].to_numpy("datetime64[D]").astype(np.int64)
        self.race_days = self.races["race_date"].to_numpy("datetime64[D]").astype(np.int64)
        self.names = list(self.frame.columns)
        self.arrays = {name: self._array(name) for name in self.names}
        self._nullable_ints = {  # held as float arrays (NaN for NULL), given back as int
            name
            for name in self.names
            if self.arrays[name].dtype.kind == "f"
            and pd.api.types.is_integer_dtype(self.frame[name].dtype)
        }
        self._key_indexes: dict[tuple[str, ...], _KeyIndex] = {}
        self._window_indexes: dict[tuple, _WindowIndex] = {}
        self._converters = [(name, self.arrays[name], self._converter(name)) for name in self.names]
        self._rows: dict[int, dict] = {}

    def _array(self, name: str) -> np.ndarray:
        column = self.frame[name]
        if pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
            array = column.to_numpy(np.int64)
        elif pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
            column.dtype
        ):
            array = column.to_numpy("float64", na_value=np.nan)
        elif name == "race_date":
            array = column.to_numpy("datetime64[D]")
        else:
            array = column.to_numpy(object, na_value=None)
        array.flags.writeable = False
        return array

    def _converter(self, name: str):
        """Makes one value of `arrays[name]` a Python value: None for NULL, a nullable int
        (held as float) an int again, a day its 'YYYY-MM-DD' text."""
        kind = self.arrays[name].dtype.kind
        if kind == "f":
            if name in self._nullable_ints:
                return lambda v: None if v != v else int(v)
            return lambda v: None if v != v else float(v)
        converters = {"M": str, "i": int, "u": int, "b": bool}
        return converters.get(kind, lambda v: v)

    def row(self, position: int) -> dict:
        """The history entry at `position` as a dict (None for NULL); shared, do not change."""
        row = self._rows.get(position)
        if row is None:
            if len(self._rows) >= ROW_CACHE_SIZE:
                self._rows.clear()
            row = {name: convert(array[position]) for name, array, convert in self._converters}
            self._rows[position] = row
        return row

    def index_lookups(self) -> None:
        """Builds the indexes behind `History.racer`, `.motor` and `.venue_lane`."""
        for columns in LOOKUP_KEYS:
            self.key_index(columns)

    def key_index(self, columns: tuple[str, ...]) -> _KeyIndex:
        if columns not in self._key_indexes:
            self._key_indexes[columns] = _KeyIndex(self, columns)
        return self._key_indexes[columns]

    def window_index(self, keys: tuple[str, ...], values: Mapping[str, int]) -> _WindowIndex:
        cache_key = (keys, tuple(sorted(values.items())))
        if cache_key not in self._window_indexes:
            self._window_indexes[cache_key] = _WindowIndex(self, keys, values)
        return self._window_indexes[cache_key]

    def at(self, day: str, history_days: int) -> History:
        return History(self, day, history_days)


def _sorted_by_day_race_lane(frame: pd.DataFrame) -> bool:
    """Whether the rows are in (race_date, race_id, lane) order, no two with the same key."""
    if len(frame) < 2:
        return True
    decided = np.zeros(len(frame) - 1, dtype=bool)  # ordered by an earlier key already
    for column in ("race_date", "race_id", "lane"):
        step = np.diff(frame[column].to_numpy("int64"))
        if ((step < 0) & ~decided).any():
            return False
        decided |= step > 0
    return bool(decided.all())


class History:
    """What a set may read while computing day D: entries and races of `[D - W, D - 1]`."""

    def __init__(self, run: RunHistory, day: str, history_days: int):
        self._run = run
        self.day = day
        self.history_days = history_days
        self._end = day_number(day)
        self._start = self._end - history_days
        self._bounds = np.array([self._start, self._end], dtype=np.int64)

    def _slice(self, days: np.ndarray) -> slice:
        return slice(*np.searchsorted(days, [self._start, self._end]))

    @property
    def entries(self) -> pd.DataFrame:
        """Entries of the window with their race's columns, sorted by (race_date, race_id, lane)."""
        return self._run.frame.iloc[self._slice(self._run.days)]

    @property
    def races(self) -> pd.DataFrame:
        return self._run.races.iloc[self._slice(self._run.race_days)]

    def _lookup(self, columns: tuple[str, ...], key: Sequence[int]) -> Rows:
        index = self._run.key_index(columns)
        start, end = index.groups.get(_pack_key(key), (0, 0))
        first, after = start + np.searchsorted(index.days[start:end], self._bounds)
        return Rows(self._run, index.order[first:after])

    def racer(self, racer_id: int) -> Rows:
        return self._lookup(RACER, (racer_id,))

    def motor(self, venue_code: int, motor_no: int) -> Rows:
        return self._lookup(MOTOR, (venue_code, motor_no))

    def venue_lane(self, venue_code: int, lane: int) -> Rows:
        return self._lookup(VENUE_LANE, (venue_code, lane))

    def window_sums(
        self,
        rows: pd.DataFrame,
        by: Sequence[str],
        values: Mapping[str, int] | Sequence[str] = (),
        days: int | None = None,
    ) -> dict[str, np.ndarray]:
        """For each of `rows` (e.g. `day.entries`), arrays aligned with them: over history
        entries with the same `by` values in `[D - days, D - 1]`, the number of entries
        (`rows`), for each of `values` the sum and count of non-NULL values (`<v>_sum`,
        `<v>_n`), and `days_since_last`.

        `values` maps a column to the scale that makes it whole (100 for start_timing,
        stored to two decimals), so sums are exact whatever the run's range; a list means
        scale 1. `days` defaults to the set's history_days and may not exceed it.
        """
        width = self.history_days if days is None else days
        if not 1 <= width <= self.history_days:
            raise ValueError(f"days={width}: a window must be 1..{self.history_days} days")
        scales = dict(values) if isinstance(values, Mapping) else dict.fromkeys(values, 1)
        index = self._run.window_index(tuple(by), scales)
        return index.sums(rows, tuple(by), self._window_end(rows), width)

    def _window_end(self, rows: pd.DataFrame) -> int | np.ndarray:
        return self._end


class BatchHistory(History):
    """The history of a batch of days (`batch_days` sets): `window_sums` ends each row's
    window the day before that row's own `race_date`; nothing else has a single day D, so
    the frames and lookups raise rather than show one day another day's rows."""

    def __init__(self, run: RunHistory, days: Sequence[str], history_days: int):
        super().__init__(run, max(days), history_days)

    def _window_end(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["race_date"].to_numpy("datetime64[D]").astype(np.int64)

    def _unavailable(self, *args, **kwargs):
        raise TypeError(
            "this set is declared with batch_days=True: its history offers window_sums only"
            " (declare batch_days=False to use the history's frames and lookups)"
        )

    entries = races = property(_unavailable)
    racer = motor = venue_lane = _unavailable
