"""Sets that fail on the day named by FAULTY_DAY: one raises, one kills its worker."""

import multiprocessing
import os
import signal

from feature_assets.core.feature_set import per_race


def _rows(race):
    return [{"entries": len(race.entries)} for _ in range(len(race.entries))]


@per_race(history_days=0, columns={"entries": "int"})
def raises_on_day(race, history):
    if race.day == os.environ.get("FAULTY_DAY") and race.row["race_no"] == 2:
        raise ZeroDivisionError("the user's code divided by zero")
    return _rows(race)


@per_race(history_days=0, columns={"entries": "int"})
def dies_on_day(race, history):
    # only in a worker process: the parent computes a first day itself
    if race.day == os.environ.get("FAULTY_DAY") and multiprocessing.parent_process():
        os.kill(os.getpid(), signal.SIGKILL)
    return _rows(race)


@per_race(history_days=0, columns={"entries": "int"})
def fails_race_two(race, history):
    """Fails the second race of every day: the same cause on many days, another race each."""
    if race.row["race_no"] == 2:
        raise ValueError("bar too high")
    return _rows(race)
