"""Runs a feature set over days: invalid races out, one day at a time, on worker processes.

The run's history is loaded and indexed once, in this process; workers are forked from it
and share its arrays copy-on-write instead of copying them (a ten-year history is hundreds
of MB). Indexes are built here before any fork, so that they are built once, not once per
worker: the lookups of per-race sets at once (their days may take minutes each), and for
per-day sets the window sums their first unit asks for. Each worker is handed one day at
a time (a batch of days for `batch_days` sets); its outcome comes back as soon as it is
done and `on_result` stores it, so a crash later loses nothing already finished.

A day's outcome is its rows, or an error naming the set, the day, the race (per-race sets)
and the cause: an invalid race, an exception in the set's code (with its traceback), rows
that do not match what the set declared, or the death of the worker that held the day.
Only that day fails; the other days go on.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait

import numpy as np
import pandas as pd

from feature_assets.core.feature_set import KEY_COLUMNS, FeatureSet, empty_output
from feature_assets.core.history import (
    BatchHistory,
    Day,
    History,
    RunHistory,
    day_number,
)
from feature_assets.core.quality import InvalidRacesError, find_invalid_races
from feature_assets.core.schema import KNOWN_AT, unknown_at

INVALID_RACES = "invalid races"
SET_ERROR = "feature set error"
WORKER_DIED = "worker died"
_LABELS = ["is_win", "is_top2"]  # derived from finish_position: hidden with it


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one call of a set gave: the `rows` of its `days` (sorted by race_date, race_id,
    lane), or the `error` (of kind `failure`) of its one day; a failure is one day's."""

    days: tuple[str, ...]
    rows: pd.DataFrame | None = None
    error: str | None = None
    failure: str | None = None
    seconds: float = 0.0  # CPU seconds of the set's code for these days
    races: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, day: str, error: str, failure: str) -> Outcome:
        return cls((day,), error=error, failure=failure)


class FeatureSetError(RuntimeError):
    """Days of a set failed; the message holds each day's error."""

    def __init__(self, failed: list[Outcome]):
        self.failed = failed
        super().__init__("\n".join(outcome.error for outcome in failed))


class _Rejected(Exception):
    """The set returned something other than what it declared (no traceback needed)."""


@dataclasses.dataclass
class _Run:
    feature_set: FeatureSet
    history: RunHistory
    known_entries: pd.DataFrame  # history.frame with only the columns known at the set's stage
    known_races: pd.DataFrame  # history.races likewise
    spans: dict[str, tuple[int, int, int, int]]  # valid day -> its entry and race positions
    units: list[tuple[str, ...]]  # the days computed by one call: one, or a batch

    def inputs(self, unit: tuple[str, ...]) -> tuple[pd.DataFrame, Day]:
        """The unit's valid entries with results (for the checks and keys), and the `Day`
        the set gets: the same entries and their races, with only the columns known at the
        set's stage."""
        spans = [self.spans[day] for day in unit]
        entries = np.concatenate([np.arange(s[0], s[1]) for s in spans])
        races = np.concatenate([np.arange(s[2], s[3]) for s in spans])
        label = unit[0] if len(unit) == 1 else f"{unit[0]}...{unit[-1]}"
        day = Day(
            day=label,
            races=self.known_races.iloc[races].reset_index(drop=True),
            entries=self.known_entries.iloc[entries].reset_index(drop=True),
        )
        return self.history.frame.iloc[entries], day

    def history_of(self, unit: tuple[str, ...]) -> History:
        feature_set = self.feature_set
        if feature_set.batch_days:
            return BatchHistory(self.history, unit, feature_set.history_days)
        return self.history.at(unit[0], feature_set.history_days)


BATCH_DAYS = 366  # days per call of a batch_days set: each call costs ~10 ms of pandas
_RUN: _Run | None = None  # the run a forked worker computes (set before the fork)


def prepare(
    feature_set: FeatureSet, races: pd.DataFrame, entries: pd.DataFrame, days: Iterable[str]
) -> tuple[_Run, list[Outcome]]:
    """The run's shared history and units of days, and the failed outcomes of invalid days."""
    days = sorted(days)
    violations = find_invalid_races(races, entries)
    labels = violations["race_date"].dt.strftime("%Y-%m-%d")
    invalid = {
        day: Outcome.failed(
            day,
            f"feature set {feature_set.name}, day {day}: invalid races, the day is not"
            " written:\n"
            + "\n".join(
                f"  race_id {race_id}: {'; '.join(of_race['rule'])}"
                for race_id, of_race in violations[labels == day].groupby("race_id", sort=True)
            ),
            INVALID_RACES,
        )
        for day in sorted(set(labels) & set(days))
    }
    valid_races = races[~races["race_id"].isin(violations["race_id"])]
    history = RunHistory(valid_races, entries[entries["race_id"].isin(valid_races["race_id"])])
    valid = [day for day in days if day not in invalid]
    numbers = np.array([day_number(day) for day in valid], dtype=np.int64)
    positions = zip(
        np.searchsorted(history.days, numbers).tolist(),
        np.searchsorted(history.days, numbers + 1).tolist(),
        np.searchsorted(history.race_days, numbers).tolist(),
        np.searchsorted(history.race_days, numbers + 1).tolist(),
        strict=True,
    )
    spans = dict(zip(valid, positions, strict=True))
    size = BATCH_DAYS if feature_set.batch_days else 1
    units = [tuple(valid[i : i + size]) for i in range(0, len(valid), size)]
    hidden = {*unknown_at(feature_set.stage), *_LABELS}
    known_entries, known_races = (_view(f, hidden) for f in (history.frame, history.races))
    run = _Run(feature_set, history, known_entries, known_races, spans, units)
    return run, list(invalid.values())


