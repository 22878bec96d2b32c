"""`feature-assets`: the command line. Thin: each command calls library functions."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

import click

from feature_assets import settings
from feature_assets.ops.planning import (
    DAYS_PER_RUN_CHOICES,
    DEFAULT_SECONDS_PER_DAY,
    MACHINES,
    Cluster,
    best_plan,
    estimate,
    measured_seconds_per_day,
)


@click.group()
def main() -> None:
    """Point-in-time race features as daily-partitioned Dagster assets."""


@main.command()
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


def _instance():
    from dagster import DagsterInstance

    return DagsterInstance.get()


def _known_assets(ctx, param, values):
    from feature_assets.ops.status import all_assets

    unknown = sorted(set(values) - set(all_assets()))
    if unknown:
        raise click.BadParameter(
            f"unknown asset(s): {', '.join(unknown)} (known: {', '.join(all_assets())})"
        )
    return values


@main.command()
@click.option(
    "--asset",
    "assets",
    multiple=True,
    callback=_known_assets,
    help="Only this asset (repeatable). Default: the raw assets and every feature set.",
)
@click.option("--verbose", is_flag=True, help="Every failed day with its own error.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, with every day's error.")
def status(assets: tuple[str, ...], verbose: bool, as_json: bool) -> None:
    """Days materialised, failed, in progress and missing, per asset.

    Failed days are grouped by cause (the root error: the invalid race and rule, the
    exception's own message). Exits 0 only when every day is materialised.
    """
    from feature_assets.ops.status import days_by_state

    with _instance() as instance:
        states = days_by_state(instance, assets or None)
    if as_json:
        click.echo(json.dumps([state.as_json() for state in states], indent=2))
    else:
        for state in states:
            for line in _status_lines(state, verbose):
                click.echo(line)
        if not all(state.complete and not state.stale for state in states):
            click.echo(_status_advice(states))
    sys.exit(0 if all(state.complete for state in states) else 1)


CAUSES_SHOWN = 5  # failed-day causes listed per asset without --verbose
LINE_WIDTH = 160


def _shorten(text: str, width: int = LINE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _days_summary(days: list[str], ranges_shown: int = 3) -> str:
    from feature_assets.core.dates import compact_days

    ranges = compact_days(days).split(", ")
    more = f" and {len(ranges) - ranges_shown} more ranges" if len(ranges) > ranges_shown else ""
    return f"{', '.join(ranges[:ranges_shown])}{more} ({len(days)} day(s))"


def _status_lines(state, verbose: bool) -> list[str]:
    """A few lines per asset: counts, then failed days by cause, in progress, missing."""
    lines = [
        f"{state.asset}: {len(state.materialized)} materialized, {len(state.failed)} failed,"
        f" {len(state.in_progress)} in progress, {len(state.missing)} missing"
    ]
    if state.in_progress:
        lines.append(f"  in progress: {_days_summary(state.in_progress)}")
    if state.failed and verbose:
        lines.append("  failed:")
        lines += [f"    {day}: {state.errors[day].detail}" for day in state.errors]
        lines += [f"    {day}: unknown cause" for day in state.failed if day not in state.errors]
    elif state.failed:
        causes = state.failures_by_cause()
        lines.append(f"  failed, by cause ({len(causes)}):")
        for cause, days in causes[:CAUSES_SHOWN]:
            # the cause groups days by their error with race ids blanked; the line shows
            # the first day's own race_id, which a person looks up
            first = state.example(days)
            on_first = f", first on {days[0]}" if len(days) > 1 and first != cause else ""
            lines.append(_shorten(f"    {_days_summary(days)}{on_first}: {first}"))
        if len(causes) > CAUSES_SHOWN:
            lines.append(f"    ... {len(causes) - CAUSES_SHOWN} more causes (--verbose shows all)")
    if state.missing:
        lines.append(f"  missing: {_days_summary(state.missing)}")
    if state.stale:
        lines.append(f"  stale (its code changed since): {_days_summary(state.stale)}")
    return lines


def _status_advice(states) -> str:
    failed = any(state.failed for state in states)
    missing = any(state.missing for state in states)
    stale = any(state.stale for state in states)
    commands = [
        *(["feature-assets backfill --failed --wait"] if failed else []),
        *(["feature-assets backfill --missing --wait"] if missing else []),
        *(["feature-assets backfill --stale --wait"] if stale else []),
    ]
    return "to fix: " + "; ".join(commands) if commands else "days are still in progress"


def _days_in(text: str) -> list[str]:
    """Days from `D1,D2,...`, where each item is a day or a range FIRST...LAST."""
    from feature_assets.defs.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys()
    index = {key: i for i, key in enumerate(keys)}
    days: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        first, _, last = item.partition("...")
        last = last or first
        unknown = [day for day in (first, last) if day not in index]
        if unknown:
            raise click.BadParameter(
                f"{', '.join(unknown)}: not a day of the partitions ({keys[0]} ... {keys[-1]},"
                " as YYYY-MM-DD)"
            )
        if index[first] > index[last]:
            raise click.BadParameter(f"{item}: the range is reversed; write {last}...{first}")
        days.extend(keys[index[first] : index[last] + 1])
    if not days:
        raise click.BadParameter("no days given")
    return sorted(set(days))


@main.command()
@click.option("--missing", is_flag=True, help="Each asset's days that were never materialised.")
@click.option("--failed", is_flag=True, help="Each asset's days whose last run failed.")
@click.option(
    "--stale",
    is_flag=True,
    help="Each feature set's days computed by code that has changed since (its code version).",
)
@click.option("--range", "day_range", metavar="START...END", help="Every day of a range.")
@click.option("--days", metavar="D1,D2,...", help="These days.")
@click.option(
    "--assets",
    default="all",
    show_default=True,
    help="Comma-separated assets: raw_races, raw_race_entries, feature sets; all: every one.",
)
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
    """Launch a Dagster asset backfill of exactly the chosen days (runs on the daemon)."""
    from feature_assets.feature_sets import feature_set
    from feature_assets.ops.backfills import (
        chunks,
        launch_backfill,
        with_raw_assets_together,
        with_raw_days_needed,
    )
    from feature_assets.ops.status import (
        RAW_ASSETS,
        all_assets,
        days_by_state,
        feature_set_names,
        stale_days,
    )

    if sum([missing, failed, stale, day_range is not None, days is not None]) != 1:
        raise click.UsageError(
            "choose exactly one of --missing, --failed, --stale, --range, --days"
        )
    selected = [asset.strip() for asset in assets.split(",") if asset.strip()]
    selected = list(all_assets()) if selected == ["all"] else selected
    unknown = sorted(set(selected) - set(all_assets()))
    if unknown:
        raise click.BadParameter(
            f"unknown asset(s): {', '.join(unknown)} (known: {', '.join(all_assets())})",
            param_hint="--assets",
        )
    sets = [name for name in selected if name in feature_set_names()]

    with _instance() as instance:
        if stale:
            days_by_asset = {name: stale_days(instance, feature_set(name)) for name in sets}
            title = "feature-assets: stale days (code changed)"
        elif missing or failed:
            states = days_by_state(instance, selected)
            days_by_asset = {s.asset: (s.missing if missing else s.failed) for s in states}
            title = "feature-assets: missing days" if missing else "feature-assets: failed days"
        else:
            chosen = _days_in(day_range or days or "")
            days_by_asset = {asset: chosen for asset in selected}
            title = f"feature-assets: {day_range or days}"
        if any(days_by_asset.get(name) for name in sets):
            [raw_state] = days_by_state(instance, ["raw_race_entries"], with_errors=False)
            days_by_asset = with_raw_days_needed(
                days_by_asset, set(raw_state.materialized), snapshot_again=failed
            )
        days_by_asset = with_raw_assets_together(days_by_asset)
        if not days_by_asset:
            click.echo("Nothing to backfill: every selected day is in place.")
            return
        if wait and not _daemon_runs(instance):
            sys.exit(_backfill_here(instance, days_by_asset, title, days_per_run))
        _warn_without_daemon(instance)

        if days_per_run is None:
            backfill_ids = [launch_backfill(instance, days_by_asset, title)]
        else:
            raw_days = sorted({d for a in RAW_ASSETS for d in days_by_asset.get(a, [])})
            backfill_ids = [
                launch_backfill(instance, {a: chunk for a in RAW_ASSETS}, title)
                for chunk in chunks(raw_days, days_per_run)
            ]
            feature_days = {n: d for n, d in days_by_asset.items() if n not in RAW_ASSETS}
            if feature_days:
                if backfill_ids:
                    click.echo("Snapshotting the raw days first: features read them.")
                    _follow(instance, backfill_ids)
                backfill_ids += [
                    launch_backfill(instance, {name: chunk}, title)
                    for name, of_set in sorted(feature_days.items())
                    for chunk in chunks(of_set, days_per_run)
                ]
        for asset, asset_days in sorted(days_by_asset.items()):
            click.echo(f"  {asset}: {len(asset_days)} day(s)")
        click.echo(f"Launched backfill(s) {', '.join(backfill_ids)}; see Backfills in the UI.")
        if wait:
            progress = _follow(instance, backfill_ids)
            sys.exit(1 if progress.failed else 0)


def _daemon_runs(instance, daemon: str = "BACKFILL") -> bool:
    """The dagster-daemon's `daemon` thread has beaten in the last two minutes."""
    beat = instance.get_daemon_heartbeats().get(daemon)
    return beat is not None and time.time() - beat.timestamp <= 120


def _backfill_here(instance, days_by_asset, title: str, days_per_run: int | None) -> int:
    """Without a daemon, `--wait` runs the backfill's ranged runs in this process, raw days
    first; returns the exit code (1 when a run failed)."""
    from feature_assets.ops.backfills import run_in_process, runs_in_order

    runs = runs_in_order(days_by_asset, days_per_run)
    click.echo(
        f"No dagster-daemon runs for this instance: running the backfill here as {len(runs)}"
        " ranged run(s), as `dagster asset materialize` would."
    )
    failed = 0
    for run in runs:
        result = run_in_process(instance, run, title)
        state = "done" if result.success else "FAILED"
        click.echo(
            f"  {', '.join(run.assets)} {run.first}...{run.last}: {state} (run {result.run_id})"
        )
        failed += not result.success
    if failed:
        click.echo(f"{failed} run(s) failed; `feature-assets status` says why.", err=True)
    return 1 if failed else 0


def _warn_without_daemon(instance, what: str = "the backfill waits") -> None:
    if not _daemon_runs(instance):
        click.echo(
            f"Warning: no dagster-daemon is running for this instance; {what}"
            " until one starts (`dagster dev` or `dagster-daemon run`).",
            err=True,
        )


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


@main.command()
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Trials to run in all.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Dagster runs (pods on GKE) that share the trials.",
)
@click.option("--study", help="Study to extend; default a new one, win-<UTC time>.")
@click.option("--wait", is_flag=True, help="Show progress until every trial has finished.")
def tune(trials: int, parallel: int, study: str | None, wait: bool) -> None:
    """Tune the win model: TRIALS Optuna trials shared by PARALLEL runs.

    The trials wait in the study's database (FEATURE_ASSETS_OPTUNA_URL, default a SQLite
    file in DAGSTER_HOME); the daemon's `tuning_workers` sensor starts the runs. Then
    materialise `win_model`.
    """
    from feature_assets.defs.resources import TrainingStorage
    from feature_assets.training import data, search

    if wait and not _daemon_runs(_instance(), "SENSOR"):
        raise click.ClickException(
            "no dagster-daemon runs for this instance, and only its tuning_workers sensor"
            " starts the trial runs: start `dagster dev` (or `dagster-daemon run`) with the"
            " same DAGSTER_HOME, then run this again"
        )
    training = TrainingStorage(
        storage_url=settings.storage_url(),
        optuna_url=settings.optuna_url(),
        heartbeat_seconds=settings.trial_heartbeat_seconds(),
    )
    try:
        lineage = data.lineage_of(training.lake)
        name = study or f"win-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        started = search.start_search(
            training.studies(), name, trials, parallel, lineage["training_data"]
        )
        finished_before = sum(search.counts(started)[s] for s in ("COMPLETE", "PRUNED"))
    except (data.TrainingDataError, search.SearchError) as err:
        raise click.ClickException(str(err)) from None
    instance = _instance()
    click.echo(
        f"study {name}: {trials} trial(s) queued for {parallel} worker run(s) on training data"
        f" {lineage['training_data']} ({lineage['first_day']}...{lineage['last_day']})"
    )
    _warn_without_daemon(instance, "the trials wait")
    if wait:
        counts = _follow_search(started, settings.trial_heartbeat_seconds())
        finished = counts["COMPLETE"] + counts["PRUNED"]
        if counts["COMPLETE"]:
            click.echo(
                f"best validation log loss {started.best_value:.5f} (trial"
                f" {started.best_trial.number}); next: dagster asset materialize -m"
                " feature_assets.definitions --select win_model"
            )
        if finished < finished_before + trials:
            click.echo(
                f"only {finished - finished_before} of {trials} trial(s) finished; the"
                " tuning runs' logs say why",
                err=True,
            )
            sys.exit(1)


