"""A per-race set written as a user ports their own code: pure Python over the history rows,
many small calls of its own (about 15 ms of CPU a race by default), 120 days of history.

Its cost comes from the calls themselves (FEATURE_ASSETS_BENCH_USER_PASSES passes of a
decayed form over each runner's past finishes, default 1200), so anything that hooks every
call, as a profiler does, slows it as it would slow the user's code.
"""

import os

from feature_assets.core.feature_set import per_race

PASSES = int(os.environ.get("FEATURE_ASSETS_BENCH_USER_PASSES", "1200"))


def _points(finish) -> float:
    return 0.0 if finish is None or finish != finish else 7.0 - finish


def _decayed(points: list[float], half_life: int) -> float:
    weight, total, norm = 1.0, 0.0, 0.0
    for value in reversed(points):
        total += weight * value
        norm += weight
        weight *= 0.5 ** (1 / half_life)
    return total / norm if norm else 0.0


@per_race(
    history_days=120,
    columns={"racer_form_120d": "float", "racer_starts_120d": "int", "lane_wins_120d": "int"},
)
def user_set(race, history):
    """The racer's decayed form over 120 days, their starts, and their wins in this lane."""
    rows = []
    for entry in race.each_entry():
        past = list(history.racer(entry.racer_id))
        points = [_points(e["finish_position"]) for e in past]
        form = sum(_decayed(points, 1 + p) for p in range(PASSES)) / PASSES
        rows.append(
            {
                "racer_form_120d": form,
                "racer_starts_120d": len(past),
                "lane_wins_120d": sum(
                    e["lane"] == entry.lane and e["finish_position"] == 1 for e in past
                ),
            }
        )
    return rows
