"""`feature-assets check-leakage`."""

from __future__ import annotations

import os
import sys

import click

from feature_assets import settings
from feature_assets.cli.options import deprecated_spelling, open_instance


@click.command("check-leakage")
@click.argument("set_name", metavar="SET")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="How many stored days to recompute, spread over the stored range.",
)
@click.option(
    "--days",
    "old_sample",
    type=click.IntRange(min=1),
    hidden=True,
    callback=deprecated_spelling("--sample N"),
)
def check_leakage_command(set_name: str, sample: int, old_sample: int | None) -> None:
    """Recompute stored days of SET from a source cut at each day and report every value
    that differs, and every file, database or network address its code opens outside that
    cut: proof that it does not look ahead, even around the API.

    Each sampled day D is computed again with the source holding only rows up to D, D's
    results hidden, and no stored Parquet to read; a line per day says how it went. A day
    costs about what computing it costs (a day where the set's native code read stored
    files runs once more, to name the line). Exits 1 on any finding.
    """
    from feature_assets.feature_sets import feature_set
    from feature_assets.ops.leakage import check_stored_days, sample_days
    from feature_assets.ops.status import days_by_state

    try:
        chosen = feature_set(set_name)
    except KeyError as err:
        raise click.BadParameter(str(err.args[0]), param_hint="SET") from None
    with open_instance() as instance:
        [state] = days_by_state(instance, [chosen.name], with_errors=False)
    days = sample_days(state.materialized, old_sample or sample)
    if not days:
        raise click.ClickException(f"{chosen.name} has no materialised day to check yet")
    source_url = os.environ.get("FEATURE_ASSETS_SOURCE_URL") or settings.default_source_url()
    click.echo(f"Recomputing {len(days)} day(s) of {chosen.name} from a source cut at each day ...")

    def checked(day: str, of_day: list, seconds: float) -> None:
        verdict = f"{len(of_day)} finding(s)" if of_day else "no leak"
        click.echo(f"  {day}: {verdict} ({seconds:.1f} s)")

    found = check_stored_days(chosen, days, settings.storage_url(), source_url, checked)
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
