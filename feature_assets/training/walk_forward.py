"""A walk-forward backtest: each month of the test period scored by a model that saw only the
days before that month, and bet on as a bettor would.

For each calendar month M of the test period, a model with the tuned parameters and the final
model's number of rounds is trained on every day before M's first day (earlier test months
included: that is what a bettor retraining monthly would have had) and scores M. Its scores
are normalised per race (a softmax for a ranking model), not calibrated: a calibration per
month would need a second held-out period and a second training per month. Cost: one
training per month of the test period, each on all the days before it (the benchmark prints
it).

Bets, at the final odds (the only odds the source keeps, later than any real bet), on every
entry whose expected return is positive: a flat unit stake, and fractional Kelly (the Kelly
stake `(p x odds - 1) / (odds - 1)` of the bankroll, times `kelly_fraction`, the bankroll
updated after each race). The odds already pay out after the operator's takeout; the takeout
they imply (`1 - 1 / sum(1 / odds)` of a race) is reported beside the returns.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from feature_assets.training import live, model
from feature_assets.training.data import LABEL, ODDS

KELLY_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class Month:
    month: str  # YYYY-MM
    last_training_day: str  # the latest day the month's model learnt from
    training_rows: int
    seconds: float  # training and scoring
    rows: pd.DataFrame  # the month's entries with probability, odds, won


def months_of(days: pd.Series) -> list[pd.Period]:
    return sorted(days.dt.to_period("M").unique())


def walk_forward(
    table: pd.DataFrame,
    features: list[str],
    params: dict,
    rounds: int,
    threads: int,
    seed: int,
    test: pd.Series,
    objective: str = "binary",
) -> list[Month]:
    """The months of the rows selected by `test` (a boolean mask of `table`), each scored by
    a model trained on the rows dated before it."""
    params = {**model.fixed_params(threads, seed, objective), **params}
    uncalibrated = model.Calibration("softmax" if objective == "lambdarank" else "platt")
    scored = []
    for month in months_of(table.loc[test, "race_date"]):
        started = time.perf_counter()
        first_day = month.start_time
        learnt_from = table[table["race_date"] < first_day]
        of_month = table[test & (table["race_date"].dt.to_period("M") == month)]
        training = model.dataset(learnt_from, features, objective=objective)
        booster = model.fit(params, training, rounds=rounds)
        probabilities = model.race_probabilities(booster, of_month, features, uncalibrated)
        rows = of_month[["race_date", "race_id", "lane", ODDS]].assign(
            win_probability=probabilities, won=of_month[LABEL].to_numpy(bool)
        )
        scored.append(
            Month(
                str(month),
                str(learnt_from["race_date"].max().date()),
                len(learnt_from),
                time.perf_counter() - started,
                live.with_bets(rows),
            )
        )
    return scored


def betting(rows: pd.DataFrame, kelly_fraction: float = KELLY_FRACTION) -> dict:
    """Flat stake and fractional Kelly on the positive-expected-return entries of `rows`."""
    bets = rows[(rows["expected_return"] > 0) & rows[ODDS].notna()].sort_values(
        ["race_date", "race_id", "lane"]
    )
    flat = np.where(bets["won"], bets[ODDS] - 1, -1.0)
    flat_curve = np.cumsum(flat)
    bankroll, curve = 1.0, []
    for _, race in bets.groupby(["race_date", "race_id"], sort=True):
        odds, p = race[ODDS].to_numpy(), race["win_probability"].to_numpy()
        stakes = kelly_fraction * np.clip((p * odds - 1) / (odds - 1), 0, 1) * bankroll
        stakes *= min(1.0, bankroll / stakes.sum()) if stakes.sum() > 0 else 1.0
        bankroll += float((np.where(race["won"], odds - 1, -1.0) * stakes).sum())
        curve.append(bankroll)
    return {
        "bets": int(len(bets)),
        "hit_rate": float(bets["won"].mean()) if len(bets) else np.nan,
        "flat_return": float(flat.sum() / len(bets)) if len(bets) else np.nan,
        "flat_max_drawdown": _max_fall(np.r_[0.0, flat_curve]),
        "kelly_bankroll": bankroll,
        "kelly_max_drawdown": _max_fall_share(np.r_[1.0, curve]),
        "implied_takeout": implied_takeout(rows),
    }


def _max_fall(curve: np.ndarray) -> float:
    """The largest fall of `curve` from an earlier peak, in its own units."""
    return float((np.maximum.accumulate(curve) - curve).max())


def _max_fall_share(bankroll: np.ndarray) -> float:
    """The largest fall of a bankroll from an earlier peak, as a share of that peak."""
    peaks = np.maximum.accumulate(bankroll)
    return float(((peaks - bankroll) / peaks).max())


def implied_takeout(rows: pd.DataFrame) -> float:
    """The operator's share the odds imply, averaged over races with odds for every entry."""
    full = rows.groupby("race_id")[ODDS].agg(lambda odds: odds.notna().all() and len(odds) > 1)
    priced = rows[rows["race_id"].isin(full[full].index)]
    if priced.empty:
        return np.nan
    overround = (1 / priced[ODDS]).groupby(priced["race_id"]).sum()
    return float((1 - 1 / overround).mean())