def _follow_search(study, heartbeat: int) -> dict[str, int]:
    """Prints the study's trials by state until none waits or runs; returns the counts."""
    from feature_assets.training import search

    while True:
        counts = search.counts(study)
        click.echo(
            "\r" + ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) + " ",
            nl=False,
            err=True,
        )
        if not counts["WAITING"] and not counts["RUNNING"]:
            click.echo("", err=True)
            return counts
        time.sleep(min(5, heartbeat))


@main.command("check-leakage")
@click.argument("set_name", metavar="SET")
@click.option(
    "--days",
    "sample",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="How many stored days to recompute, spread over the stored range.",
)
def check_leakage_command(set_name: str, sample: int) -> None:
    """Recompute stored days of SET from a source cut at each day and report every value
    that differs, and every file, database or network address its code opens outside that
    cut: proof that it does not look ahead, even around the API.

    Each sampled day D is computed again with the source holding only rows up to D, D's
    results hidden, and no stored Parquet to read. Exits 1 on any finding.
    """
    from feature_assets.feature_sets import feature_set
    from feature_assets.ops.leakage import check_stored_days, sample_days
    from feature_assets.ops.status import days_by_state

    try:
        chosen = feature_set(set_name)
    except KeyError as err:
        raise click.BadParameter(str(err.args[0]), param_hint="SET") from None
    with _instance() as instance:
        [state] = days_by_state(instance, [chosen.name], with_errors=False)
    days = sample_days(state.materialized, sample)
    if not days:
        raise click.ClickException(f"{chosen.name} has no materialised day to check yet")
    source_url = os.environ.get("FEATURE_ASSETS_SOURCE_URL") or settings.default_source_url()
    click.echo(f"Recomputing {len(days)} day(s) of {chosen.name} from a source cut at each day ...")
    found = check_stored_days(chosen, days, settings.storage_url(), source_url)
    if not found:
        click.echo(
            f"No leak: {len(days)} day(s) ({', '.join(days)}) recompute to the stored values."
        )
        return
    click.echo(
        f"LEAK: {len(found)} finding(s): values that differ from what the source cut at their"
        " day gives, or what the set's code opened outside that cut:"
    )
    for difference in found[:50]:
        click.echo(f"  {difference.describe()}")
    if len(found) > 50:
        click.echo(f"  ... and {len(found) - 50} more")
    sys.exit(1)


