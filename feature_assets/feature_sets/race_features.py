"""The contract's 12 features (docs/contract.md, `race_features`): the built-in feature set.

Vectorised: every history feature is a window sum that `History.window_sums` answers for
many days at once (`batch_days`) from running totals built once per run, so ten years cost
seconds. Sums
are whole numbers (start timings in hundredths), so a day has the same bits alone, in a
range or in a full backfill.
"""

import numpy as np
import pandas as pd

from feature_assets.core.feature_set import per_day

CLASS_ORDINALS = {"A1": 4, "A2": 3, "B1": 2, "B2": 1}
# each history value, and the scale that makes it whole
_RACER_VALUES = {"is_win": 1, "is_top2": 1, "finish_position": 1, "start_timing": 100}
_RESULT_VALUES = {"is_win": 1, "is_top2": 1}


@per_day(
    history_days=365,
    batch_days=True,
    stage="close",  # D's odds and exhibition times
    pass_through=("venue_code", "race_no", "finish_position", "is_win"),
    columns={
        "racer_starts_90d": "int",
        "racer_win_rate_90d": "float",
        "racer_top2_rate_90d": "float",
        "racer_avg_finish_90d": "float",
        "racer_avg_start_timing_90d": "float",
        "racer_lane_win_rate_365d": "float",
        "motor_top2_rate_180d": "float",
        "venue_lane_win_rate_365d": "float",
        "days_since_last_race": "int",
        "exhibition_time_rank": "int",
        "implied_win_prob": "float",
        "racer_class_ordinal": "int",
    },
)
def race_features(day, history) -> pd.DataFrame:
    """The contract's history and same-day features of every entry of the day."""
    entries = day.entries
    racer = history.window_sums(entries, ["racer_id"], _RACER_VALUES, days=90)
    racer_year = history.window_sums(entries, ["racer_id"], _RACER_VALUES, days=365)
    racer_lane = history.window_sums(entries, ["racer_id", "lane"], _RESULT_VALUES, days=365)
    motor = history.window_sums(entries, ["venue_code", "motor_no"], _RESULT_VALUES, days=180)
    venue_lane = history.window_sums(entries, ["venue_code", "lane"], _RESULT_VALUES, days=365)
    return pd.DataFrame(
        {
            "racer_starts_90d": racer["rows"],
            "racer_win_rate_90d": _ratio(racer["is_win_sum"], racer["rows"]),
            "racer_top2_rate_90d": _ratio(racer["is_top2_sum"], racer["rows"]),
            "racer_avg_finish_90d": _ratio(
                racer["finish_position_sum"], racer["finish_position_n"]
            ),
            "racer_avg_start_timing_90d": _ratio(
                racer["start_timing_sum"], racer["start_timing_n"]
            ),
            "racer_lane_win_rate_365d": _ratio(racer_lane["is_win_sum"], racer_lane["rows"]),
            "motor_top2_rate_180d": _ratio(motor["is_top2_sum"], motor["rows"]),
            "venue_lane_win_rate_365d": _ratio(venue_lane["is_win_sum"], venue_lane["rows"]),
            "days_since_last_race": racer_year["days_since_last"],
            "exhibition_time_rank": entries.groupby("race_id")["exhibition_time"].rank(
                method="min", ascending=True
            ),
            "implied_win_prob": _implied_win_prob(entries),
            "racer_class_ordinal": entries["racer_class"].map(CLASS_ORDINALS),
        }
    )


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator, NaN (NULL) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _implied_win_prob(entries: pd.DataFrame) -> pd.Series:
    inverse_odds = 1.0 / entries["win_odds"]
    return inverse_odds / inverse_odds.groupby(entries["race_id"]).transform("sum")
