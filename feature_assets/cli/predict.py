"""`feature-assets predict`."""

from __future__ import annotations

import datetime as dt
import os

import click
import pandas as pd

from feature_assets import settings

TOKYO = dt.timezone(dt.timedelta(hours=9))
NO_RACES = (
    "The card holds no races: nothing to predict (a day without racing, or a card taken"
    " before the source held it; predict again once it does)."
)


@click.command()
@click.option("--day", default=None, help="The race day, YYYY-MM-DD (default: today in Tokyo).")
@click.option(
    "--card-snapshot",
    default="",
    help="Predict from this stored card snapshot (its id) instead of taking a new one.",
)
def predict(day: str | None, card_snapshot: str) -> None:
    """Take a race card snapshot of the day now, predict its races with the win model, store
    the predictions (the `predictions` asset, recorded on the Dagster instance in
    DAGSTER_HOME) and print each race: lane, racer, probability, rank, odds, expected return.

    The features come from the same feature-set code and the same stored history (the days
    before the day) that made the model's training data."""
    day = day or dt.datetime.now(TOKYO).date().isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a day (YYYY-MM-DD)", param_hint="--day") from None
    os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT / "dagster_home"))
    from dagster import DagsterInstance

    from feature_assets.definitions import defs
    from feature_assets.defs.predictions import predict_job, prediction_days
    from feature_assets.io.storage import DailyParquetStorage
    from feature_assets.training import predict as predicting

    if day not in prediction_days.get_partition_keys():
        raise click.BadParameter(
            f"{day} is not a race day partition (from {settings.start_date()} to tomorrow)",
            param_hint="--day",
        )
    job = defs.resolve_job_def(predict_job.name)
    config = {"ops": {"predictions": {"config": {"card_snapshot": card_snapshot}}}}
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=day,
            run_config={**config, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            raise_on_error=False,
        )
    if not result.success:
        raise click.ClickException(_failure(result))
    rows = DailyParquetStorage(settings.storage_url()).read_days(predicting.TABLE, [day])
    [stored] = result.asset_materializations_for_node("predictions")
    click.echo(
        f"{day}: {rows['race_id'].nunique()} races, card {stored.metadata['card_snapshot'].value},"
        f" model {stored.metadata['model_sha256'].value} (run {result.run_id})"
    )
    if rows.empty:
        click.echo(f"\n{NO_RACES}")
    for race in race_tables(rows):
        click.echo("\n" + race)


def race_tables(rows: pd.DataFrame) -> list[str]:
    """One small table per race, in venue and race order."""
    tables = []
    for (venue, race_no, race_id), race in rows.groupby(["venue_code", "race_no", "race_id"]):
        lines = [f"venue {venue} race {race_no} (race_id {race_id})"]
        lines.append(
            f"  {'lane':>4} {'racer':>6} {'prob':>6} {'rank':>4} {'odds':>6} {'exp.ret':>8}"
        )
        for entry in race.sort_values("lane").itertuples():
            lines.append(
                f"  {entry.lane:>4} {entry.racer_id:>6} {entry.win_probability:>6.3f}"
                f" {entry.rank:>4} {_number(entry.win_odds, 6, 1)}"
                f" {_number(entry.expected_return, 8, 2)}"
            )
        tables.append("\n".join(lines))
    return tables


def _number(value, width: int, places: int) -> str:
    return f"{'-':>{width}}" if pd.isna(value) else f"{value:>{width}.{places}f}"


def _failure(result) -> str:
    """The step's failure as the asset described it (the day and the cause)."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            return data.error.message.strip() if data.error else "the step failed"
    return f"run {result.run_id} failed; see `dagster dev` for its logs"
