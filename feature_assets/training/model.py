"""The LightGBM win model: its search space, training with early stopping, and the metrics
a bettor looks at first.

Training is deterministic for given parameters, data, seed and thread count (LightGBM's
`deterministic` with row-wise histograms), so the model asset can be rebuilt bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from feature_assets.training.data import LABEL, ODDS

METRIC = "binary_logloss"
# What the model learns: each entry's win on its own (`binary`, the default), or the order
# within each race (`lambdarank`, one query group per race, the winner relevant); chosen per
# search (`feature-assets tune --objective`). Each has the validation metric trials are
# judged and pruned by, and whether lower or higher is better.
OBJECTIVES = {
    "binary": ("binary_logloss", "minimize"),
    "lambdarank": ("ndcg@1", "maximize"),
}
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50  # rounds without a better validation log loss before stopping
VALIDATION = "validation"


def fixed_params(threads: int, seed: int, objective: str = "binary") -> dict:
    ranking = {"metric": "ndcg", "eval_at": [1]} if objective == "lambdarank" else {}
    return {
        "objective": objective,
        "metric": METRIC,
        **ranking,
        "verbosity": -1,
        "num_threads": threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "feature_pre_filter": False,  # min_child_samples varies between trials of one Dataset
        "bagging_freq": 1,
    }


def suggest_params(trial) -> dict:
    """The search space of an Optuna trial (the usual ranges for a binary GBDT)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 255, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 10.0, log=True),
    }


def feature_matrix(rows: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The features as LightGBM takes them: numbers as float64 (NULL as NaN), flags as 0/1,
    text as categories."""
    columns = {}
    for name in features:
        values = rows[name]
        if isinstance(values.dtype, pd.StringDtype) or values.dtype == object:
            columns[name] = values.astype("category")
        else:
            columns[name] = values.astype("float64")
    return pd.DataFrame(columns, index=rows.index)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How scores become probabilities, fitted on the validation split's scores by the model
    trained without it.

    `platt` (binary models): `sigmoid(slope * logit(p) + intercept)`, then divided by the
    race's sum. Platt rather than isotonic: two parameters cannot overfit a year of races; it
    keeps the order of the scores (isotonic's steps make ties, which blur ranks within a
    race); and it stays smooth where data are thin (long shots). `softmax` (ranking models,
    whose scores are no probabilities): a softmax over the race of `slope * score`, the
    conditional logit, `slope` chosen to minimise the winners' log loss. The defaults are
    the identity."""

    kind: str = "platt"
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, scores: np.ndarray, won: np.ndarray, race_ids: np.ndarray, kind: str):
        if kind == "softmax":
            from scipy.optimize import minimize_scalar

            def winners_log_loss(slope: float) -> float:
                p = _softmax_by_race(slope * scores, race_ids)
                return float(-np.log(np.clip(p[won], 1e-15, 1)).mean())

            best = minimize_scalar(winners_log_loss, bounds=(1e-3, 50), method="bounded")
            return cls("softmax", float(best.x), 0.0)
        from sklearn.linear_model import LogisticRegression

        fitted = LogisticRegression(C=1e6).fit(_logit(scores)[:, None], won.astype(int))
        return cls("platt", float(fitted.coef_[0][0]), float(fitted.intercept_[0]))

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Platt's map of binary scores (the race's normalisation comes after)."""
        return 1 / (1 + np.exp(-(self.slope * _logit(scores) + self.intercept)))

    def probabilities(self, scores: np.ndarray, race_ids: np.ndarray) -> np.ndarray:
        """Each entry's win probability within its race."""
        if self.kind == "softmax":
            return _softmax_by_race(self.slope * scores, race_ids)
        calibrated = pd.Series(self.apply(scores))
        return (calibrated / calibrated.groupby(race_ids).transform("sum")).to_numpy()


