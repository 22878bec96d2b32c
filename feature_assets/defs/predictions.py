"""Race day, wired into Dagster (the work lives in `io.cards` and `training.predict`).

- `predictions`, one partition per race day up to tomorrow (Tokyo): a card snapshot taken
  from the source (or one already stored, by its id), the model's feature sets computed for
  the day from it and the stored days before it, scored and stored.
- `predict_today`: a schedule that materialises today's partition at
  FEATURE_ASSETS_PREDICT_CRON (Asia/Tokyo); off while that is unset.
"""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    Config,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)

from feature_assets import settings
from feature_assets.core.feature_set import PREDICTION_STAGES
from feature_assets.defs.partitions import prediction_days
from feature_assets.defs.resources import SourceDatabase, TrainingStorage
from feature_assets.defs.training import win_model
from feature_assets.feature_sets import registered_sets
from feature_assets.io import cards
from feature_assets.io.storage import MissingDaysError
from feature_assets.training import predict

TIMEZONE = "Asia/Tokyo"


class PredictionConfig(Config):
    card_snapshot: str = ""  # a stored snapshot's id; empty: take a new one from the source


@asset(
    deps=[win_model],
    partitions_def=prediction_days,
    group_name="race_day",
    description="The win model's probability, rank in the race and expected return of every"
    " entry on the day's race card, with the card snapshot, model and feature code used.",
)
def predictions(
    context: AssetExecutionContext,
    config: PredictionConfig,
    source: SourceDatabase,
    training: TrainingStorage,
) -> MaterializeResult:
    day, lake = context.partition_key, training.lake
    try:
        model = predict.load_model(lake)
        sets = predict.model_sets(model, registered_sets())
        card = _card(day, config, source, lake)
        history = predict.read_history(lake, predict.history_span(sets, day, settings.start_date()))
        rows = predict.predict(model, sets, card, history)
    except (predict.PredictionError, MissingDaysError, cards.NoCardError) as err:
        raise Failure(description=f"{day}: {err}") from None
    lake.write_days(predict.TABLE, rows, [day])
    return MaterializeResult(metadata=_metadata(rows, card, model, sets))


def _card(day: str, config: PredictionConfig, source: SourceDatabase, lake) -> cards.Card:
    if config.card_snapshot:
        return cards.read(lake, day, config.card_snapshot)
    when = dt.date.fromisoformat(day)
    snapshot = source.read_snapshot(when, when)
    card = cards.from_source(snapshot.races, snapshot.entries, day, snapshot.taken_at[day])
    cards.store(lake, card)
    return card


def _metadata(rows, card: cards.Card, model: predict.Model, sets) -> dict:
    stage = max((s.stage for s in sets), key=PREDICTION_STAGES.index)
    picks = rows[rows["rank"] == 1].drop_duplicates("race_id")
    lines = ["| venue | race | lane | racer | probability | odds | expected return |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for pick in picks.itertuples():
        lines.append(
            f"| {pick.venue_code} | {pick.race_no} | {pick.lane} | {pick.racer_id} |"
            f" {pick.win_probability:.3f} | {_text(pick.win_odds)} |"
            f" {_text(pick.expected_return)} |"
        )
    return {
        "card_snapshot": card.id,
        "card_taken_at": MetadataValue.timestamp(card.taken_at),
        "model_sha256": model.sha256,
        "feature_versions": MetadataValue.json({s.name: s.code_version for s in sets}),
        "stage": stage,
        "odds": "the card's odds at the snapshot (the source's win_odds at that moment)",
        "races": int(rows["race_id"].nunique()),
        "entries": len(rows),
        "top_picks": MetadataValue.md("\n".join(lines)),
    }


def _text(value) -> str:
    return "-" if value != value or value is None else f"{value:.2f}"


predict_job = define_asset_job(
    "predict_race_day",
    selection=[predictions],
    description="Take a card snapshot of the day and predict its races.",
)


@schedule(
    name="predict_today",
    cron_schedule=settings.predict_cron() or "30 8 * * *",
    execution_timezone=TIMEZONE,
    job=predict_job,
    default_status=(
        DefaultScheduleStatus.RUNNING if settings.predict_cron() else DefaultScheduleStatus.STOPPED
    ),
    description="Today's card (Tokyo), predicted at FEATURE_ASSETS_PREDICT_CRON; off while"
    " that is unset (started in the UI it runs at 08:30).",
)
def predict_today(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(dt.timezone(dt.timedelta(hours=9))).date()
    stamp = context.scheduled_execution_time.isoformat()
    return RunRequest(run_key=f"predict:{stamp}", partition_key=day.isoformat())
