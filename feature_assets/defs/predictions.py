"""Race day, wired into Dagster (the work lives in `io.cards` and `training.predict`).

- `predictions`, one partition per race day up to tomorrow (Tokyo): a card snapshot taken
  from the source (or one already stored, by its id), the model's feature sets computed for
  the day from it and the stored days before it, scored and stored.
- `prediction_results`, per race day once its results are stored: each prediction joined
  with what happened, the day's and the cumulative figures beside the model's backtest, plots,
  and a Slack alert when the live log loss of the last FEATURE_ASSETS_DRIFT_DAYS race days
  leaves the backtest's range for as many days.
- `predict_today`: a schedule that materialises today's partition at
  FEATURE_ASSETS_PREDICT_CRON (Asia/Tokyo); off while that is unset.
- `measure_predicted_days`: materialises `prediction_results` of the latest day once the
  daily run has stored it, if it was predicted (Dagster's eager condition: its two inputs
  stored, neither in progress); runs with the other automations (FEATURE_ASSETS_AUTOMATION).
"""

import datetime as dt
import json

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BackfillPolicy,
    Config,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
    schedule,
)

from feature_assets import settings
from feature_assets.core.feature_set import PREDICTION_STAGES
from feature_assets.defs.resources import SlackAlerts, SourceDatabase, TrainingStorage
from feature_assets.defs.training import win_model
from feature_assets.feature_sets import registered_sets
from feature_assets.io import cards
from feature_assets.io.source import SourceUnavailableError
from feature_assets.io.storage import DamagedDayError, MissingDaysError
from feature_assets.partitions import daily_partitions, measured_days, prediction_days
from feature_assets.training import predict

TIMEZONE = "Asia/Tokyo"
# each run takes its own card and measures its own day (the asset bodies use one partition)
ONE_DAY_A_RUN = BackfillPolicy.multi_run(1)


class PredictionConfig(Config):
    card_snapshot: str = ""  # a stored snapshot's id; empty: take a new one from the source