def _view(frame: pd.DataFrame, hidden: set[str]) -> pd.DataFrame:
    """The frame's columns but `hidden`: a view, not a copy (`drop` would copy ~130 MB for
    ten years)."""
    return pd.DataFrame({c: frame[c] for c in frame.columns if c not in hidden}, copy=False)


def _compute_unit(run: _Run, unit: tuple[str, ...]) -> list[Outcome]:
    """The outcomes of a unit's days: one call for a batch, or each day alone when the
    batch fails, so that an error names its own day and the other days still succeed."""
    if len(unit) == 1:
        return [_compute(run, unit[0])]
    started = time.process_time()
    feature_set = run.feature_set
    day_rows, batch = run.inputs(unit)
    try:
        rows = _checked(feature_set, feature_set(batch, run.history_of(unit)), day_rows)
    except Exception:  # find the day (or days) that fail, one at a time
        return [_compute(run, day) for day in unit]
    seconds = time.process_time() - started
    return [Outcome(unit, rows=rows, seconds=seconds, races=len(batch.races))]


def _compute(run: _Run, day: str) -> Outcome:
    feature_set = run.feature_set
    started = time.process_time()
    day_rows, day_input = run.inputs((day,))
    history = run.history_of((day,))
    race_id = None
    try:
        if feature_set.per == "race":
            computed = []
            for race in day_input.each_race():
                race_id = race.race_id
                computed.extend(_race_rows(feature_set(race, history), len(race)))
            race_id = None
            computed = pd.DataFrame.from_records(computed, columns=list(feature_set.columns))
        else:
            computed = feature_set(day_input, history)
        rows = _checked(feature_set, computed, day_rows)
    except Exception as err:  # the set's own code: any exception fails this day only
        where = f"feature set {feature_set.name}, day {day}" + (
            f", race_id {race_id}" if race_id is not None else ""
        )
        detail = (
            str(err)
            if isinstance(err, _Rejected)
            else f"{type(err).__name__}: {err}{_stage_hint(feature_set, err)}\n"
            f"{traceback.format_exc()}"
        )
        return Outcome.failed(day, f"{where}: {detail}", SET_ERROR)
    seconds = time.process_time() - started
    return Outcome((day,), rows=rows, seconds=seconds, races=len(day_input.races))


def _stage_hint(feature_set: FeatureSet, err: Exception) -> str:
    """Why a column of day D is missing, when the set asked for one its stage hides."""
    if not isinstance(err, KeyError | AttributeError):
        return ""
    for column in unknown_at(feature_set.stage):
        if f"'{column}'" in str(err):
            known = KNOWN_AT[column]
            fix = 'declare stage="close"' if known == "close" else "read it from `history`"
            return (
                f" ({column} of day D is known only at stage {known}; the set predicts at"
                f" {feature_set.stage}: {fix})"
            )
    return ""


def _race_rows(result, entries: int) -> list[dict]:
    if isinstance(result, pd.DataFrame):
        result = result.to_dict("records")
    result = list(result)
    if len(result) != entries:
        raise _Rejected(f"returned {len(result)} row(s) for the race's {entries} entries")
    return result


def _checked(feature_set: FeatureSet, computed, day_rows: pd.DataFrame) -> pd.DataFrame:
    """The stored rows: keys and pass-through from the day's rows, then the set's columns,
    each of its declared type; `_Rejected` naming what does not match the declaration."""
    if not isinstance(computed, pd.DataFrame):
        raise _Rejected(f"returned {type(computed).__name__}, not a DataFrame")
    if len(computed) != len(day_rows):
        raise _Rejected(
            f"returned {len(computed)} row(s) for the day's {len(day_rows)} valid entries"
        )
    declared = list(feature_set.columns)
    missing = [c for c in declared if c not in computed.columns]
    extra = [c for c in computed.columns if c not in declared and c not in ("race_id", "lane")]
    if missing or extra:
        raise _Rejected(
            "columns differ from the declaration:"
            + (f" missing {', '.join(missing)}" if missing else "")
            + (f" undeclared {', '.join(map(str, extra))}" if extra else "")
        )
    for key in ("race_id", "lane"):
        if key in computed.columns and not np.array_equal(
            computed[key].to_numpy(np.int64), day_rows[key].to_numpy(np.int64)
        ):
            raise _Rejected(f"its rows are not in the order of the day's entries ({key} differs)")
    data = {column: day_rows[column].array for column in KEY_COLUMNS}
    data.update({column: day_rows[column].array for column in feature_set.pass_through})
    output_types = feature_set.output_dtypes
    for column in declared:
        data[column] = _typed_column(column, computed[column], output_types[column])
    return pd.DataFrame(data, copy=False)