def _softmax_by_race(values: np.ndarray, race_ids: np.ndarray) -> np.ndarray:
    values = pd.Series(values)
    exp = np.exp(values - values.groupby(race_ids).transform("max"))
    return (exp / exp.groupby(race_ids).transform("sum")).to_numpy()


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def scores(booster: lgb.Booster, rows: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    predicted = booster.predict(
        feature_matrix(rows, features), num_iteration=booster.best_iteration or None
    )
    return np.asarray(predicted, dtype="float64")


def race_probabilities(
    booster: lgb.Booster,
    rows: pd.DataFrame,
    features: Sequence[str],
    calibration: Calibration = Calibration(),
) -> pd.Series:
    """Each entry's win probability within its race, adding up to 1 in each race (a binary
    model scores each entry alone, and its scores of a race need not), by `calibration`."""
    race_ids = rows["race_id"].to_numpy()
    p = calibration.probabilities(scores(booster, rows, features), race_ids)
    return pd.Series(p, index=rows.index)


def dataset(
    rows: pd.DataFrame, features: Sequence[str], reference=None, objective: str = "binary"
) -> lgb.Dataset:
    """The rows as LightGBM trains on them; for `lambdarank` one query group per race (the
    rows of a race are consecutive: the training table is sorted by day, race and lane)."""
    group = None
    if objective == "lambdarank":
        race_ids = rows["race_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, race_ids[1:] != race_ids[:-1]])
        group = np.diff(np.r_[starts, len(race_ids)])
    return lgb.Dataset(
        feature_matrix(rows, features),
        label=rows[LABEL].astype(int).to_numpy(),
        group=group,
        reference=reference,
        free_raw_data=False,
    )


def fit(
    params: dict,
    train: lgb.Dataset,
    validation: lgb.Dataset | None = None,
    rounds: int = MAX_ROUNDS,
    callbacks: Sequence = (),
) -> lgb.Booster:
    """Trains; with `validation`, stops once its log loss has not improved for
    EARLY_STOPPING_ROUNDS rounds (the booster's `best_iteration`)."""
    if validation is None:
        return lgb.train(params, train, num_boost_round=rounds)
    return lgb.train(
        params,
        train,
        num_boost_round=rounds,
        valid_sets=[validation],
        valid_names=[VALIDATION],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False), *callbacks],
    )


def evaluate(
    booster: lgb.Booster, rows: pd.DataFrame, features: Sequence[str], objective: str = "binary"
) -> dict:
    """Log loss and AUC of the entries (a ranking model's scores as a softmax per race);
    per race, how often the model's top pick and the market favourite (lowest odds) win, and
    the return of one unit staked on each race's pick at its final odds, as net return per
    unit (0 = break even, -0.25 = a quarter lost; races whose pick has no odds are not bet)."""
    if objective == "lambdarank":
        predicted = race_probabilities(booster, rows, features, Calibration("softmax"))
        predicted = predicted.to_numpy()
    else:
        predicted = scores(booster, rows, features)
    won = rows[LABEL].to_numpy(dtype=bool)
    scored = pd.DataFrame(
        {
            "race_id": rows["race_id"].to_numpy(),
            "p": predicted,
            "won": won,
            "odds": rows[ODDS].to_numpy(dtype="float64", na_value=np.nan),
        }
    )
    picks = scored.loc[scored.groupby("race_id")["p"].idxmax()]
    with_odds = scored.dropna(subset=["odds"])
    favourites = with_odds.loc[with_odds.groupby("race_id")["odds"].idxmin()]
    bets = picks.dropna(subset=["odds"])
    payout = float((bets["odds"] * bets["won"]).sum())
    return {
        "log_loss": float(log_loss(won, predicted, labels=[False, True])),
        "auc": float(roc_auc_score(won, predicted)),
        "races": int(len(picks)),
        "top_pick_hit_rate": float(picks["won"].mean()),
        "favourite_hit_rate": float(favourites["won"].mean()),
        "flat_stake_bets": int(len(bets)),
        "flat_stake_return": payout / len(bets) - 1 if len(bets) else float("nan"),
    }


@dataclasses.dataclass
class FinalModel:
    booster: lgb.Booster
    rounds: int
    validation: dict  # metrics of the same parameters trained on the training period only
    test: dict  # metrics of the final model, trained on training + validation
    calibration: Calibration  # fitted on the validation period's scores


def train_final(
    table: pd.DataFrame,
    features: Sequence[str],
    params: dict,
    threads: int,
    seed: int,
    objective: str = "binary",
) -> FinalModel:
    """The parameters trained on the training period with early stopping on validation
    (its rounds, validation metrics and the calibration of its validation scores), then on
    training + validation for that many rounds, evaluated once on the test period."""
    params = {**fixed_params(threads, seed, objective), **params}
    train = table[table["split"] == "train"]
    validation = table[table["split"] == "validation"]
    train_set = dataset(train, features, objective=objective)
    tuned = fit(
        params,
        train_set,
        dataset(validation, features, reference=train_set, objective=objective),
    )
    rounds = tuned.best_iteration or MAX_ROUNDS
    learnt_from = table[table["split"] != "test"]
    final = fit(params, dataset(learnt_from, features, objective=objective), rounds=rounds)
    calibration = Calibration.fit(
        scores(tuned, validation, features),
        validation[LABEL].to_numpy(bool),
        validation["race_id"].to_numpy(),
        "softmax" if objective == "lambdarank" else "platt",
    )
    return FinalModel(
        booster=final,
        rounds=rounds,
        validation=evaluate(tuned, validation, features, objective),
        test=evaluate(final, table[table["split"] == "test"], features, objective),
        calibration=calibration,
    )


def importances(booster: lgb.Booster, top: int = 15) -> list[tuple[str, float]]:
    """The `top` features by total gain, as (name, share of all gain)."""
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    ranked = sorted(zip(booster.feature_name(), gain, strict=True), key=lambda item: -item[1])
    return [(name, float(value) / total) for name, value in ranked[:top]]
