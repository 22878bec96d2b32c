"""`feature-assets demo`."""

from __future__ import annotations

import datetime as dt
import os
import time

import click

from feature_assets import settings


@click.command()
@click.option("--races-per-day", default=40, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Seed of the synthetic data.")
@click.option(
    "--results",
    "results_day",
    default=None,
    metavar="DAY",
    help="Only write the results of DAY (today or tomorrow) into the source, as a race day ends.",
)
def demo(races_per_day: int, seed: int, results_day: str | None) -> None:
    """Load synthetic results into the embedded SQLite source and materialise every day.

    The data covers every partition, from FEATURE_ASSETS_START_DATE to yesterday in Tokyo,
    so that `feature-assets status` afterwards finds nothing missing. Runs
    `race_features_job` (raw_races, raw_race_entries, race_features) over all those days as
    one ranged run on the Dagster instance in DAGSTER_HOME (default: the repo's
    dagster_home/), so that `dagster dev` shows the run and the materialised days.

    Today's and tomorrow's races are in the source as race cards: odds and exhibition times,
    no results, so that `feature-assets predict` has a card to take. `--results DAY` writes
    that day's results (kept aside by the demo) as they would arrive when its races end.
    """
    if settings.source_url_is_set():
        raise click.UsageError(
            "the demo fills the embedded SQLite source; unset FEATURE_ASSETS_SOURCE_URL to run it"
        )
    dagster_home = os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT / "dagster_home"))
    os.makedirs(dagster_home, exist_ok=True)
    if results_day is not None:
        _write_results(results_day)
        return

    # Imported here: they read the environment set above.
    from dagster import DagsterInstance

    from feature_assets.definitions import defs, race_features_job
    from feature_assets.io import synthetic
    from feature_assets.io.storage import DailyParquetStorage
    from feature_assets.partitions import daily_partitions

    started = time.monotonic()
    first_day = dt.date.fromisoformat(settings.start_date())
    last_day = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    days = (last_day - first_day).days + 1
    cards = [last_day + dt.timedelta(days=n) for n in (1, 2)]  # today and tomorrow
    data = synthetic.generate(first_day, days + 2, races_per_day=races_per_day, seed=seed)
    data = _cards_without_results(data, cards)
    synthetic.load(settings.default_source_url(), data)
    click.echo(
        f"Loaded {len(data.races):,} races and {len(data.entries):,} entries"
        f" ({first_day} to {last_day}, and the cards of {cards[0]} and {cards[1]} without"
        f" results) into {settings.demo_sqlite_path()}"
    )
    from feature_assets.ops.status import all_assets

    click.echo(f"Materialising {days} days of {', '.join(all_assets())} in one run ...")
    job = defs.resolve_job_def(race_features_job.name)
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first_day.isoformat(),
                "dagster/asset_partition_range_end": last_day.isoformat(),
            },
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
    if not result.success:
        raise click.ClickException(f"run {result.run_id} failed; see `dagster dev` for its logs")

    storage = DailyParquetStorage(settings.storage_url())
    click.echo(f"\nDone in {time.monotonic() - started:.0f} s (run {result.run_id}).")
    click.echo(f"  {'days:':<18}{days:>9,}")
    for table in all_assets():
        click.echo(f"  {table + ':':<18}{storage.count_rows(table):>9,} rows")
    click.echo(f"  {'Parquet files:':<18}{storage.table_path('<asset>')}/race_date=YYYY-MM-DD/")
    click.echo(f"\nOpen the UI:  DAGSTER_HOME={dagster_home} dagster dev")
    click.echo("              then http://127.0.0.1:3000 (Assets, Runs, Backfills)")
    click.echo(f"Race day:     feature-assets predict   (today's card, {cards[0]}; needs a")
    click.echo("              win model: docs/training.md), then")
    click.echo(f"              feature-assets demo --results {cards[0]}")
    click.echo(f"Replay now:   feature-assets predict --day {last_day}   (yesterday's card), then")
    click.echo(f"              {_MEASURE_COMMAND} {last_day}")


RESULT_COLUMNS = ["race_id", "lane", "finish_position", "start_timing"]
# What the measure_predicted_days sensor does for the latest stored day, by hand.
_MEASURE_COMMAND = (
    "dagster asset materialize -m feature_assets.definitions --select prediction_results"
    " --partition"
)


def _held_results_path():
    return settings.local_data_dir() / "demo-held-results.parquet"


def _cards_without_results(data, days: list[dt.date]):
    """`data` with the results of `days` NULL; the results are kept aside for --results."""
    import dataclasses

    import pandas as pd

    entries = data.entries.copy()
    on_card = entries["race_date"].isin([pd.Timestamp(d) for d in days])
    held = entries.loc[on_card, [*RESULT_COLUMNS, "race_date"]]
    _held_results_path().parent.mkdir(parents=True, exist_ok=True)
    held.to_parquet(_held_results_path(), index=False)
    for column in RESULT_COLUMNS[2:]:
        entries[column] = entries[column].mask(on_card)
    return dataclasses.replace(data, entries=entries)


def _write_results(day: str) -> None:
    """Writes the held results of `day` into the demo's SQLite source."""
    import sqlite3

    import pandas as pd

    try:
        held = pd.read_parquet(_held_results_path())
    except FileNotFoundError:
        raise click.ClickException("no results are held; run `feature-assets demo` first") from None
    of_day = held[held["race_date"] == pd.Timestamp(day)]
    if of_day.empty:
        held_days = sorted(held["race_date"].dt.strftime("%Y-%m-%d").unique())
        raise click.BadParameter(
            f"the demo holds no results of {day}; it holds {', '.join(held_days)}",
            param_hint="--results",
        )
    rows = [
        (None if pd.isna(f) else int(f), None if pd.isna(s) else float(s), int(r), int(lane))
        for r, lane, f, s in of_day[RESULT_COLUMNS].itertuples(index=False)
    ]
    with sqlite3.connect(settings.demo_sqlite_path()) as connection:
        connection.executemany(
            "UPDATE race_entries SET finish_position = ?, start_timing = ?"
            " WHERE race_id = ? AND lane = ?",
            rows,
        )
    click.echo(
        f"Wrote the results of {of_day['race_id'].nunique()} races of {day} into"
        f" {settings.demo_sqlite_path()}.\nOnce the day has ended in Tokyo, the daily run stores"
        f" it (or: feature-assets backfill --days {day} --wait) and the measure_predicted_days"
        f" sensor measures its predictions (or: {_MEASURE_COMMAND} {day})."
    )
