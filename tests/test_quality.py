"""The invalid-race rules, against the per-row reference and one rule at a time."""

import datetime as dt

import pytest

from feature_assets.core import quality
from feature_assets.io import synthetic
from tests import reference
from tests.reference import compute_race_features

RULE_NAMES = {
    quality.VENUE_RULE: "venue",
    quality.RACE_NO_RULE: "race_no",
    quality.LANE_RULE: "lane",
    quality.FINISH_RULE: "finish",
    quality.CLASS_RULE: "class",
    quality.ODDS_RULE: "odds",
    quality.UNIQUE_LANE_RULE: "unique_lane",
    quality.UNIQUE_RACER_RULE: "unique_racer",
}


def test_invalid_races_match_the_reference(history_data):
    found = quality.find_invalid_races(history_data.races, history_data.entries)
    got = {
        race_id: {RULE_NAMES[rule] for rule in rules}
        for race_id, rules in found.groupby("race_id")["rule"]
    }
    expected = reference.invalid_races(
        reference.rows_of(history_data.races), reference.rows_of(history_data.entries)
    )
    assert got == expected
    assert len(got) == 16


@pytest.mark.parametrize("rule", quality.RULES)
def test_each_rule_is_named_with_its_day_and_race(rule):
    data = synthetic.generate(dt.date(2024, 1, 1), days=3, races_per_day=12, seed=3)
    races, entries = data.races.copy(), data.entries.copy()
    race_id = int(races["race_id"].iloc[15])
    rows = entries.index[entries["race_id"] == race_id]
    if rule == quality.UNIQUE_LANE_RULE:
        entries.loc[rows[0], "lane"] = entries.loc[rows[1], "lane"]
    else:
        synthetic._break_rule(races, entries, race_id, rule)
    day = races.loc[races["race_id"] == race_id, "race_date"].iloc[0].strftime("%Y-%m-%d")

    with pytest.raises(quality.InvalidRacesError) as raised:
        compute_race_features(races, entries, [day])

    message = str(raised.value)
    assert f"{day}:" in message and f"race_id {race_id}: {rule}" in message
    assert raised.value.invalid_days == [day]


def test_a_null_where_the_schema_forbids_it_breaks_the_rule():
    data = synthetic.generate(dt.date(2024, 1, 1), days=1, races_per_day=12, seed=3)
    entries = data.entries.copy()
    entries.loc[0, "racer_class"] = None
    found = quality.find_invalid_races(data.races, entries)
    assert found["rule"].tolist() == [quality.CLASS_RULE]


def test_a_range_names_every_invalid_day(history_data):
    days = [d.strftime("%Y-%m-%d") for d in history_data.races["race_date"].drop_duplicates()]
    with pytest.raises(quality.InvalidRacesError) as raised:
        compute_race_features(history_data.races, history_data.entries, days)
    message = str(raised.value)
    for race_id, rule in history_data.invalid_race_ids.items():
        assert f"race_id {race_id}: {rule}" in message
    assert len(raised.value.invalid_days) == len(
        {str(race_id)[:8] for race_id in history_data.invalid_race_ids}
    )


def test_a_dead_heat_is_a_result_and_each_boat_of_one_for_first_wins(history_data):
    """The generated data holds dead heats, as official results do: no rule breaks on them,
    and the features count each boat sharing 1st as a winner."""
    entries = history_data.entries.dropna(subset=["finish_position"])
    shared = entries[entries.duplicated(["race_id", "finish_position"], keep=False)]
    assert shared["race_id"].nunique() >= 10
    found = quality.find_invalid_races(history_data.races, history_data.entries)
    assert not set(shared["race_id"]) - set(history_data.invalid_race_ids) & set(found["race_id"])
    first = shared[shared["finish_position"] == 1]
    assert first["race_id"].nunique() >= 1
    race_id = int(first["race_id"].iloc[0])
    day = history_data.races.set_index("race_id").loc[race_id, "race_date"]
    features = compute_race_features(
        history_data.races, history_data.entries, [day.strftime("%Y-%m-%d")]
    )
    of_race = features[features["race_id"] == race_id]
    assert of_race["is_win"].sum() == 2
