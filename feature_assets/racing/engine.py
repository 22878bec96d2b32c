"""Runs a feature set over days: invalid races out, one day at a time, on worker processes.

The run's history is loaded and indexed once, in this process; workers are forked from it
and share its arrays copy-on-write instead of copying them (a ten-year history is hundreds
of MB). The first day is computed here before any fork, so an index a set builds on first
use is built once, not once per worker. Each worker is handed one day at a time; a result
comes back as soon as its day is done and `on_result` stores it, so a crash later loses
nothing already finished.

A day's outcome is its rows, or an error naming the set, the day, the race (per-race sets)
and the cause: an invalid race, an exception in the set's code (with its traceback), rows
that do not match what the set declared, or the death of the worker that held the day.
Only that day fails; the other days go on.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait

import numpy as np
import pandas as pd

from feature_assets.racing.feature_set import KEY_COLUMNS, FeatureSet
from feature_assets.racing.history import RESULT_COLUMNS, Day, RunHistory, day_number
from feature_assets.racing.quality import InvalidRacesError, find_invalid_races

INVALID_RACES = "invalid races"
SET_ERROR = "feature set error"
WORKER_DIED = "worker died"
_HIDDEN = [*RESULT_COLUMNS, "is_win", "is_top2"]


@dataclasses.dataclass(frozen=True)
class DayResult:
    """One day's outcome: `rows` when it succeeded, else `error` (of kind `failure`)."""

    day: str
    rows: pd.DataFrame | None = None
    error: str | None = None
    failure: str | None = None
    seconds: float = 0.0
    races: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class FeatureSetError(RuntimeError):
    """Days of a set failed; the message holds each day's error."""

    def __init__(self, failed: list[DayResult]):
        self.failed = failed
        super().__init__("\n".join(result.error for result in failed))


class _Rejected(Exception):
    """The set returned something other than what it declared (no traceback needed)."""


@dataclasses.dataclass
class _Run:
    feature_set: FeatureSet
    history: RunHistory
    day_rows: dict[str, pd.DataFrame]  # each target day's valid entries, results included
    day_inputs: dict[str, Day]  # the same without results, as the set gets them


_RUN: _Run | None = None  # the run a forked worker computes (set before the fork)


def prepare(
    feature_set: FeatureSet, races: pd.DataFrame, entries: pd.DataFrame, days: Iterable[str]
) -> tuple[_Run, dict[str, DayResult]]:
    """The run's shared history and day inputs, and the failed results of invalid days."""
    days = sorted(days)
    violations = find_invalid_races(races, entries)
    labels = violations["race_date"].dt.strftime("%Y-%m-%d")
    invalid = {
        day: DayResult(
            day,
            error=f"feature set {feature_set.name}, day {day}: invalid races, the day is not"
            " written:\n"
            + "\n".join(
                f"  race_id {race_id}: {'; '.join(of_race['rule'])}"
                for race_id, of_race in violations[labels == day].groupby("race_id", sort=True)
            ),
            failure=INVALID_RACES,
        )
        for day in sorted(set(labels) & set(days))
    }
    valid_races = races[~races["race_id"].isin(violations["race_id"])]
    history = RunHistory(valid_races, entries[entries["race_id"].isin(valid_races["race_id"])])
    starts = np.searchsorted(history.days, [day_number(d) for d in days], side="left")
    ends = np.searchsorted(history.days, [day_number(d) + 1 for d in days], side="left")
    race_starts = np.searchsorted(history.race_days, [day_number(d) for d in days], side="left")
    race_ends = np.searchsorted(history.race_days, [day_number(d) + 1 for d in days])
    without_results = history.frame.drop(columns=_HIDDEN)
    day_rows, day_inputs = {}, {}
    for i, day in enumerate(days):
        if day not in invalid:
            rows = slice(starts[i], ends[i])
            day_rows[day] = history.frame.iloc[rows]
            day_inputs[day] = Day(
                day=day,
                races=history.races.iloc[race_starts[i] : race_ends[i]].reset_index(drop=True),
                entries=without_results.iloc[rows].reset_index(drop=True),
            )
    return _Run(feature_set, history, day_rows, day_inputs), invalid


