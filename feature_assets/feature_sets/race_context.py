"""Example per-day set, vectorised: how each entry compares with the rest of its race.

Same-day, pre-race inputs (odds, exhibition times) and one history sum (the lane's top-2
rate at the venue over 90 days), computed for many days at once (`batch_days`: everything
here is per race or from `window_sums`, so a call may hold a year of days; one call a day
cost ~6 ms of pandas, most of this set's time).
"""

import pandas as pd

from feature_assets.core.feature_set import per_day


@per_day(
    history_days=90,
    batch_days=True,
    stage="close",  # D's odds and exhibition times
    columns={
        "odds_rank": "int",
        "exhibition_gap": "float",
        "venue_lane_top2_rate_90d": "float",
        "field_size": "int",
    },
)
def race_context(day, history) -> pd.DataFrame:
    """Odds rank and exhibition gap within the race, the lane's 90-day top-2 rate."""
    entries = day.entries
    by_race = entries.groupby("race_id")
    lane = history.window_sums(entries, ["venue_code", "lane"], {"is_top2": 1})
    rate = pd.Series(lane["is_top2_sum"], dtype="float64") / pd.Series(lane["rows"])
    return pd.DataFrame(
        {
            "odds_rank": by_race["win_odds"].rank(method="min"),
            "exhibition_gap": entries["exhibition_time"]
            - by_race["exhibition_time"].transform("min"),
            "venue_lane_top2_rate_90d": rate.where(pd.Series(lane["rows"]) > 0),
            "field_size": by_race["lane"].transform("size"),
        }
    )