@asset(
    deps=[win_model],
    partitions_def=prediction_days,
    backfill_policy=ONE_DAY_A_RUN,
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
        span = predict.history_span(sets, day, settings.start_date())
        _require_ended(day, span)
        card = _card(day, config, source, lake)
        history = predict.read_history(lake, span)
        rows = predict.predict(model, sets, card, history)
    except (
        predict.PredictionError,
        MissingDaysError,
        DamagedDayError,
        cards.NoCardError,
        SourceUnavailableError,
    ) as err:
        raise Failure(description=f"{day}: {err}") from None
    if rows.empty:
        context.log.warning(f"{day}: the card {card.id} holds no races: nothing to predict")
    lake.write_days(predict.TABLE, rows, [day])
    return MaterializeResult(metadata=_metadata(rows, card, model, sets))


def _require_ended(day: str, span: tuple[str, str] | None) -> None:
    """Day D's features read the results of the days before it, as in training: tomorrow's card
    can be predicted tonight only by sets that read no history (today has no results yet)."""
    last_ended = daily_partitions.get_last_partition_key()
    if span is not None and (last_ended is None or span[1] > last_ended):
        raise predict.PredictionError(
            f"its features read the results of {span[1]}, which has not ended in Tokyo (training"
            f" read them too); predict {day} once the daily run has stored {span[1]}"
        )


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
    if value is None or value != value:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


RESULTS_TABLE = "prediction_results"


@asset(
    deps=[predictions, AssetKey("raw_race_entries")],
    partitions_def=measured_days,
    backfill_policy=ONE_DAY_A_RUN,
    automation_condition=AutomationCondition.eager(),  # evaluated by measure_predicted_days
    group_name="race_day",
    description="The day's predictions beside what happened: per entry, per day and"
    " cumulatively (log loss, AUC, hit rates, returns of simple rules) with the backtest's"
    " figures, plots, and an alert when the live log loss drifts.",
)
def prediction_results(
    context: AssetExecutionContext, training: TrainingStorage, alerts: SlackAlerts
) -> MaterializeResult:
    from feature_assets.training import live

    day, lake = context.partition_key, training.lake
    for table in (predict.TABLE, "raw_race_entries"):
        if not lake.filesystem.get_file_info(lake.day_path(table, day)).is_file:  # one file
            raise Failure(description=f"{day}: {table} is not stored for the day")
    predicted = lake.read_days(predict.TABLE, [day])
    rows = live.outcomes(predicted, lake.read_days("raw_race_entries", [day]))
    lake.write_days(RESULTS_TABLE, rows, [day])
    so_far = [d for d in lake.stored_days(RESULTS_TABLE) if d <= day]
    every = lake.read_days(RESULTS_TABLE, so_far)
    info = json.loads(lake.read_file(predict.MODEL_INFO_PATH))
    backtest = info.get("backtest")
    drift = _drift(live, every, backtest, settings.drift_days())
    if drift:
        context.log.warning(drift)
        alerts.post(f":warning: feature_assets predictions, {day}: {drift}")
    metadata = {
        "model_sha256": ", ".join(sorted(set(predicted["model_sha256"]))) or "-",
        "card_snapshot": ", ".join(sorted(set(predicted["card_snapshot"]))) or "-",
        "days_so_far": int(every["race_date"].nunique()),  # race days measured; not days off
        "drift": drift or "none",
    }
    figures = {"day": live.metrics(rows), "so_far": live.metrics(every)}
    figures["backtest"] = (backtest or {}).get("metrics", {})
    metadata["figures"] = MetadataValue.md(_figures(figures))
    for name in ("log_loss", "top_pick_hit_rate", "top_pick_return"):
        for period, values in figures.items():
            if values.get(name) is not None and values[name] == values[name]:  # not NaN
                # full precision, so a reader can recompute it; the figures table rounds
                metadata[f"{name}_{period}"] = MetadataValue.float(float(values[name]))
    backtest_log_loss = figures["backtest"].get("log_loss")
    for name, chart in live.charts(every, settings.drift_days(), backtest_log_loss).items():
        metadata[name] = MetadataValue.md(chart)
    metadata["picks_and_winners"] = _picks_and_winners(predicted, rows)  # long: shown last
    return MaterializeResult(metadata=metadata)


def _drift(live, every, backtest: dict | None, days: int) -> str:
    """Why the live log loss of the last `days` race days is outside the backtest's range
    of `days`-day windows, or "" when it is inside (or either is too short to tell)."""
    if not backtest:
        return ""
    live_windows = live.rolling_log_loss(live.daily(every), days)
    known = live.log_loss_range(live.recorded_daily(backtest), days)
    if live_windows.empty or known is None:
        return ""
    latest = float(live_windows.iloc[-1])
    if known[0] <= latest <= known[1]:
        return ""
    return (
        f"log loss of the last {days} race days is {latest:.4f}, outside the backtest's"
        f" {known[0]:.4f}...{known[1]:.4f} for {days}-day windows"
    )


def _figures(figures: dict[str, dict]) -> str:
    """The day's, cumulative and backtest figures side by side (measured once, by the asset)."""
    day, so_far, test = figures["day"], figures["so_far"], figures["backtest"]
    lines = ["| figure | this day | so far | backtest (test split, final odds) |"]
    lines.append("| --- | --- | --- | --- |")
    for name in day:
        lines.append(
            f"| {name} | {_text(day[name])} | {_text(so_far[name])} | {_text(test.get(name))} |"
        )
    return "\n".join(lines)


PICKS_AND_WINNERS = TableSchema(
    [
        TableColumn("venue", "int"),
        TableColumn("race", "int"),
        TableColumn("pick_lane", "int", description="the entry ranked first"),
        TableColumn("probability", "float"),
        TableColumn("odds", "float", description="the card's win odds; empty without odds"),
        TableColumn("winner_lane", "int", description="empty: no winner (cancelled)"),
        TableColumn("pick_won", "bool"),
    ]
)


def _picks_and_winners(predicted, rows) -> MetadataValue:
    """A table, which the UI shows in the row whatever its length (long Markdown it hides)."""
    winners = rows[rows["won"]].set_index("race_id")["lane"]
    picks = predicted[predicted["rank"] == 1].drop_duplicates("race_id")
    records = []
    for pick in picks.itertuples():
        winner = winners.get(pick.race_id)
        record = {
            "venue": int(pick.venue_code),
            "race": int(pick.race_no),
            "pick_lane": int(pick.lane),
            "probability": float(pick.win_probability),
            "odds": None if pick.win_odds != pick.win_odds else float(pick.win_odds),
            "winner_lane": None if winner is None else int(winner),
            "pick_won": bool(winner == pick.lane),
        }
        records.append(TableRecord(record))
    return MetadataValue.table(records, schema=PICKS_AND_WINNERS)


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


measure_predicted_days = AutomationConditionSensorDefinition(
    "measure_predicted_days",
    target=[prediction_results],
    default_status=(
        DefaultSensorStatus.RUNNING if settings.automation_on() else DefaultSensorStatus.STOPPED
    ),
    description="Measures the latest race day once the daily run has stored its results, if"
    " it was predicted: materialises its prediction_results.",
)
