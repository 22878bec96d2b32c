"""Predictions for a race day, from its card, by the code and history that made the model.

For day D the model's feature sets are computed by the framework that stores them
(`core.engine.run_days`) from the stored raw days before D (the same history a backfill
reads) and the card's rows of D, which hold no results: there is no separate serving path.
Each set must be at the code version the model's training data recorded; a set changed since
then stops the prediction naming it (retrain, or restore the code).

Each entry gets the model's win probability normalised within its race (the calibrated scores
divided by their race's sum, so a race's probabilities add up to 1; `model.Calibration`), its
rank in the race (1 = most likely) and, where the card holds odds, the expected net return of
one unit bet on it to win at those odds (`probability x odds - 1`: 0 breaks even). The rows
keep the features they were scored on, to compare with those stored once the day has results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pandas as pd

from feature_assets.core import schema
from feature_assets.core.engine import run_days
from feature_assets.core.feature_set import KEY_COLUMNS, FeatureSet
from feature_assets.io.cards import Card
from feature_assets.io.storage import DailyParquetStorage, MissingDaysError
from feature_assets.training.data import feature_columns

MODEL_PATH = "win_model/model.txt"
MODEL_INFO_PATH = "win_model/model.json"
TABLE = "predictions"
RACE_COLUMNS = ["venue_code", "race_no"]
OUTPUT = ["win_probability", "rank", "win_odds", "expected_return"]


RETRAIN = "materialise win_model again"


class PredictionError(ValueError):
    """The day cannot be predicted; the message names the day and the cause."""


@dataclasses.dataclass(frozen=True)
class Model:
    """The stored win model: its booster, what `win_model` recorded, the hash of its text."""

    booster: object
    info: dict
    sha256: str

    @property
    def features(self) -> list[str]:
        return self.info["lineage"]["features"]

    @property
    def set_versions(self) -> dict[str, str]:
        return self.info["lineage"]["sets"]

    @property
    def calibration(self):
        """The recorded calibration (none for a model stored before calibration existed)."""
        from feature_assets.training.model import Calibration

        recorded = self.info.get("calibration", {})
        return Calibration(
            recorded.get("kind", "platt"),
            recorded.get("slope", 1.0),
            recorded.get("intercept", 0.0),
        )


def store_model(storage: DailyParquetStorage, text: str, info: dict) -> str:
    """Stores the booster's text and what was recorded of it; returns the model's path."""
    info = {**info, "model_sha256": model_sha256(text)}  # read back: a damaged model fails
    path = storage.write_file(MODEL_PATH, text.encode())
    storage.write_file(MODEL_INFO_PATH, json.dumps(info, indent=2).encode())
    return path


def model_sha256(text: str) -> str:
    """The model text's hash that predictions name and its record keeps."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_model(storage: DailyParquetStorage) -> Model:
    import lightgbm as lgb

    try:
        text = storage.read_file(MODEL_PATH).decode()
        info = json.loads(storage.read_file(MODEL_INFO_PATH))
    except FileNotFoundError:
        raise PredictionError(
            "no win model is stored; train one (docs/training.md): materialise training_data,"
            " feature-assets tune, then materialise win_model"
        ) from None
    except ValueError as err:  # bad UTF-8 or JSON
        raise PredictionError(f"the stored win model is damaged ({err}); {RETRAIN}") from None
    sha = model_sha256(text)
    recorded = info.get("model_sha256", sha)  # models stored before it was recorded: trusted
    if sha != recorded:  # a damaged file, or a crash between the model and its record
        raise PredictionError(
            f"the stored win model ({MODEL_PATH}, sha256 {sha}) is not the one its record"
            f" ({MODEL_INFO_PATH}) was written for (sha256 {recorded}); {RETRAIN}"
        )
    return Model(lgb.Booster(model_str=text), info, sha)


def model_sets(model: Model, registered: tuple[FeatureSet, ...]) -> list[FeatureSet]:
    """The sets the model was trained on, in its training table's order, each at the code
    version its training data recorded."""
    by_name = {s.name: s for s in registered}
    chosen, problems = [], []
    for name, version in model.set_versions.items():
        feature_set = by_name.get(name)
        if feature_set is None:
            problems.append(f"feature set {name} is not registered")
        elif version not in feature_set.current_versions:
            problems.append(
                f"feature set {name} is at code version {feature_set.code_version}, the model"
                f" was trained on {version}"
            )
        else:
            chosen.append(feature_set)
    if problems:
        raise PredictionError(
            "the model cannot be used with this code: "
            + "; ".join(problems)
            + "; rebuild training_data and win_model, or restore the code it was trained on"
        )
    return chosen


