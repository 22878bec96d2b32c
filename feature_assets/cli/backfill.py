"""`feature-assets backfill`."""

from __future__ import annotations

import sys
import time

import click

from feature_assets.cli.options import (
    asset_names,
    assets_option,
    daemon_runs,
    days_in,
    open_instance,
    warn_without_daemon,
)


@click.command()
@click.option("--missing", is_flag=True, help="Each asset's days that were never materialised.")
@click.option("--failed", is_flag=True, help="Each asset's days whose last run failed.")
@click.option(
    "--stale",
    is_flag=True,
    help="Each feature set's days computed by code that has changed since (its code version).",
)
@click.option("--range", "day_range", metavar="START...END", help="Every day of a range.")
@click.option("--days", metavar="D1,D2,...", help="These days.")
@assets_option
@click.option(
    "--days-per-run",
    type=click.IntRange(min=1),
    help="Split into backfills of N days (raw days first, then features), one run each.",
)
@click.option("--wait", is_flag=True, help="Show progress until the backfill ends.")
def backfill(
    missing: bool,
    failed: bool,
    stale: bool,
    day_range: str | None,
    days: str | None,
    assets: str,
    days_per_run: int | None,
    wait: bool,
) -> None:
    """Launch a Dagster asset backfill of exactly the chosen days (runs on the daemon;
    with --wait and no daemon, runs here)."""
    from feature_assets.definitions import defs
    from feature_assets.ops.backfills import (
        chunks,
        days_to_backfill,
        launch_backfill,
        raw_runs_apart,
    )
    from feature_assets.ops.status import RAW_ASSETS

    if sum([missing, failed, stale, day_range is not None, days is not None]) != 1:
        raise click.UsageError(
            "choose exactly one of --missing, --failed, --stale, --range, --days"
        )
    chosen = days_in(day_range or days or "") if (day_range or days) else None
    selected = asset_names(assets)
    with open_instance() as instance:
        days_by_asset, title = days_to_backfill(
            instance,
            selected,
            missing=missing,
            failed=failed,
            stale=stale,
            days=chosen,
            described=day_range or days,
        )
        if not days_by_asset:
            click.echo("Nothing to backfill: every selected day is in place.")
            return
        if wait and not daemon_runs(instance):
            sys.exit(_backfill_here(instance, days_by_asset, title, days_per_run))
        warn_without_daemon(instance)

        graph = defs.resolve_asset_graph()
        if days_per_run is None and not raw_runs_apart(days_by_asset):
            backfill_ids = [launch_backfill(instance, graph, days_by_asset, title)]
        else:
            # raw days in backfills of their own: their runs keep the default pod, and only
            # runs of a set that declares a bigger one carry its size
            raw_days = sorted({d for a in RAW_ASSETS for d in days_by_asset.get(a, [])})
            if raw_days and set(days_by_asset) - set(RAW_ASSETS) and not daemon_runs(instance):
                raise click.ClickException(
                    "the raw days are stored first, by a daemon, before the sets' runs"
                    " start; start `dagster dev` (or `dagster-daemon run`), or add --wait"
                    " to run the backfill here"
                )
            per_run = days_per_run or max(map(len, days_by_asset.values()))
            backfill_ids = [
                launch_backfill(instance, graph, {a: chunk for a in RAW_ASSETS}, title)
                for chunk in chunks(raw_days, per_run)
            ]
            feature_days = {n: d for n, d in days_by_asset.items() if n not in RAW_ASSETS}
            if feature_days:
                if backfill_ids:
                    click.echo("Snapshotting the raw days first: features read them.")
                    _follow(instance, backfill_ids)
                backfill_ids += [
                    launch_backfill(instance, graph, {name: chunk}, title)
                    for name, of_set in sorted(feature_days.items())
                    for chunk in chunks(of_set, per_run)
                ]
        for asset, asset_days in sorted(days_by_asset.items()):
            click.echo(f"  {asset}: {len(asset_days)} day(s)")
        click.echo(f"Launched backfill(s) {', '.join(backfill_ids)}; see Backfills in the UI.")
        if wait:
            progress = _follow(instance, backfill_ids)
            sys.exit(1 if progress.failed else 0)


def _backfill_here(instance, days_by_asset, title: str, days_per_run: int | None) -> int:
    """Without a daemon, `--wait` runs the backfill's ranged runs in this process, raw days
    first; returns the exit code (1 when a run failed)."""
    from feature_assets.definitions import defs
    from feature_assets.ops.backfills import run_here

    job = defs.resolve_implicit_global_asset_job_def()
    failed = run_here(instance, job, days_by_asset, title, days_per_run, report=click.echo)
    if failed:
        click.echo(f"{failed} run(s) failed; `feature-assets status` says why.", err=True)
    return 1 if failed else 0


def _follow(instance, backfill_ids: list[str]):
    """Prints a progress bar until the backfills end; returns the last progress."""
    from feature_assets.ops.backfills import backfill_progress

    while True:
        progress = backfill_progress(instance, backfill_ids)
        width = 30
        filled = int(width * progress.done / max(progress.total, 1))
        click.echo(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total}"
            f" asset-days done, {progress.failed} failed, {progress.running} running ",
            nl=False,
            err=True,
        )
        if progress.finished:
            click.echo("", err=True)
            return progress
        time.sleep(2)