def _typed_column(name: str, values: pd.Series, dtype):
    if values.dtype == dtype:
        return values.array
    if dtype == np.dtype(bool) and values.isna().any():
        raise _Rejected(f'column {name}: NULL in a bool column (declare it "float" or fill it)')
    try:
        return values.astype(dtype).array
    except (TypeError, ValueError) as err:
        raise _Rejected(f"column {name}: not {dtype}: {err}") from None


def run_days(
    feature_set: FeatureSet,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    days: Iterable[str],
    workers: int = 1,
    on_result: Callable[[Outcome], None] = lambda outcome: None,
    keep_rows: bool = True,
) -> list[Outcome]:
    """Computes `feature_set` for each of `days` from the loaded raw rows (which cover at
    least D-history_days .. D of each day); calls `on_result` with each outcome (one day,
    or a batch of days) as soon as it is known, in this process. Returns every outcome,
    sorted by day; together they hold each of `days` exactly once. With `keep_rows=False`
    the returned outcomes carry no rows (`on_result` had them): a ten-year run does not
    hold its features twice."""
    run, invalid = prepare(feature_set, races, entries, days)
    outcomes = []

    def finish(outcome: Outcome) -> None:
        on_result(outcome)
        outcomes.append(outcome if keep_rows else dataclasses.replace(outcome, rows=None))

    for outcome in invalid:
        finish(outcome)
    pending = deque(run.units)
    per_race = feature_set.per == "race"
    if workers > 1 and per_race:
        run.history.index_lookups()  # here, once: the forked workers share them
    # a per-day set's first unit runs here: the window sums it asks for are indexed once
    while pending and (workers <= 1 or not (per_race or any(o.ok for o in outcomes))):
        for outcome in _compute_unit(run, pending.popleft()):
            finish(outcome)
    if pending:
        _on_workers(run, pending, workers, finish)
    return sorted(outcomes, key=lambda outcome: outcome.days[0])


def _worker(connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while (unit := connection.recv()) is not None:
        connection.send(_compute_unit(_RUN, unit))


def _on_workers(run: _Run, pending: deque, workers: int, finish) -> None:
    global _RUN
    _RUN = run
    context = multiprocessing.get_context("fork")
    held: dict = {}  # connection -> [process, unit of days or None]

    def start_worker() -> None:
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        held[ours] = [process, None]
        hand_out(ours)

    def hand_out(connection) -> None:
        unit = pending.popleft() if pending else None
        held[connection][1] = unit
        connection.send(unit)

    try:
        for _ in range(min(workers, len(pending))):
            start_worker()
        while held:
            for connection in wait(list(held)):
                process, unit = held[connection]
                try:
                    unit_outcomes = connection.recv()
                except EOFError:  # the worker died
                    process.join()
                    del held[connection]
                    if unit is not None:
                        for day in unit:
                            finish(_died(run, day, process))
                        if pending:
                            start_worker()
                    continue
                for outcome in unit_outcomes:
                    finish(outcome)
                hand_out(connection)
                if held[connection][1] is None:
                    process.join()
                    del held[connection]
    finally:
        for process, _ in held.values():
            process.kill()
        _RUN = None


def _died(run: _Run, day: str, process) -> Outcome:
    code = process.exitcode
    how = (
        f"was killed by signal {-code} ({signal.Signals(-code).name}; killed, or out of memory)"
        if code is not None and code < 0
        else f"exited with code {code}"
    )
    return Outcome.failed(
        day,
        f"feature set {run.feature_set.name}, day {day}: the worker process"
        f" (pid {process.pid}) {how} while computing the day; run retries redo it",
        WORKER_DIED,
    )


def compute_days(
    feature_set: FeatureSet,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    days: Iterable[str | pd.Timestamp],
    workers: int = 1,
) -> pd.DataFrame:
    """The set's rows for all `days` in one frame, sorted by (race_date, race_id, lane).

    Raises `InvalidRacesError` naming every invalid race when a day has one, else
    `FeatureSetError` when the set failed on any day. For tests, notebooks and benchmarks.
    """
    labels = [pd.Timestamp(day).strftime("%Y-%m-%d") for day in days]
    violations = find_invalid_races(races, entries)
    on_days = violations[violations["race_date"].dt.strftime("%Y-%m-%d").isin(labels)]
    if not on_days.empty:
        raise InvalidRacesError(on_days.reset_index(drop=True))
    outcomes = run_days(feature_set, races, entries, labels, workers)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        raise FeatureSetError(failed)
    frames = [outcome.rows for outcome in outcomes]
    return pd.concat(frames, ignore_index=True) if frames else empty_output(feature_set)
