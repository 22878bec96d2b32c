"""A set that looks for what it must not see: later rows, day D's results."""

import pandas as pd

from feature_assets.core.feature_set import per_race


@per_race(
    history_days=30,
    columns={"history_gap_days": "int", "lookup_gap_days": "int", "sees_results": "bool"},
)
def peeking(race, history):
    day = pd.Timestamp(race.day)
    latest = history.entries["race_date"].max()
    sees_results = bool({"finish_position", "start_timing"} & set(race.entries.columns))
    rows = []
    for entry in race.each_entry():
        dates = [
            pd.Timestamp(row["race_date"])
            for lookup in (
                history.racer(entry.racer_id),
                history.motor(entry.venue_code, entry.motor_no),
                history.venue_lane(entry.venue_code, entry.lane),
            )
            for row in lookup
        ]
        rows.append(
            {
                "history_gap_days": (day - latest).days if pd.notna(latest) else None,
                "lookup_gap_days": (day - max(dates)).days if dates else None,
                "sees_results": sees_results,
            }
        )
    return rows
