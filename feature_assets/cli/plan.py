"""`feature-assets plan`."""

from __future__ import annotations

import click

from feature_assets import settings
from feature_assets.cli.options import deprecated_spelling, open_instance
from feature_assets.ops.planning import (
    DAYS_PER_RUN_CHOICES,
    DEFAULT_SECONDS_PER_DAY,
    MACHINES,
    Cluster,
    best_plan,
    estimate,
    measured_seconds_per_day,
)


@click.command()
@click.option(
    "--day-count",
    "days",
    type=click.IntRange(min=1),
    help="How many days the backfill has (with --set, default: every partition).",
)
@click.option(
    "--days",
    "old_days",
    type=click.IntRange(min=1),
    hidden=True,
    callback=deprecated_spelling("--day-count N"),
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
    old_days: int | None,
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
    days = days or old_days
    if trials:
        _plan_search(trials, seconds_per_trial, study, parallel, cluster_options)
        return
    if days is None and set_name:
        from feature_assets.partitions import daily_partitions

        days = len(daily_partitions.get_partition_keys())  # the set's every partition
    if days is None:
        raise click.UsageError("give --day-count (a backfill), --set NAME or --trials (a search)")
    if set_name or seconds_per_race:
        _plan_feature_set(
            days, set_name, seconds_per_race, races_per_day, target_minutes, cluster_options
        )
        return
    source = "given"
    if from_history:
        with open_instance() as instance:
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
            with open_instance() as instance:
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
        from feature_assets.ops.pods import k8s_run_tags

        [(tag, value)] = k8s_run_tags([feature_set(set_name)]).items()
        click.echo(
            f"runs of {set_name} ask for its declared pod (feature-assets backfill and the"
            f" automations tag them); for a backfill launched in the UI add the tag {tag}={value}"
        )
