"""Options and helpers shared by the commands: the instance, asset and day arguments, the
daemon's presence."""

from __future__ import annotations

import time

import click


def open_instance():
    from dagster import DagsterInstance

    return DagsterInstance.get()


def days_in(text: str) -> list[str]:
    """Days from `D1,D2,...`, where each item is a day or a range FIRST...LAST."""
    from feature_assets.partitions import daily_partitions

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


def daemon_runs(instance, daemon: str = "BACKFILL") -> bool:
    """The dagster-daemon's `daemon` thread has beaten in the last two minutes."""
    beat = instance.get_daemon_heartbeats().get(daemon)
    return beat is not None and time.time() - beat.timestamp <= 120


def warn_without_daemon(instance, what: str = "the backfill waits") -> None:
    if not daemon_runs(instance):
        click.echo(
            f"Warning: no dagster-daemon is running for this instance; {what}"
            " until one starts (`dagster dev` or `dagster-daemon run`).",
            err=True,
        )


def deprecated_spelling(new: str):
    """A click callback for an option's old spelling: works for one more release, with a
    note on stderr naming the new one."""

    def note(ctx, param, value):
        if value not in (None, (), False):
            click.echo(
                f"Note: {param.opts[0]} is deprecated here; write {new} (the old spelling goes"
                " in the next release).",
                err=True,
            )
        return value

    return note


def asset_names(text: str, also: tuple[str, ...] = ()) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c'], each one known; `all` (or nothing) -> every asset.
    `also`: further names accepted when named, which `all` does not include."""
    from feature_assets.ops.status import all_assets

    names = [name.strip() for name in text.split(",") if name.strip()]
    if names in ([], ["all"]):
        return list(all_assets())
    known = (*all_assets(), *also)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise click.BadParameter(
            f"unknown asset(s): {', '.join(unknown)} (known: {', '.join(known)})",
            param_hint="--assets",
        )
    return names


assets_option = click.option(
    "--assets",
    default="all",
    show_default=True,
    help="Comma-separated assets: raw_races, raw_race_entries, feature sets; all: every one.",
)
