"""The vectorised features against the per-row reference, and their point-in-time behaviour."""

import datetime as dt

import pandas as pd
import pytest

from feature_assets.core.schema import RACE_FEATURES_COLUMNS
from tests import reference
from tests.reference import compute_race_features

HISTORY_FEATURES = [
    "racer_starts_90d",
    "racer_win_rate_90d",
    "racer_top2_rate_90d",
    "racer_avg_finish_90d",
    "racer_avg_start_timing_90d",
    "racer_lane_win_rate_365d",
    "motor_top2_rate_180d",
    "venue_lane_win_rate_365d",
    "days_since_last_race",
]


def _day(offset: int) -> str:
    return (dt.date(2024, 1, 1) + dt.timedelta(days=offset)).isoformat()


def _valid_days(data, offsets):
    invalid = {str(race_id)[:8] for race_id in data.invalid_race_ids}
    return [_day(o) for o in offsets if _day(o).replace("-", "") not in invalid]


@pytest.fixture(scope="module")
def reference_rows(history_data):
    return reference.rows_of(history_data.races), reference.rows_of(history_data.entries)


def test_dataset_exercises_the_hard_cases(history_data):
    entries = history_data.entries
    for column in ["exhibition_time", "start_timing", "finish_position", "win_odds", "racer_age"]:
        assert entries[column].isna().any(), column
    assert entries.duplicated(["race_id", "exhibition_time"]).any(), "no exhibition-time ties"
    assert (entries.groupby(["race_date", "racer_id"]).size() >= 2).any(), "no double races"
    assert (entries.groupby("race_id").size() < 6).any(), "no race with an empty lane"
    assert history_data.invalid_race_ids


def test_features_match_the_per_row_reference(history_data, reference_rows):
    races, entries = reference_rows
    # first days (no or little history), the first year, after invalid days, past a year
    offsets = [0, 1, 2, 7, 45, 91, 180, 250, 364, 365, 366, 400, 429]
    offsets += [
        int((pd.Timestamp(str(r)[:8]) - pd.Timestamp("2024-01-01")).days) + 1
        for r in list(history_data.invalid_race_ids)[:4]
    ]
    days = _valid_days(history_data, sorted(set(offsets)))
    computed = compute_race_features(history_data.races, history_data.entries, days)
    for day in days:
        got = reference.rows_of(computed[computed["race_date"] == day])
        want = reference.features_of_day(races, entries, dt.date.fromisoformat(day))
        assert want, f"no rows on {day}"
        assert reference.mismatches(got, want) == [], day


def test_types_follow_the_contract(history_data):
    features = compute_race_features(history_data.races, history_data.entries, [_day(100)])
    assert dict(features.dtypes) == {
        k: pd.api.types.pandas_dtype(v) for k, v in RACE_FEATURES_COLUMNS.items()
    }
    assert features["racer_starts_90d"].notna().all()
    assert features[["race_id", "lane"]].equals(
        features[["race_id", "lane"]].sort_values(["race_id", "lane"], ignore_index=True)
    )


def test_a_day_alone_and_inside_a_range_are_identical(history_data):
    days = _valid_days(history_data, range(355, 385))
    ranged = compute_race_features(history_data.races, history_data.entries, days)
    alone = pd.concat(
        [compute_race_features(history_data.races, history_data.entries, [d]) for d in days],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(ranged, alone)
    # only the 365-day history window matters, not what else was loaded
    window = history_data.races["race_date"] >= pd.Timestamp(days[-1]) - pd.Timedelta(days=365)
    races = history_data.races[window]
    entries = history_data.entries[history_data.entries["race_id"].isin(races["race_id"])]
    pd.testing.assert_frame_equal(
        compute_race_features(races, entries, days[-1:]),
        ranged[ranged["race_date"] == days[-1]].reset_index(drop=True),
    )


def test_nothing_from_the_day_or_later_leaks_in(history_data):
    day = pd.Timestamp(_valid_days(history_data, [300])[0])
    before = compute_race_features(history_data.races, history_data.entries, [day])
    changed = history_data.entries.copy()
    later = changed["race_date"] >= day
    changed.loc[later, "finish_position"] = 6 - changed.loc[later, "finish_position"] + 1
    changed.loc[later, "start_timing"] = 0.99
    after = compute_race_features(history_data.races, changed, [day])
    pd.testing.assert_frame_equal(before[HISTORY_FEATURES], after[HISTORY_FEATURES])
    assert not before["finish_position"].equals(after["finish_position"])


def test_invalid_races_never_enter_a_history_window(history_data):
    bad_race = min(history_data.invalid_race_ids)
    bad_day = pd.Timestamp(str(bad_race)[:8])
    days = [d for d in _valid_days(history_data, range(0, 430)) if pd.Timestamp(d) > bad_day][:20]
    with_bad = compute_race_features(history_data.races, history_data.entries, days)
    keep = history_data.entries["race_id"] != bad_race
    without_bad = compute_race_features(
        history_data.races[history_data.races["race_id"] != bad_race],
        history_data.entries[keep],
        days,
    )
    pd.testing.assert_frame_equal(with_bad, without_bad)


def test_a_day_without_races_gives_an_empty_table_with_the_full_schema(history_data):
    features = compute_race_features(history_data.races, history_data.entries, ["2030-01-01"])
    assert features.empty
    assert list(features.columns) == list(RACE_FEATURES_COLUMNS)
    assert dict(features.dtypes) == {
        k: pd.api.types.pandas_dtype(v) for k, v in RACE_FEATURES_COLUMNS.items()
    }
