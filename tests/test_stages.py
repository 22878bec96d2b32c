"""Stages: a set sees day D's columns known at the stage it declares (card, close), never D's
results; history holds every column. Read from a real MariaDB source through the assets."""

import dataclasses
import datetime as dt

import pandas as pd
import pytest
from dagster import instance_for_test

from feature_assets.core import schema
from feature_assets.core.engine import run_days
from feature_assets.core.feature_set import FeatureSetDefinitionError, per_day, per_race
from feature_assets.feature_sets import registered_sets
from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import materialize_days

CARD = frozenset(c for c, stage in schema.KNOWN_AT.items() if stage == "card")
CLOSE = frozenset(c for c, stage in schema.KNOWN_AT.items() if stage == "close")
RESULT = frozenset(c for c, stage in schema.KNOWN_AT.items() if stage == "result")


def _seen(frame: pd.DataFrame, row: dict) -> dict:
    return {"day_columns": ",".join(sorted({*frame.columns, *row}))}


@per_day(history_days=2, columns={"day_columns": "string", "history_columns": "string"})
def sees_at_card(day, history):
    seen = ",".join(sorted({*day.entries.columns, *day.races.columns}))
    return pd.DataFrame(
        {"day_columns": seen, "history_columns": ",".join(sorted(history.entries.columns))},
        index=day.entries.index,
    )


sees_at_close = dataclasses.replace(sees_at_card, name="sees_at_close", stage="close")


@per_race(history_days=2, columns={"day_columns": "string"})
def race_sees_at_card(race, history):
    return [_seen(race.entries, race.row) for _ in race.each_entry()]


def _columns(text: str) -> set[str]:
    return frozenset(text.split(","))


@pytest.mark.integration
def test_each_stage_sees_only_its_columns_of_the_day_from_mariadb(mysql_server, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=4, races_per_day=3, seed=5)
    storage = str(tmp_path / "parquet")
    sets = [sees_at_card, sees_at_close, race_sees_at_card]
    first, last = FIRST_DAY.isoformat(), (FIRST_DAY + dt.timedelta(days=3)).isoformat()
    with fresh_mysql_database(mysql_server) as url, instance_for_test() as instance:
        synthetic.load(url, data)
        assert materialize_days(url, storage, instance, sets, first, last).success
    lake = DailyParquetStorage(storage)
    days = [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(4)]
    card = lake.read_days("sees_at_card", days)
    close = lake.read_days("sees_at_close", days)
    per_race_card = lake.read_days("race_sees_at_card", days)
    assert len(card) == len(close) == len(per_race_card) == len(data.entries)
    assert {*map(_columns, card["day_columns"])} == {CARD}
    assert {*map(_columns, per_race_card["day_columns"])} == {CARD}
    assert {*map(_columns, close["day_columns"])} == {CARD | CLOSE}
    later = card[card["race_date"] > pd.Timestamp(first)]  # the first day has no history
    for seen in map(_columns, later["history_columns"]):
        assert seen >= CARD | CLOSE | RESULT


def test_a_set_cannot_declare_the_result_stage():
    with pytest.raises(FeatureSetDefinitionError, match="stage must be one of"):
        per_day(history_days=1, columns={"x": "int"}, stage="result")(lambda d, h: None)


def test_the_example_sets_declare_their_stage_honestly(history_data):
    """A set declared `close` needs it (at `card` it fails or gives other values); a set
    declared `card` gives the same values at `close`."""
    days = [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in (200, 201)]
    for feature_set in registered_sets():
        other = "card" if feature_set.stage == "close" else "close"
        declared, changed = (
            run_days(s, history_data.races, history_data.entries, days)
            for s in (feature_set, dataclasses.replace(feature_set, stage=other))
        )
        assert all(o.ok for o in declared), feature_set.name
        same = all(o.ok for o in changed) and all(
            a.rows.equals(b.rows) for a, b in zip(declared, changed, strict=True)
        )
        assert same == (feature_set.stage == "card"), feature_set.name


def test_a_card_set_asking_for_the_odds_of_its_day_fails_saying_which_stage_has_them():
    @per_race(history_days=1, columns={"odds": "float"})
    def wants_odds(race, history):
        return [{"odds": entry.win_odds} for entry in race.each_entry()]

    data = synthetic.generate(FIRST_DAY, days=2, races_per_day=2, seed=1)
    [outcome] = run_days(wants_odds, data.races, data.entries, [FIRST_DAY.isoformat()])
    assert not outcome.ok and "race_id" in outcome.error
    assert "win_odds of day D is known only at stage close" in outcome.error
    assert 'declare stage="close"' in outcome.error
