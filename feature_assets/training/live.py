"""Live predictions against what happened, measured as the backtest is.

A day's predictions joined with its stored results give one row per predicted entry that ran
(`won`); races without a winner (all NULL, e.g. cancelled) are left out. `metrics` measures
rows of any number of days the same way for live days and for the model's test split: log
loss and AUC of the per-race probabilities, the log loss of each race's winner alone
(`winner_log_loss`, the mean of -log p(winner)), the expected calibration error (`ece`), how
often the top pick and the market favourite (lowest odds) win, and the net return per unit
staked (0 = break even) of two rules: a flat stake on each race's top pick, and a flat stake
on every entry whose expected return at the odds exceeds `threshold`. Live rows bet at the
card's odds; the backtest at the final odds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from feature_assets.training import inline_chart

KEYS = ["race_id", "lane"]
THRESHOLD = 0.1  # a value bet: expected return above 10 % of the stake


def outcomes(predicted: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The predictions of a day with `won`, for the entries that ran in races with a winner."""
    joined = predicted.merge(results[[*KEYS, "finish_position"]], on=KEYS, how="inner")
    joined["won"] = joined["finish_position"].eq(1).fillna(False).astype(bool)
    has_winner = joined.groupby("race_id")["won"].transform("any")
    columns = ["race_date", *KEYS, "win_probability", "rank", "win_odds", "expected_return"]
    return joined.loc[has_winner, [*columns, "won"]].reset_index(drop=True)


def with_bets(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (with win_probability and win_odds) with each entry's rank in its race (1 = most
    likely) and the expected net return of a unit win bet at the odds."""
    ranks = rows.groupby("race_id")["win_probability"].rank(method="min", ascending=False)
    return rows.assign(
        rank=ranks.astype("Int64"),
        expected_return=rows["win_probability"] * rows["win_odds"] - 1,
    )


def backtest(test: pd.DataFrame, probabilities: pd.Series) -> pd.DataFrame:
    """The model's test split as `outcomes` gives live days (at the final odds)."""
    rows = test[["race_date", *KEYS, "win_odds"]].assign(
        win_probability=probabilities, won=test["is_win"].to_numpy(bool)
    )
    rows = with_bets(rows)
    return rows[rows.groupby("race_id")["won"].transform("any")].reset_index(drop=True)


def backtest_record(test: pd.DataFrame, probabilities: pd.Series) -> dict:
    """What the model records of its test split: its `metrics`, and per race day the entries
    and summed log loss (from which any window's range is computed)."""
    rows = backtest(test, probabilities)
    by_day = daily(rows)
    return {
        "metrics": metrics(rows),
        "daily": {str(day.date()): [int(r.entries), float(r.loss)] for day, r in by_day.iterrows()},
    }


def recorded_daily(record: dict) -> pd.DataFrame:
    """`daily` of a `backtest_record`."""
    days = record["daily"]
    return pd.DataFrame(
        {"entries": [v[0] for v in days.values()], "loss": [v[1] for v in days.values()]},
        index=pd.to_datetime(list(days)),
    )


def metrics(rows: pd.DataFrame, threshold: float = THRESHOLD) -> dict:
    """The figures of `rows` (columns of `outcomes`); NaN where a figure has no data."""
    won = rows["won"].to_numpy(bool)
    p = np.clip(rows["win_probability"].to_numpy("float64"), 1e-15, 1 - 1e-15)
    picks = rows[rows["rank"] == 1].drop_duplicates("race_id")
    with_odds = rows.dropna(subset=["win_odds"])
    favourites = with_odds.loc[with_odds.groupby("race_id")["win_odds"].idxmin()]
    value = rows[rows["expected_return"] > threshold]
    winners = p[won]
    return {
        "races": int(rows["race_id"].nunique()),
        "log_loss": float(log_loss(won, p, labels=[False, True])) if len(rows) else np.nan,
        "winner_log_loss": float(-np.log(winners).mean()) if len(winners) else np.nan,
        "ece": expected_calibration_error(p, won),
        "auc": float(roc_auc_score(won, p)) if 0 < won.sum() < len(won) else np.nan,
        "top_pick_hit_rate": float(picks["won"].mean()) if len(picks) else np.nan,
        "favourite_hit_rate": float(favourites["won"].mean()) if len(favourites) else np.nan,
        **_flat_stake("top_pick", picks.dropna(subset=["win_odds"])),
        **_flat_stake("value", value),
    }


