"""Example per-race set, written as per-record code is: loops and dicts over the lookups.

A racer's last five finishes, the days since the racer's last win, and the motor's recent
form. `history` holds only the 180 days before the race day, so none of this can see the
race's own result or anything later.
"""

import datetime as dt

from feature_assets.racing.feature_set import per_race


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
        last5 = racer.last(5)
        finishes = [e["finish_position"] for e in last5 if e["finish_position"] is not None]
        wins = [e for e in racer if e["finish_position"] == 1]
        motor = history.motor(entry.venue_code, entry.motor_no).last(10)
        rows.append(
            {
                "last5_avg_finish": sum(finishes) / len(finishes) if finishes else None,
                "last5_wins": sum(1 for f in finishes if f == 1),
                "days_since_last_win": (
                    (day - dt.date.fromisoformat(wins[-1]["race_date"])).days if wins else None
                ),
                "motor_last10_top2": sum(1 for e in motor if e["finish_position"] in (1, 2)),
                "motor_last10_starts": len(motor),
            }
        )
    return rows
