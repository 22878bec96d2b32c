"""The walk-forward backtest: each month's model learns only from the days before it."""

import numpy as np
import pandas as pd
import pytest

from feature_assets.training import walk_forward as wf
from tests.helpers import SMALL_FEATURES as FEATURES
from tests.helpers import SMALL_PARAMS as PARAMS


def _walk(table):
    return wf.walk_forward(table, FEATURES, PARAMS, 20, 1, 7, table["split"] == "test")


@pytest.fixture
def table(feature_table):
    return feature_table


def test_each_month_learns_only_from_the_days_before_it(table):
    months = _walk(table)
    test = table[table["split"] == "test"]
    assert [m.month for m in months] == [str(p) for p in wf.months_of(test["race_date"])]
    assert len(months) >= 3
    assert sum(len(m.rows) for m in months) == len(test)
    for month in months:
        start = pd.Period(month.month).start_time
        assert pd.Timestamp(month.last_training_day) < start
        assert month.training_rows == int((table["race_date"] < start).sum())
        assert (month.rows["race_date"].dt.to_period("M") == pd.Period(month.month)).all()
        sums = month.rows.groupby("race_id")["win_probability"].sum()
        assert np.allclose(sums, 1.0)


def test_later_results_change_nothing_of_a_month(table):
    """Scrambling every label from the second test month on leaves the first month's
    predictions as they were: no model saw a later month."""
    first, *later = _walk(table)
    cut = pd.Period(later[0].month).start_time
    scrambled = table.copy()
    after = scrambled["race_date"] >= cut
    scrambled.loc[after, "is_win"] = ~scrambled.loc[after, "is_win"]
    again = _walk(scrambled)
    pd.testing.assert_series_equal(first.rows["win_probability"], again[0].rows["win_probability"])
    assert not np.allclose(later[-1].rows["win_probability"], again[-1].rows["win_probability"])


def test_bets_worked_by_hand():
    rows = pd.DataFrame(
        {
            "race_date": pd.Timestamp("2025-01-01"),
            "race_id": [1, 1, 2, 2],
            "lane": [1, 2, 1, 2],
            "win_odds": [3.0, 1.5, 4.0, 1.25],
            "win_probability": [0.5, 0.5, 0.2, 0.8],
            "won": [True, False, False, True],
        }
    )
    rows["expected_return"] = rows["win_probability"] * rows["win_odds"] - 1
    figures = wf.betting(rows, kelly_fraction=0.5)
    # positive expected return: race 1 lane 1 (0.5), race 2 lane 2 (0.0 is not > 0)
    assert figures["bets"] == 1 and figures["hit_rate"] == 1.0
    assert figures["flat_return"] == pytest.approx(2.0)
    # Kelly: (0.5 x 3 - 1) / (3 - 1) = 0.25, halved: 0.125 of 1.0 staked, wins 2 x 0.125
    assert figures["kelly_bankroll"] == pytest.approx(1.25)
    assert figures["kelly_max_drawdown"] == 0.0 and figures["flat_max_drawdown"] == 0.0
    # takeout: race 1: 1 - 1 / (1/3 + 1/1.5) = 0; race 2: 1 - 1 / (1/4 + 1/1.25) = 0.0476...
    assert figures["implied_takeout"] == pytest.approx((0 + (1 - 1 / 1.05)) / 2)