def history_span(sets: list[FeatureSet], day: str, start: str) -> tuple[str, str] | None:
    """The first and last stored days the sets read for `day`, from `start` (the first
    partition) at the earliest; None when there are none."""
    when = dt.date.fromisoformat(day)
    first = max(
        when - dt.timedelta(days=max(s.history_days for s in sets)), dt.date.fromisoformat(start)
    )
    last = when - dt.timedelta(days=1)
    return (str(first), str(last)) if first <= last else None


def features_for(
    card: Card, sets: list[FeatureSet], history: tuple[pd.DataFrame, pd.DataFrame]
) -> pd.DataFrame:
    """One row per entry of the card: keys, the race's venue and number, every set's
    columns under their training-table names."""
    races = pd.concat([history[0], card.races], ignore_index=True)
    entries = pd.concat([history[1], card.entries], ignore_index=True)
    names = feature_columns(sets)
    table = card.entries[[*KEY_COLUMNS, "win_odds"]].merge(
        card.races[["race_id", *RACE_COLUMNS]], on="race_id", validate="many_to_one"
    )
    for feature_set in sets:
        [outcome] = run_days(feature_set, races, entries, [card.day])
        if not outcome.ok:
            raise PredictionError(outcome.error)
        rows = outcome.rows[["race_id", "lane", *feature_set.columns]].rename(
            columns={c: names[(feature_set.name, c)] for c in feature_set.columns}
        )
        table = table.merge(rows, on=["race_id", "lane"], how="inner", validate="one_to_one")
    return table.sort_values(["race_id", "lane"], ignore_index=True)


def score(model: Model, features: pd.DataFrame) -> pd.DataFrame:
    """`features` with each entry's win probability (normalised within its race), its rank
    in the race and the expected net return of a unit win bet at the card's odds."""
    from feature_assets.training.live import with_bets
    from feature_assets.training.model import race_probabilities

    scored = features.copy()
    scored["win_probability"] = (
        race_probabilities(model.booster, features, model.features, model.calibration)
        if len(features)
        else pd.Series(dtype="float64")  # a day without races: LightGBM refuses no rows
    )
    return with_bets(scored)


def predict(
    model: Model,
    sets: list[FeatureSet],
    card: Card,
    history: tuple[pd.DataFrame, pd.DataFrame],
) -> pd.DataFrame:
    """The day's predictions, each row naming the card snapshot, the model and the code
    version of every set used; none for a card without races (a day without racing, or a
    card read before the source held it)."""
    scored = score(model, features_for(card, sets, history))
    scored["card_snapshot"] = card.id
    scored["model_sha256"] = model.sha256
    scored["feature_versions"] = json.dumps({s.name: s.code_version for s in sets})
    front = [*KEY_COLUMNS, *RACE_COLUMNS, *OUTPUT, "card_snapshot", "model_sha256"]
    return scored[[*front, "feature_versions", *model.features]]


def read_history(
    storage: DailyParquetStorage, span: tuple[str, str] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored raw days of `span` (a backfill stores them); MissingDaysError names the
    days that are not stored."""
    races_schema = schema.arrow_schema(schema.RACES_COLUMNS)
    entries_schema = schema.arrow_schema(schema.RACE_ENTRIES_COLUMNS)
    if span is None:
        return (
            schema.typed_frame({c: [] for c in schema.RACES_COLUMNS}, schema.RACES_COLUMNS),
            schema.typed_frame(
                {c: [] for c in schema.RACE_ENTRIES_COLUMNS}, schema.RACE_ENTRIES_COLUMNS
            ),
        )
    first, last = (dt.date.fromisoformat(d) for d in span)
    days = [str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]
    stored = set(storage.stored_days("raw_races")) & set(storage.stored_days("raw_race_entries"))
    missing = [d for d in days if d not in stored]
    if missing:
        raise MissingDaysError(
            f"the history of the prediction lacks {len(missing)} raw day(s), {missing[0]}"
            f"...{missing[-1]}; store them: feature-assets backfill --range"
            f" {missing[0]}...{missing[-1]} --assets raw_races,raw_race_entries --wait",
            "raw_races",
            missing,
        )
    return (
        storage.read_days("raw_races", days, races_schema),
        storage.read_days("raw_race_entries", days, entries_schema),
    )
