"""`check-leakage`: recompute stored days of a set from a source cut at D, and compare;
and record everything the set's code opens meanwhile.

For each sampled day D the set is computed again with everything it could reach cut at D:
a temporary SQLite source holding only the rows dated up to D, with D's columns not yet
known at the set's stage set to NULL (a `card` set: D's weather, exhibition times, odds and
results; a `close` set: D's results), and an empty storage folder;
FEATURE_ASSETS_SOURCE_URL and FEATURE_ASSETS_STORAGE_URL point at them while it runs. A
set that only uses the API gets the same values; one that reads the source through those
variables and looks ahead gets other values, and every such value is reported. The
framework's own columns (keys, labels) are not compared.

While the set's function runs, `access_recorder` records every file, database and network
address it opens outside that cut copy (a URL or path it holds, the stored Parquet of
another set); each one is reported with the set, the day and the line of the set's code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import inspect
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from feature_assets.core.engine import run_days
from feature_assets.core.feature_set import FeatureSet
from feature_assets.core.schema import arrow_schema, unknown_at
from feature_assets.ops.access_recorder import Access, AccessRecorder

TOLERANCE = 1e-9  # the contract's: abs(a - b) <= 1e-9 * max(1, abs(b))


@dataclasses.dataclass(frozen=True)
class Difference:
    day: str
    race_id: int
    lane: int
    column: str
    stored: object
    recomputed: object

    def describe(self) -> str:
        return (
            f"{self.day} race_id {self.race_id} lane {self.lane} {self.column}:"
            f" stored {self.stored!r}, from the source cut at the day {self.recomputed!r}"
        )


def sample_days(stored_days: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """`count` stored days spread over the range (the first and last among them)."""
    days = sorted(stored_days)
    if count >= len(days):
        return days
    picks = np.linspace(0, len(days) - 1, count).round().astype(int)
    return sorted({days[i] for i in picks})


def cut_at(races: pd.DataFrame, entries: pd.DataFrame, day: str, stage: str = "card"):
    """The source as it stood at `stage` of day D: rows after D removed, and D's columns
    not yet known at that stage (`schema.KNOWN_AT`) NULL."""
    when = pd.Timestamp(day)
    races = races[races["race_date"] <= when].copy()
    entries = entries[entries["race_date"] <= when].copy()
    for frame in (races, entries):
        on_day = frame["race_date"] == when
        for column in set(unknown_at(stage)) & set(frame.columns):
            frame.loc[on_day, column] = pd.NA if frame[column].dtype != "float64" else np.nan
    return races, entries


@contextlib.contextmanager
def _cut_environment(folder: Path, races: pd.DataFrame, entries: pd.DataFrame) -> Iterator[None]:
    from feature_assets.io import synthetic

    folder.mkdir()
    url = f"sqlite:///{folder / 'cut.sqlite'}"
    synthetic.load(url, synthetic.SyntheticData(races, entries, {}))
    saved = {
        k: os.environ.get(k) for k in ("FEATURE_ASSETS_SOURCE_URL", "FEATURE_ASSETS_STORAGE_URL")
    }
    os.environ["FEATURE_ASSETS_SOURCE_URL"] = url
    os.environ["FEATURE_ASSETS_STORAGE_URL"] = str(folder / "parquet")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def differences(
    feature_set: FeatureSet, stored: pd.DataFrame, recomputed: pd.DataFrame, day: str
) -> list[Difference]:
    keys = ["race_id", "lane"]
    both = stored.merge(recomputed, on=keys, how="outer", suffixes=("", "~"), indicator=True)
    found = []
    for row in both[both["_merge"] != "both"].itertuples():
        found.append(
            Difference(
                day,
                int(row.race_id),
                int(row.lane),
                "(row)",
                "present" if row._merge == "left_only" else "absent",
                "present" if row._merge == "right_only" else "absent",
            )
        )
    matched = both[both["_merge"] == "both"]
    for column in feature_set.columns:
        a, b = matched[column], matched[f"{column}~"]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            x, y = a.astype("float64").to_numpy(), b.astype("float64").to_numpy()
            same = (np.isnan(x) & np.isnan(y)) | (
                np.abs(x - y) <= TOLERANCE * np.maximum(1, np.abs(y))
            )
        else:
            same = ((a == b) | (a.isna() & b.isna())).fillna(False).to_numpy(bool)
        for row_index in np.flatnonzero(~same):
            row = matched.iloc[row_index]
            found.append(
                Difference(
                    day,
                    int(row["race_id"]),
                    int(row["lane"]),
                    column,
                    _plain(row[column]),
                    _plain(row[f"{column}~"]),
                )
            )
    return found


def _plain(value):
    return None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)


@dataclasses.dataclass(frozen=True)
class Reach:
    """The set's code opened something outside the source cut at the day."""

    day: str
    feature_set: str
    access: Access

    def describe(self) -> str:
        return (
            f"{self.day} feature set {self.feature_set} {self.access.describe()}:"
            " outside the source cut at the day (read through `history` instead)"
        )


