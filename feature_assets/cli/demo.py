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
def demo(races_per_day: int, seed: int) -> None:
    """Load synthetic results into the embedded SQLite source and materialise every day.

    The data covers every partition, from FEATURE_ASSETS_START_DATE to yesterday in Tokyo,
    so that `feature-assets status` afterwards finds nothing missing. Runs
    `race_features_job` (raw_races, raw_race_entries, race_features) over all those days as
    one ranged run on the Dagster instance in DAGSTER_HOME (default: the repo's
    dagster_home/), so that `dagster dev` shows the run and the materialised days.
    """
    if settings.source_url_is_set():
        raise click.UsageError(
            "the demo fills the embedded SQLite source; unset FEATURE_ASSETS_SOURCE_URL to run it"
        )
    dagster_home = os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT / "dagster_home"))
    os.makedirs(dagster_home, exist_ok=True)

    # Imported here: they read the environment set above.
    from dagster import DagsterInstance

    from feature_assets.definitions import defs, race_features_job
    from feature_assets.defs.partitions import daily_partitions
    from feature_assets.io import synthetic
    from feature_assets.io.storage import DailyParquetStorage

    started = time.monotonic()
    first_day = dt.date.fromisoformat(settings.start_date())
    last_day = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    days = (last_day - first_day).days + 1
    data = synthetic.generate(first_day, days, races_per_day=races_per_day, seed=seed)
    synthetic.load(settings.default_source_url(), data)
    click.echo(
        f"Loaded {len(data.races):,} races and {len(data.entries):,} entries"
        f" ({first_day} to {last_day}) into {settings.demo_sqlite_path()}"
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
