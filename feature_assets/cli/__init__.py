"""`feature-assets`: the command line, one module per command; `options` holds what they
share and `output` how they print. The work is in library modules (`ops`, `io`, `training`)."""

import click

from feature_assets.cli.backfill import backfill
from feature_assets.cli.check_leakage import check_leakage_command
from feature_assets.cli.demo import demo
from feature_assets.cli.plan import plan
from feature_assets.cli.predict import predict
from feature_assets.cli.status import status
from feature_assets.cli.tune import tune
from feature_assets.io import memory


@click.group()
def main() -> None:
    """Point-in-time race features as daily-partitioned Dagster assets."""
    memory.use_the_system_allocator()  # as the code location does, for in-process runs


for command in (demo, predict, status, backfill, plan, tune, check_leakage_command):
    main.add_command(command)