def _compute(run: _Run, day: str) -> DayResult:
    feature_set = run.feature_set
    started = time.process_time()
    day_input = run.day_inputs[day]
    history = run.history.at(day, feature_set.history_days)
    race_id = None
    try:
        if feature_set.per == "race":
            computed = []
            for race in day_input.each_race():
                race_id = race.race_id
                computed.extend(_race_rows(feature_set(race, history), len(race.entries)))
            race_id = None
            computed = pd.DataFrame.from_records(computed, columns=list(feature_set.columns))
        else:
            computed = feature_set(day_input, history)
        rows = _checked(feature_set, computed, run.day_rows[day])
    except Exception as err:  # the set's own code: any exception fails this day only
        where = f"feature set {feature_set.name}, day {day}" + (
            f", race_id {race_id}" if race_id is not None else ""
        )
        detail = (
            str(err)
            if isinstance(err, _Rejected)
            else f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        )
        return DayResult(day, error=f"{where}: {detail}", failure=SET_ERROR)
    seconds = time.process_time() - started
    return DayResult(day, rows=rows, seconds=seconds, races=len(day_input.races))


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


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's limit)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()  # cgroup v2
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def run_days(
    feature_set: FeatureSet,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    days: Iterable[str],
    workers: int = 1,
    on_result: Callable[[DayResult], None] = lambda result: None,
) -> list[DayResult]:
    """Computes `feature_set` for each of `days` from the loaded raw rows (which cover at
    least D-history_days .. D of each day); calls `on_result` with each day's outcome as
    soon as it is known, in this process. Returns every outcome, sorted by day."""
    run, invalid = prepare(feature_set, races, entries, days)
    results = dict(invalid)
    for result in invalid.values():
        on_result(result)

    def finish(result: DayResult) -> None:
        results[result.day] = result
        on_result(result)

    pending = deque(run.day_rows)
    while pending and (workers <= 1 or not any(r.ok for r in results.values())):
        finish(_compute(run, pending.popleft()))  # here: warms indexes before any fork
    if pending:
        _on_workers(run, pending, workers, finish)
    return [results[day] for day in sorted(results)]


def _worker(connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while (day := connection.recv()) is not None:
        connection.send(_compute(_RUN, day))


def _on_workers(run: _Run, pending: deque, workers: int, finish) -> None:
    global _RUN
    _RUN = run
    context = multiprocessing.get_context("fork")
    held: dict = {}  # connection -> [process, day or None]

    def start_worker() -> None:
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        held[ours] = [process, None]
        hand_out(ours)

    def hand_out(connection) -> None:
        day = pending.popleft() if pending else None
        held[connection][1] = day
        connection.send(day)

    try:
        for _ in range(min(workers, len(pending))):
            start_worker()
        while held:
            for connection in wait(list(held)):
                process, day = held[connection]
                try:
                    result = connection.recv()
                except EOFError:  # the worker died
                    process.join()
                    del held[connection]
                    if day is not None:
                        finish(_died(run, day, process))
                        if pending:
                            start_worker()
                    continue
                finish(result)
                hand_out(connection)
                if held[connection][1] is None:
                    process.join()
                    del held[connection]
    finally:
        for process, _ in held.values():
            process.kill()
        _RUN = None


def _died(run: _Run, day: str, process) -> DayResult:
    code = process.exitcode
    how = (
        f"was killed by signal {-code} ({signal.Signals(-code).name}; killed, or out of memory)"
        if code is not None and code < 0
        else f"exited with code {code}"
    )
    return DayResult(
        day,
        error=f"feature set {run.feature_set.name}, day {day}: the worker process"
        f" (pid {process.pid}) {how} while computing the day; run retries redo it",
        failure=WORKER_DIED,
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
    results = run_days(feature_set, races, entries, labels, workers)
    failed = [result for result in results if not result.ok]
    if failed:
        raise FeatureSetError(failed)
    frames = [result.rows for result in results]
    if not frames:
        from feature_assets.racing.feature_set import empty_output

        return empty_output(feature_set)
    return pd.concat(frames, ignore_index=True)
