"""A per-race set with a fixed CPU cost, standing in for the user's expensive per-record code.

Its values come from the history lookups; the cost (FEATURE_ASSETS_BENCH_SECONDS_PER_RACE,
default 0.02 s of CPU) is burnt beside them, so the output does not depend on it.
"""

import os
import time

from feature_assets.core.feature_set import per_race

SECONDS_PER_RACE = float(os.environ.get("FEATURE_ASSETS_BENCH_SECONDS_PER_RACE", "0.02"))


def _burn(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        sum(i * i for i in range(200))


@per_race(
    history_days=30,
    columns={"racer_starts_30d": "int", "racer_wins_30d": "int", "motor_starts_30d": "int"},
)
def slow_set(race, history):
    """The racer's starts and wins and the motor's starts over 30 days, at a fixed cost."""
    rows = []
    for entry in race.each_entry():
        racer = list(history.racer(entry.racer_id))
        rows.append(
            {
                "racer_starts_30d": len(racer),
                "racer_wins_30d": sum(e["finish_position"] == 1 for e in racer),
                "motor_starts_30d": len(history.motor(entry.venue_code, entry.motor_no)),
            }
        )
    _burn(SECONDS_PER_RACE)
    return rows
