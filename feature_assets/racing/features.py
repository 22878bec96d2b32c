"""The contract's race features, vectorised, for one day or any range of days.

Every history feature is a sum over a trailing window of calendar days `[D - W, D - 1]`.
Entries are first summed per (key, day); a running total over those daily sums, sorted by
(key, day), turns each window into the difference of two positions found by binary search.
One pass serves one day or ten years alike, and no Python loop touches a row.

Sums are kept in integers (start timings in hundredths, as DECIMAL(4,2) stores them), so a
day gives the same bits whether it is computed alone or inside a range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from feature_assets.racing.quality import InvalidRacesError, find_invalid_races
from feature_assets.racing.schema import RACE_FEATURES_COLUMNS, typed_frame

HISTORY_DAYS = 365
CLASS_ORDINALS = {"A1": 4, "A2": 3, "B1": 2, "B2": 1}

# key columns, window in days, and the per-entry counts summed over the window
_WINDOWED_FAMILIES: dict[str, tuple[list[str], int, list[str]]] = {
    "racer_90d": (
        ["racer_id"],
        90,
        ["starts", "wins", "top2", "finish_sum", "finish_n", "start_timing_sum", "start_timing_n"],
    ),
    "racer_lane_365d": (["racer_id", "lane"], 365, ["starts", "wins"]),
    "motor_180d": (["venue_code", "motor_no"], 180, ["starts", "top2"]),
    "venue_lane_365d": (["venue_code", "lane"], 365, ["starts", "wins"]),
    "racer_365d": (["racer_id"], 365, ["starts"]),
}
_DAY_BITS = 22  # day numbers since 1970 stay far below 2**22


def compute_race_features(
    races: pd.DataFrame, entries: pd.DataFrame, days: Iterable[str | pd.Timestamp]
) -> pd.DataFrame:
    """Features for every entry of the races held on `days`, sorted by (race_date, race_id, lane).

    `races` and `entries` hold the snapshot (contract columns, `race_date` on both) of at
    least `[min(days) - 365, max(days)]`; other rows are ignored. Invalid races never enter
    a history window. Raises `InvalidRacesError` naming every invalid race when any of
    `days` has one; a range with an invalid day gives no rows at all.
    """
    target_days = pd.DatetimeIndex(pd.to_datetime(list(days))).normalize()
    violations = find_invalid_races(races, entries)
    on_target_days = violations["race_date"].isin(target_days)
    if on_target_days.any():
        raise InvalidRacesError(violations[on_target_days].reset_index(drop=True))

    valid_races = races.loc[
        ~races["race_id"].isin(violations["race_id"]), ["race_id", "venue_code", "race_no"]
    ]
    valid = entries.merge(valid_races, on="race_id", how="inner")
    valid["day"] = _day_numbers(valid["race_date"])
    history = _with_counts(valid)
    targets = valid[valid["race_date"].isin(target_days)].sort_values(
        ["race_date", "race_id", "lane"], ignore_index=True
    )

    window = {
        family: _window_sums(history, targets, keys, width, counts)
        for family, (keys, width, counts) in _WINDOWED_FAMILIES.items()
    }
    racer = window["racer_90d"]
    features = targets[
        ["race_id", "lane", "racer_id", "race_date", "venue_code", "race_no", "finish_position"]
    ].copy()
    features["is_win"] = targets["finish_position"].eq(1).fillna(False).astype(bool)
    features["racer_starts_90d"] = racer["starts"]
    features["racer_win_rate_90d"] = _ratio(racer["wins"], racer["starts"])
    features["racer_top2_rate_90d"] = _ratio(racer["top2"], racer["starts"])
    features["racer_avg_finish_90d"] = _ratio(racer["finish_sum"], racer["finish_n"])
    features["racer_avg_start_timing_90d"] = (
        _ratio(racer["start_timing_sum"], racer["start_timing_n"]) / 100.0
    )
    features["racer_lane_win_rate_365d"] = _ratio(
        window["racer_lane_365d"]["wins"], window["racer_lane_365d"]["starts"]
    )
    features["motor_top2_rate_180d"] = _ratio(
        window["motor_180d"]["top2"], window["motor_180d"]["starts"]
    )
    features["venue_lane_win_rate_365d"] = _ratio(
        window["venue_lane_365d"]["wins"], window["venue_lane_365d"]["starts"]
    )
    features["days_since_last_race"] = window["racer_365d"]["days_since_last"]
    features["exhibition_time_rank"] = targets.groupby("race_id")["exhibition_time"].rank(
        method="min", ascending=True
    )
    features["implied_win_prob"] = _implied_win_prob(targets)
    features["racer_class_ordinal"] = targets["racer_class"].map(CLASS_ORDINALS)
    return typed_frame(features, RACE_FEATURES_COLUMNS)


def _day_numbers(dates: pd.Series) -> np.ndarray:
    return dates.to_numpy(dtype="datetime64[D]").astype(np.int64)


def _with_counts(entries: pd.DataFrame) -> pd.DataFrame:
    """Per-entry integer counts that the windows sum."""
    finish = entries["finish_position"]
    start_timing = entries["start_timing"]
    return pd.DataFrame(
        {
            "racer_id": entries["racer_id"].to_numpy(np.int64),
            "lane": entries["lane"].to_numpy(np.int64),
            "venue_code": entries["venue_code"].to_numpy(np.int64),
            "motor_no": entries["motor_no"].to_numpy(np.int64),
            "day": entries["day"],
            "starts": 1,
            "wins": finish.eq(1).fillna(False).to_numpy(np.int64),
            "top2": finish.isin([1, 2]).fillna(False).to_numpy(np.int64),
            "finish_sum": finish.fillna(0).to_numpy(np.int64),
            "finish_n": finish.notna().to_numpy(np.int64),
            "start_timing_sum": np.rint(start_timing.fillna(0).to_numpy() * 100).astype(np.int64),
            "start_timing_n": start_timing.notna().to_numpy(np.int64),
        }
    )


def _window_sums(
    history: pd.DataFrame,
    targets: pd.DataFrame,
    keys: Sequence[str],
    width: int,
    counts: Sequence[str],
) -> dict[str, np.ndarray]:
    """For each target row: the sums of `counts` over history rows with the same `keys`
    and a day in [day - width, day - 1], and the days since the latest such row."""
    key_codes = _shared_key_codes(history[list(keys)], targets[list(keys)])
    history_codes, target_codes = key_codes[: len(history)], key_codes[len(history) :]

    daily = (
        pd.DataFrame({"code": history_codes, "day": history["day"].to_numpy()})
        .join(history[list(counts)].reset_index(drop=True))
        .groupby(["code", "day"], sort=True)
        .sum()
    )
    daily_code = daily.index.get_level_values("code").to_numpy(np.int64)
    daily_day = daily.index.get_level_values("day").to_numpy(np.int64)
    position = (daily_code << _DAY_BITS) | daily_day

    target_day = targets["day"].to_numpy(np.int64)
    first = np.searchsorted(position, (target_codes << _DAY_BITS) | (target_day - width), "left")
    after_last = np.searchsorted(position, (target_codes << _DAY_BITS) | target_day, "left")

    sums: dict[str, np.ndarray] = {}
    for name in counts:
        running = np.concatenate([[0], np.cumsum(daily[name].to_numpy(np.int64))])
        sums[name] = running[after_last] - running[first]
    seen = after_last > first
    latest = np.append(daily_day, 0)[after_last - 1]  # index -1 (nothing seen) is masked
    days_since_last = pd.array(target_day - latest, dtype="Int64")
    days_since_last[~seen] = pd.NA
    sums["days_since_last"] = days_since_last
    return sums


def _shared_key_codes(history_keys: pd.DataFrame, target_keys: pd.DataFrame) -> np.ndarray:
    both = pd.concat([history_keys, target_keys], ignore_index=True)
    return both.groupby(list(both.columns), sort=False).ngroup().to_numpy(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN (NULL) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _implied_win_prob(targets: pd.DataFrame) -> pd.Series:
    inverse_odds = 1.0 / targets["win_odds"]
    return inverse_odds / inverse_odds.groupby(targets["race_id"]).transform("sum")
