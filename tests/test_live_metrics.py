"""The race-day figures on data whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from feature_assets.training import live
from feature_assets.training.model import Calibration


def test_platt_calibration_recovers_a_known_distortion():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.02, 0.9, 200_000)
    won = rng.uniform(size=truth.size) < truth
    logit = np.log(truth / (1 - truth))
    scores = 1 / (1 + np.exp(-(logit - 0.4) / 2))  # an overconfident-shy, shifted model
    fitted = Calibration.fit(scores, won, np.arange(scores.size), "platt")
    assert fitted.slope == pytest.approx(2.0, rel=0.03)
    assert fitted.intercept == pytest.approx(0.4, abs=0.03)
    assert np.allclose(fitted.apply(scores), truth, atol=0.02)
    assert np.array_equal(np.argsort(fitted.apply(scores)), np.argsort(scores))  # order kept


def _rows(p, won, odds, race_ids):
    rows = pd.DataFrame(
        {
            "race_date": pd.Timestamp("2025-01-01"),
            "race_id": race_ids,
            "lane": np.arange(len(p)) + 1,
            "win_probability": p,
            "win_odds": odds,
            "won": won,
        }
    )
    return live.with_bets(rows)


def test_figures_of_two_races_worked_by_hand():
    rows = _rows(
        p=[0.6, 0.3, 0.1, 0.5, 0.5],
        won=[False, True, False, True, False],
        odds=[1.5, 4.0, 9.0, 2.5, np.nan],
        race_ids=[1, 1, 1, 2, 2],
    )
    figures = live.metrics(rows, threshold=0.1)
    assert figures["races"] == 2
    assert figures["winner_log_loss"] == pytest.approx(-(np.log(0.3) + np.log(0.5)) / 2)
    assert (
        figures["top_pick_hit_rate"] == 0.5
    )  # race 1: lane 1 lost; race 2: lane 4 (tie, first) won
    # top picks with odds: lane 1 (1.5, lost), lanes 4 and 5 tie at rank 1 -> first kept: 2.5 won
    assert figures["top_pick_bets"] == 2 and figures["top_pick_return"] == pytest.approx(0.25)
    # value bets: expected return > 0.1: lane 2 (0.3 x 4 - 1 = 0.2) won, lane 4 (0.25) won
    assert figures["value_bets"] == 2 and figures["value_return"] == pytest.approx(
        (4 + 2.5) / 2 - 1
    )
    assert figures["favourite_hit_rate"] == 0.5  # lane 1 (1.5) lost, lane 4 (2.5) won
    # bins: 0.6 -> [0.6,0.7) lost; 0.3 won; 0.1 lost; both 0.5 in one bin, one won
    assert figures["ece"] == pytest.approx((0.6 + 0.7 + 0.1 + 0.0) / 5)


def test_a_dead_heat_for_first_counts_both_winners_and_pays_each_at_its_odds():
    """Two boats share 1st: both are positives of the log loss, each is a winner of the
    winners' log loss, and a bet on either is paid at its own odds (full stake)."""
    rows = _rows(
        p=[0.5, 0.3, 0.2],
        won=[True, True, False],
        odds=[1.8, 3.0, 5.0],
        race_ids=[1, 1, 1],
    )
    figures = live.metrics(rows, threshold=-0.2)
    expected = -(np.log(0.5) + np.log(0.3) + np.log(0.8)) / 3
    assert figures["log_loss"] == pytest.approx(expected)
    assert figures["winner_log_loss"] == pytest.approx(-(np.log(0.5) + np.log(0.3)) / 2)
    assert figures["top_pick_hit_rate"] == 1.0 and figures["top_pick_return"] == pytest.approx(0.8)
    # value bets: lane 1 (0.5 x 1.8 - 1 = -0.1), lane 2 (-0.1), lane 3 (0.0): all three
    assert figures["value_bets"] == 3
    assert figures["value_return"] == pytest.approx((1.8 + 3.0) / 3 - 1)
