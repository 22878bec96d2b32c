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
_DAY_BITS = 22
# keys, and the label finish_position, copied from the entry
_PASS_THROUGH = [
    "race_id",
    "lane",
    "racer_id",
    "race_date",
    "venue_code",
    "race_no",
    "finish_position",
]
# the entry columns the features read
_ENTRY_COLUMNS = [
    "race_id",
    "race_date",
    "lane",
    "racer_id",
    "racer_class",
    "motor_no",
    "exhibition_time",
    "start_timing",
    "finish_position",
    "win_odds",
]  # day numbers since 1970 stay far below 2**22


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
    ].set_index("race_id")
    valid = entries.loc[entries["race_id"].isin(valid_races.index), _ENTRY_COLUMNS]
    race_of_entry = valid_races.reindex(valid["race_id"])
    valid["venue_code"] = race_of_entry["venue_code"].to_numpy()
    valid["race_no"] = race_of_entry["race_no"].to_numpy()
    valid["day"] = _day_numbers(valid["race_date"])
    history = _with_counts(valid)
    targets = valid[valid["race_date"].isin(target_days)].sort_values(
        ["race_date", "race_id", "lane"], ignore_index=True
    )
    del valid  # a ten-year range holds hundreds of MB here

    window = {
        family: _window_sums(history, targets, keys, width, counts)
        for family, (keys, width, counts) in _WINDOWED_FAMILIES.items()
    }
    racer = window["racer_90d"]
    finish = targets["finish_position"]
    features = {
        **{column: targets[column] for column in _PASS_THROUGH},
        "is_win": finish.eq(1).fillna(False).to_numpy(bool),
        "racer_starts_90d": racer["starts"],
        "racer_win_rate_90d": _ratio(racer["wins"], racer["starts"]),
        "racer_top2_rate_90d": _ratio(racer["top2"], racer["starts"]),
        "racer_avg_finish_90d": _ratio(racer["finish_sum"], racer["finish_n"]),
        "racer_avg_start_timing_90d": (
            _ratio(racer["start_timing_sum"], racer["start_timing_n"]) / 100.0
        ),
        "racer_lane_win_rate_365d": _ratio(
            window["racer_lane_365d"]["wins"], window["racer_lane_365d"]["starts"]
        ),
        "motor_top2_rate_180d": _ratio(
            window["motor_180d"]["top2"], window["motor_180d"]["starts"]
        ),
        "venue_lane_win_rate_365d": _ratio(
            window["venue_lane_365d"]["wins"], window["venue_lane_365d"]["starts"]
        ),
        "days_since_last_race": window["racer_365d"]["days_since_last"],
        "exhibition_time_rank": targets.groupby("race_id")["exhibition_time"].rank(
            method="min", ascending=True
        ),
        "implied_win_prob": _implied_win_prob(targets),
        "racer_class_ordinal": targets["racer_class"].map(CLASS_ORDINALS),
    }
    return typed_frame(features, RACE_FEATURES_COLUMNS)


def _day_numbers(dates: pd.Series) -> np.ndarray:
    return dates.to_numpy(dtype="datetime64[D]").astype(np.int64)


def _with_counts(entries: pd.DataFrame) -> pd.DataFrame:
    """Keys and per-entry integer counts that the windows sum (int32: small and exact)."""
    finish = entries["finish_position"]
    start_timing = entries["start_timing"]
    return pd.DataFrame(
        {
            "racer_id": entries["racer_id"].to_numpy(np.int64),
            "lane": entries["lane"].to_numpy(np.int64),
            "venue_code": entries["venue_code"].to_numpy(np.int64),
            "motor_no": entries["motor_no"].to_numpy(np.int64),
            "day": entries["day"],
            "starts": np.ones(len(entries), np.int32),
            "wins": finish.eq(1).fillna(False).to_numpy(np.int32),
            "top2": finish.isin([1, 2]).fillna(False).to_numpy(np.int32),
            "finish_sum": finish.fillna(0).to_numpy(np.int32),
            "finish_n": finish.notna().to_numpy(np.int32),
            "start_timing_sum": np.rint(start_timing.fillna(0).to_numpy() * 100).astype(np.int32),
            "start_timing_n": start_timing.notna().to_numpy(np.int32),
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
    key_codes = _shared_key_codes(history, targets, keys)
    history_codes, target_codes = key_codes[: len(history)], key_codes[len(history) :]

    # daily sums per key, sorted by (key, day): one position per (key, day)
    position = (history_codes << _DAY_BITS) | history["day"].to_numpy(np.int64)
    order = np.argsort(position, kind="stable")
    sorted_position = position[order]
    starts = np.flatnonzero(np.r_[True, sorted_position[1:] != sorted_position[:-1]])
    daily_position = sorted_position[starts]
    daily_day = daily_position & ((1 << _DAY_BITS) - 1)

    target_day = targets["day"].to_numpy(np.int64)
    first = np.searchsorted(daily_position, (target_codes << _DAY_BITS) | (target_day - width))
    after_last = np.searchsorted(daily_position, (target_codes << _DAY_BITS) | target_day)

    sums: dict[str, np.ndarray] = {}
    for name in counts:
        daily = (
            np.add.reduceat(history[name].to_numpy()[order], starts, dtype=np.int64)
            if len(starts)
            else np.zeros(0, np.int64)
        )
        running = np.concatenate([[0], np.cumsum(daily)])
        sums[name] = running[after_last] - running[first]
    seen = after_last > first
    latest = np.append(daily_day, 0)[after_last - 1]  # index -1 (nothing seen) is masked
    days_since_last = pd.array(target_day - latest, dtype="Int64")
    days_since_last[~seen] = pd.NA
    sums["days_since_last"] = days_since_last
    return sums


def _shared_key_codes(
    history: pd.DataFrame, targets: pd.DataFrame, keys: Sequence[str]
) -> np.ndarray:
    """Dense integer codes of the key columns, shared by history rows then target rows."""
    codes = np.zeros(len(history) + len(targets), np.int64)
    for key in keys:
        values = np.concatenate([history[key].to_numpy(np.int64), targets[key].to_numpy(np.int64)])
        key_codes, uniques = pd.factorize(values)
        codes = codes * len(uniques) + key_codes
    return pd.factorize(codes)[0].astype(np.int64)


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
