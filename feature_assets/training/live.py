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

import io

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

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


def plots(rows: pd.DataFrame, days: int) -> dict[str, bytes]:
    """PNG plots of live rows: cumulative return of the top-pick rule, the rolling log loss
    over `days` race days, and a reliability curve (predicted against observed win rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_day = daily(rows)
    made = {}
    figure, axes = plt.subplots(figsize=(6, 3))
    _over_days(axes, (by_day["paid"] - by_day["staked"]).cumsum())
    axes.set(title="cumulative return, unit stake on each top pick", ylabel="units")
    made["cumulative_return"] = _png(figure)
    figure, axes = plt.subplots(figsize=(6, 3))
    _over_days(axes, rolling_log_loss(by_day, min(days, len(by_day))))
    axes.set(title=f"log loss over the last {days} race days", ylabel="log loss")
    made["rolling_log_loss"] = _png(figure)
    made["reliability"] = reliability_plot(rows)
    return made


def _over_days(axes, series: pd.Series) -> None:
    """A daily series with a dot a day (the first day alone is a point, not an empty plot),
    ticks on whole days and short labels (no hours, no repeated year)."""
    import matplotlib.dates as mdates

    axes.plot(series.index, series.to_numpy(), marker=".")
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(series) == 1:  # else matplotlib spans years around the day
        day = series.index[0]
        axes.set_xlim(day - pd.Timedelta(days=1), day + pd.Timedelta(days=1))
        axes.set_xticks([day])
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))


def reliability_plot(rows: pd.DataFrame) -> bytes:
    """Predicted against observed win rate, in ten bins of predicted probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 4))
    bins = pd.cut(rows["win_probability"], np.linspace(0, 1, 11), include_lowest=True)
    curve = rows.groupby(bins, observed=True).agg(
        p=("win_probability", "mean"), won=("won", "mean")
    )
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.plot(curve["p"], curve["won"], marker="o")
    axes.set(title="reliability", xlabel="predicted", ylabel="observed win rate")
    return _png(figure)


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()