@main.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Days to backfill (with --set, default: every partition of the set).",
)
@click.option(
    "--seconds-per-day",
    type=click.FloatRange(min=0, min_open=True),
    help="Compute seconds per day of a run (default: measured, else the benchmarks' figure).",
)
@click.option(
    "--from-history", is_flag=True, help="Measure seconds per day in this instance's runs."
)
@click.option("--days-per-run", type=click.IntRange(min=1), help="Default: the fastest choice.")
@click.option("--machine", type=click.Choice(sorted(MACHINES)), default="e2-standard-4")
@click.option("--spot/--on-demand", default=True, show_default=True)
@click.option("--vcpu-quota", type=click.IntRange(min=1), default=24, show_default=True)
@click.option("--max-concurrent-runs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--source-pool", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--vcpu-per-run", type=click.FloatRange(min=0.25), default=1.0, show_default=True)
@click.option("--pod-start", type=click.FloatRange(min=0), default=45.0, show_default=True)
@click.option(
    "--set",
    "set_name",
    help="Plan this feature set's backfill (its raw days stored): CPUs per pod, days per"
    " run, machine and nodes, from its measured seconds per race.",
)
@click.option(
    "--seconds-per-race",
    type=click.FloatRange(min=0, min_open=True),
    help="CPU seconds of the set's code per race (default: measured in run history).",
)
@click.option("--races-per-day", type=click.FloatRange(min=1), default=40, show_default=True)
@click.option(
    "--target-minutes",
    type=click.FloatRange(min=1),
    default=15,
    show_default=True,
    help="With --set/--seconds-per-race: the wall time to reach.",
)
@click.option("--trials", type=click.IntRange(min=1), help="Plan a search of this many trials.")
@click.option(
    "--seconds-per-trial",
    type=click.FloatRange(min=0, min_open=True),
    help="With --trials: seconds of one trial (default: measured in --study).",
)
@click.option("--study", help="With --trials: the study whose finished trials give the time.")
@click.option("--parallel", type=click.IntRange(min=1), default=15, show_default=True)
def plan(
    days: int | None,
    seconds_per_day: float | None,
    from_history: bool,
    days_per_run: int | None,
    set_name: str | None,
    seconds_per_race: float | None,
    races_per_day: float,
    target_minutes: float,
    trials: int | None,
    seconds_per_trial: float | None,
    study: str | None,
    parallel: int,
    **cluster_options,
) -> None:
    """Estimate runs, pods, vCPU, nodes, wall time and cost of a backfill on GKE.

    With --trials: a hyperparameter search (feature-assets tune) on --parallel pods.

    With --set or --seconds-per-race: a feature set's CPU-heavy backfill, planned to end
    within --target-minutes at the lowest cost within --vcpu-quota; when the quota cannot
    reach it, the fastest plan within it and the quota to request.
    """
    if trials:
        _plan_search(trials, seconds_per_trial, study, parallel, cluster_options)
        return
    if days is None and set_name:
        from feature_assets.defs.partitions import daily_partitions

        days = len(daily_partitions.get_partition_keys())  # the set's every partition
    if days is None:
        raise click.UsageError("give --days (a backfill), --set NAME or --trials (a search)")
    if set_name or seconds_per_race:
        _plan_feature_set(
            days, set_name, seconds_per_race, races_per_day, target_minutes, cluster_options
        )
        return
    source = "given"
    if from_history:
        with _instance() as instance:
            seconds_per_day = measured_seconds_per_day(instance)
        if seconds_per_day is None:
            raise click.UsageError("--from-history: this instance has no finished runs yet")
        source = "measured in this instance's finished runs"
    elif seconds_per_day is None:
        seconds_per_day, source = DEFAULT_SECONDS_PER_DAY, "from benchmarks/RESULTS.md"
    cluster = Cluster(**cluster_options)
    chosen = (
        estimate(days, days_per_run, seconds_per_day, cluster)
        if days_per_run
        else best_plan(days, seconds_per_day, cluster)
    )
    click.echo(chosen.describe())
    click.echo(
        f"(seconds per day {source}; {cluster.machine}, {'Spot' if cluster.spot else 'on-demand'})"
    )
    click.echo("\ndays per run   runs   wall min   cost $")
    for choice in sorted({*DAYS_PER_RUN_CHOICES, days}):
        if choice <= days:
            other = estimate(days, choice, seconds_per_day, cluster)
            mark = " <- recommended" if choice == chosen.days_per_run and not days_per_run else ""
            click.echo(
                f"{choice:>12} {other.runs:>6} {other.wall_seconds / 60:>10.1f}"
                f" {other.cost_usd:>8.2f}{mark}"
            )


def _plan_search(trials, seconds_per_trial, study, parallel, options) -> None:
    from feature_assets.ops.planning import estimate_search, measured_seconds_per_trial

    source = "given"
    if seconds_per_trial is None:
        if not study:
            raise click.UsageError("--trials: give --seconds-per-trial or --study")
        import optuna

        from feature_assets.training.search import open_storage

        storage = open_storage(settings.optuna_url(), settings.trial_heartbeat_seconds())
        try:
            measured = optuna.load_study(study_name=study, storage=storage)
        except KeyError:
            raise click.BadParameter(f"no study named {study!r}", param_hint="--study") from None
        seconds_per_trial = measured_seconds_per_trial(measured)
        if seconds_per_trial is None:
            raise click.UsageError(f"study {study} has no finished trial yet")
        source = f"measured in study {study} (one CPU a trial)"
    chosen = estimate_search(trials, seconds_per_trial, parallel, Cluster(**options))
    click.echo(chosen.describe())
    click.echo(f"(seconds per trial {source})")
    click.echo(f"then: feature-assets tune --trials {trials} --parallel {chosen.workers}")


def _plan_feature_set(days, set_name, seconds_per_race, races_per_day, target_minutes, options):
    from feature_assets.ops.planning import (
        SetWorkload,
        best_set_plan,
        measured_seconds_per_race,
        quota_advice,
    )

    history_days = 365
    source = "given"
    if set_name:
        from feature_assets.feature_sets import feature_set

        try:
            history_days = feature_set(set_name).history_days
        except KeyError as err:
            raise click.BadParameter(str(err.args[0]), param_hint="--set") from None
        if seconds_per_race is None:
            with _instance() as instance:
                seconds_per_race = measured_seconds_per_race(instance, set_name)
            if seconds_per_race is None:
                raise click.UsageError(
                    f"{set_name} has no materialised day with a measured time yet;"
                    " give --seconds-per-race"
                )
            source = "measured in this instance's materialisations"
    workload = SetWorkload(days, races_per_day, seconds_per_race, history_days)
    cluster = Cluster(**options)
    chosen, with_more_quota = best_set_plan(workload, cluster, target_minutes * 60)
    quota = f"{cluster.vcpu_quota:,} vCPU"
    if with_more_quota:
        click.echo(with_more_quota.describe())
        click.echo(
            f"(seconds per race {source}) finishes within {target_minutes:g} min but needs"
            f" {with_more_quota.node_vcpus:,} vCPU of quota, more than the {quota} given:"
            f" {quota_advice(with_more_quota, with_more_quota.node_vcpus)}, then plan again"
            f" with --vcpu-quota {with_more_quota.node_vcpus}. Within {quota} the fastest"
            f" plan takes {chosen.wall_seconds / 60:,.1f} min (${chosen.cost_usd:.2f}):"
            f" {chosen.nodes} {chosen.machine} node(s), {chosen.cpus_per_pod} CPUs a pod,"
            f" {chosen.days_per_run} days a run."
        )
    else:
        click.echo(chosen.describe())
        click.echo(f"(seconds per race {source}; quota {quota})")
        if chosen.wall_seconds <= target_minutes * 60:
            click.echo(f"meets the target of {target_minutes:g} min within the quota")
        else:
            click.echo(f"no plan reaches {target_minutes:g} min: one day alone takes longer")
    if set_name:
        from feature_assets.defs.feature_sets import k8s_run_tags

        [(tag, value)] = k8s_run_tags([feature_set(set_name)]).items()
        click.echo(
            f"runs of {set_name} ask for its declared pod (feature-assets backfill and the"
            f" automations tag them); for a backfill launched in the UI add the tag {tag}={value}"
        )