Finding = Difference | Reach


def check_leakage(
    feature_set: FeatureSet,
    days: Sequence[str],
    stored: pd.DataFrame,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    watched: Sequence[str] = (),
    on_day: Callable[[str, list[Finding], float], None] = lambda day, found, seconds: None,
) -> list[Finding]:
    """Every value of `stored` (the set's rows of `days`) that differs when the day is
    computed from the source cut at that day, and everything the set's code opened outside
    the cut copy meanwhile (files, databases, network addresses; `watched`: the real storage
    folder and SQLite source, watched for native reads too). `races`/`entries`: the source's
    rows of D-history_days .. D for each day. `on_day` hears each day's findings and seconds
    as soon as the day is checked.

    A day costs about what computing it costs: the set runs once, recorded; only a day on
    which native code read a watched path runs a second time, to name the line."""
    found: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="feature-assets-leakage-") as folder:
        recorder = AccessRecorder([folder], _source_file(feature_set), watched)
        recorded = dataclasses.replace(feature_set, function=_recording(feature_set, recorder))
        try:
            for day in sorted(days):
                started = time.perf_counter()
                of_day = _check_day(recorded, recorder, day, stored, races, entries, folder)
                found += of_day
                on_day(day, of_day, time.perf_counter() - started)
        finally:
            recorder.close()
    return found


def _check_day(
    recorded: FeatureSet,
    recorder: AccessRecorder,
    day: str,
    stored: pd.DataFrame,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    folder: str,
) -> list[Finding]:
    cut_races, cut_entries = cut_at(races, entries, day, recorded.stage)
    with _cut_environment(Path(folder) / day, cut_races, cut_entries):
        [result] = run_days(recorded, cut_races, cut_entries, [day], workers=1)
        if recorder.has_unlocated_reads:
            with recorder.locating():
                run_days(recorded, cut_races, cut_entries, [day], workers=1)
    found: list[Finding] = [Reach(day, recorded.name, a) for a in recorder.take()]
    if not result.ok:
        error = result.error.splitlines()[0]
        return [*found, Difference(day, 0, 0, "(day)", "computed", error)]
    of_day = stored[stored["race_date"] == pd.Timestamp(day)]
    return found + differences(recorded, of_day, result.rows, day)


def _recording(feature_set: FeatureSet, recorder: AccessRecorder):
    """The set's function, recorded while it runs (and only then: the framework's own reads
    around it are not the set's doing)."""

    @functools.wraps(feature_set.function)
    def recorded(*args, **kwargs):
        with recorder.recording():
            return feature_set.function(*args, **kwargs)

    return recorded


def _source_file(feature_set: FeatureSet) -> str | None:
    try:
        return inspect.getsourcefile(feature_set.function)
    except TypeError:  # defined interactively
        return None


def check_stored_days(
    feature_set: FeatureSet,
    days: Sequence[str],
    storage_url: str,
    source_url: str,
    on_day: Callable[[str, list[Finding], float], None] = lambda day, found, seconds: None,
) -> list[Finding]:
    """`check_leakage` of `days` as stored at `storage_url`, from the source at `source_url`."""
    from feature_assets.io.source import SourceLocation, read_snapshot
    from feature_assets.io.storage import DailyParquetStorage

    storage = DailyParquetStorage(storage_url)
    schema = arrow_schema(feature_set.output_columns)
    stored = storage.read_days(feature_set.name, days, schema)
    location = SourceLocation.from_url(source_url)
    first = dt.date.fromisoformat(days[0]) - dt.timedelta(days=feature_set.history_days)
    snapshot = read_snapshot(location, first, dt.date.fromisoformat(days[-1]))
    watched = [storage.root] if storage.is_local else []
    if location.kind == "sqlite":
        watched.append(location.database)
    return check_leakage(
        feature_set, days, stored, snapshot.races, snapshot.entries, watched, on_day
    )
