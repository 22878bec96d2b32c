"""`feature-assets tune`."""

from __future__ import annotations

import datetime as dt
import sys
import time

import click

from feature_assets import settings
from feature_assets.cli.options import daemon_runs, open_instance, warn_without_daemon

JUDGED_BY = {"binary": "log loss", "lambdarank": "NDCG@1"}  # a trial's value, by objective


@click.command()
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
@click.option(
    "--objective",
    type=click.Choice(["binary", "lambdarank"]),
    default="binary",
    show_default=True,
    help="What the models learn: each entry's win, or the order within each race"
    " (LightGBM lambdarank, one group per race; trials judged by NDCG@1, probabilities a"
    " softmax per race).",
)
def tune(trials: int, parallel: int, study: str | None, wait: bool, objective: str) -> None:
    """Tune the win model: TRIALS Optuna trials shared by PARALLEL runs.

    The trials wait in the study's database (FEATURE_ASSETS_OPTUNA_URL, default a SQLite
    file in DAGSTER_HOME); the daemon's `tuning_workers` sensor starts the runs. Without a
    running daemon, `--wait` runs them here instead, in one worker run of `tune_win_model`
    recorded on the instance (PARALLEL is then 1). Then materialise `win_model`.
    """
    from feature_assets.defs.resources import TrainingStorage
    from feature_assets.training import data, search

    here = wait and not daemon_runs(open_instance(), "SENSOR")
    parallel = 1 if here else parallel
    training = TrainingStorage(
        storage_url=settings.storage_url(),
        optuna_url=settings.optuna_url(),
        heartbeat_seconds=settings.trial_heartbeat_seconds(),
    )
    try:
        lineage = data.lineage_of(training.lake)
        name = study or f"win-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        started = search.start_search(
            training.studies(), name, trials, parallel, lineage["training_data"], objective
        )
        finished_before = sum(search.counts(started)[s] for s in ("COMPLETE", "PRUNED"))
    except (data.TrainingDataError, search.SearchError) as err:
        raise click.ClickException(str(err)) from None
    instance = open_instance()
    click.echo(
        f"study {name}: {trials} trial(s) queued for {parallel} worker run(s) on training data"
        f" {lineage['training_data']} ({lineage['first_day']}...{lineage['last_day']})"
    )
    if here:
        click.echo("no dagster-daemon runs for this instance: the trials run here", err=True)
        _run_here(instance, name)
    else:
        warn_without_daemon(instance, "the trials wait")
    if wait:
        counts = _follow_search(started, settings.trial_heartbeat_seconds())
        finished = counts["COMPLETE"] + counts["PRUNED"]
        if counts["COMPLETE"]:
            click.echo(
                f"best validation {JUDGED_BY[objective]} {started.best_value:.5f} (trial"
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


def _run_here(instance, study: str) -> None:
    """One worker run of the tuning job in this process, as the sensor would start it."""
    from feature_assets.definitions import defs
    from feature_assets.defs.training import STUDY_TAG, TUNE_JOB

    job = defs.resolve_job_def(TUNE_JOB)
    job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {"run_trials": {"config": {"study": study}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        tags={STUDY_TAG: study},
        raise_on_error=False,
    )


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