def expected_calibration_error(p: np.ndarray, won: np.ndarray, bins: int = 10) -> float:
    """The entries' mean distance between predicted and observed win rate, over `bins` equal
    bins of predicted probability, weighted by the entries in each."""
    if not len(p):
        return np.nan
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=p - won, minlength=bins)
    return float(np.abs(gap).sum() / counts.sum())


def _flat_stake(rule: str, bets: pd.DataFrame) -> dict:
    paid = float((bets["win_odds"] * bets["won"]).sum())
    return {
        f"{rule}_bets": int(len(bets)),
        f"{rule}_return": paid / len(bets) - 1 if len(bets) else np.nan,
    }


def daily(rows: pd.DataFrame) -> pd.DataFrame:
    """Per race day: entries, log loss (summed, to be windowed), and the units won and staked
    on the top picks."""
    p = np.clip(rows["win_probability"].to_numpy("float64"), 1e-15, 1 - 1e-15)
    won = rows["won"].to_numpy(bool)
    frame = pd.DataFrame(
        {
            "race_date": rows["race_date"].to_numpy(),
            "loss": -np.where(won, np.log(p), np.log1p(-p)),
            "staked": ((rows["rank"] == 1) & rows["win_odds"].notna()).to_numpy(float),
        }
    )
    frame["paid"] = np.where(won, rows["win_odds"].fillna(0).to_numpy(float), 0) * frame["staked"]
    by_day = frame.groupby("race_date").agg(
        entries=("loss", "size"),
        loss=("loss", "sum"),
        staked=("staked", "sum"),
        paid=("paid", "sum"),
    )
    return by_day.sort_index()


def rolling_log_loss(by_day: pd.DataFrame, days: int) -> pd.Series:
    """The log loss of each window of `days` race days (entry-weighted), from the `days`-th."""
    window = by_day[["loss", "entries"]].rolling(days).sum()
    return (window["loss"] / window["entries"]).dropna()


def log_loss_range(by_day: pd.DataFrame, days: int) -> tuple[float, float] | None:
    """The lowest and highest log loss of any `days` consecutive race days (None if fewer)."""
    rolling = rolling_log_loss(by_day, days)
    return (float(rolling.min()), float(rolling.max())) if len(rolling) else None


def charts(rows: pd.DataFrame, days: int, backtest_log_loss: float | None) -> dict[str, str]:
    """Inline charts (Markdown, `inline_chart`) of live rows over race days: the cumulative
    return of a unit stake on each top pick (dashed: break even), the log loss over the last
    `days` race days (dashed: the backtest's log loss), and the reliability curve."""
    by_day = daily(rows)
    dates = [str(day)[:10] for day in by_day.index]
    made = {}
    cumulative = (by_day["paid"] - by_day["staked"]).cumsum()
    made["cumulative_return"] = inline_chart.chart(
        "units won, unit stake on each top pick",
        np.arange(len(by_day)),
        cumulative,
        (dates[0], dates[-1]) if dates else ("", ""),
        level=0.0,
    )
    window = min(days, len(by_day))
    rolling = rolling_log_loss(by_day, window) if window else pd.Series(dtype=float)
    at = by_day.index.get_indexer(rolling.index)
    made["rolling_log_loss"] = inline_chart.chart(
        f"log loss over {window} race day{'s' * (window != 1)}, dashed: backtest",
        at,
        rolling,
        (dates[at[0]], dates[at[-1]]) if len(at) else ("", ""),
        level=backtest_log_loss,
    )
    made["reliability"] = reliability_chart(rows)
    return made


def reliability_chart(rows: pd.DataFrame) -> str:
    """Observed against predicted win rate in ten bins of predicted probability (an inline
    chart; dashed: perfect calibration)."""
    bins = pd.cut(rows["win_probability"], np.linspace(0, 1, 11), include_lowest=True)
    curve = rows.groupby(bins, observed=True).agg(
        p=("win_probability", "mean"), won=("won", "mean")
    )
    return inline_chart.chart(
        "reliability: observed win rate by predicted, dashed: perfect",
        curve["p"],
        curve["won"],
        ("predicted 0", "1"),
        diagonal=True,
    )
