"""`feature-assets status`."""

from __future__ import annotations

import json
import sys

import click

from feature_assets.cli.options import (
    asset_names,
    assets_option,
    deprecated_spelling,
    open_instance,
)
from feature_assets.cli.output import status_advice, status_lines


@click.command()
@assets_option
@click.option(
    "--asset",
    "old_assets",
    multiple=True,
    hidden=True,
    callback=deprecated_spelling("--assets NAME[,NAME...]"),
)
@click.option("--verbose", is_flag=True, help="Every failed day with its own error.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, with every day's error.")
def status(assets: str, old_assets: tuple[str, ...], verbose: bool, as_json: bool) -> None:
    """Days materialised, failed, in progress and missing, per asset.

    Failed days are grouped by cause (the root error: the invalid race and rule, the
    exception's own message). Exits 0 only when every day is materialised. The race-day
    assets (predictions, prediction_results) are shown when named, from the day predicting
    started (FEATURE_ASSETS_PREDICT_START_DATE).
    """
    from feature_assets.ops.status import RACE_DAY_PARTITIONS, days_by_state

    names = asset_names(",".join(old_assets) or assets, also=tuple(RACE_DAY_PARTITIONS))
    with open_instance() as instance:
        states = days_by_state(instance, names)
    if as_json:
        click.echo(json.dumps([state.as_json() for state in states], indent=2))
    else:
        for state in states:
            for line in status_lines(state, verbose):
                click.echo(line)
        if not all(state.complete and not state.stale for state in states):
            click.echo(status_advice(states))
    sys.exit(0 if all(state.complete for state in states) else 1)
