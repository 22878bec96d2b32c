"""Example per-race set, written as per-record code is: plain loops over the lookups.

A racer's last five finishes, the days since the racer's last win, and the motor's recent
form. `history` holds only the 180 days before the race day, so none of this can see the
race's own result or anything later. A lookup's `last(n)` gives its latest n entries as
dicts; `column(name)` a whole column as an array, cheaper than a dict per entry when a
loop looks at one value of many entries.
"""

import datetime as dt

from feature_assets.core.feature_set import per_race


@per_race(
    history_days=180,
    columns={
        "last5_avg_finish": "float",
        "last5_wins": "int",
        "days_since_last_win": "int",
        "motor_last10_top2": "int",
        "motor_last10_starts": "int",
    },
)
def racer_form(race, history):
    """A racer's last five finishes, days since the last win, the motor's last ten starts."""
    day = dt.date.fromisoformat(race.day)
    rows = []
    for entry in race.each_entry():
        racer = history.racer(entry.racer_id)
        finishes = [e["finish_position"] for e in racer.last(5)]
        finishes = [f for f in finishes if f is not None]
        motor = history.motor(entry.venue_code, entry.motor_no).last(10)
        rows.append(
            {
                "last5_avg_finish": sum(finishes) / len(finishes) if finishes else None,
                "last5_wins": finishes.count(1),
                "days_since_last_win": _days_since_last_win(racer, day),
                "motor_last10_top2": sum(1 for e in motor if e["finish_position"] in (1, 2)),
                "motor_last10_starts": len(motor),
            }
        )
    return rows


def _days_since_last_win(racer, day: dt.date) -> int | None:
    finishes = racer.column("finish_position")
    dates = racer.column("race_date")
    for position in range(len(finishes) - 1, -1, -1):  # latest first
        if finishes[position] == 1:
            return (day - dates[position].astype(dt.date)).days
    return None
