"""The resources of the code location, and the choice of them from the environment."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, EnvVar, InputContext, OutputContext

from feature_assets import settings
from feature_assets.core.dates import compact_days
from feature_assets.core.schema import RACE_ENTRIES_COLUMNS, RACES_COLUMNS, arrow_schema
from feature_assets.feature_sets import registered_sets
from feature_assets.io.source import Snapshot, SourceLocation, read_snapshot
from feature_assets.io.storage import DailyParquetStorage, MissingDaysError, StoredDays


class SourceDatabase(ConfigurableResource):
    """The race-results database. `url` is a secret when it holds a password: give it as
    `EnvVar("FEATURE_ASSETS_SOURCE_URL")` so Dagster never stores or shows its value."""

    url: str
    connect_attempts: int = 3

    @property
    def location(self) -> SourceLocation:
        return SourceLocation.from_url(self.url)

    def read_snapshot(
        self,
        first_day: dt.date,
        last_day: dt.date,
        partitions: tuple[dt.date, dt.date] | None = None,
    ) -> Snapshot:
        return read_snapshot(
            self.location,
            first_day,
            last_day,
            self.connect_attempts,
            settings.read_limits(),
            partitions,
            settings.source_reader(),
        )


# What each asset's day files must hold: a file that differs is damaged, never read as NULLs.
STORED_SCHEMAS = {
    "raw_races": arrow_schema(RACES_COLUMNS),
    "raw_race_entries": arrow_schema(RACE_ENTRIES_COLUMNS),
    **{s.name: arrow_schema(s.output_columns) for s in registered_sets()},
}


class DailyParquetIOManager(ConfigurableIOManager):
    """Stores each day of a daily-partitioned asset as hive-style Parquet under `base_url`.

    Dagster's `UPathIOManager` refuses an output that spans several partitions (dagster
    issues #14332, #21072) and logs an event per loaded partition. Here a ranged run's output
    is written day by day, and an input over many upstream days (a 365-day history window)
    is loaded as one DataFrame, without per-day events.
    """

    base_url: str

    @property
    def storage(self) -> DailyParquetStorage:
        return DailyParquetStorage(self.base_url)

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | StoredDays) -> None:
        table = "/".join(context.asset_key.path)
        days = list(context.asset_partition_keys)
        if not isinstance(obj, StoredDays):  # StoredDays: the step wrote them itself
            self.storage.write_days(table, obj, days)
        context.add_output_metadata(
            {
                "storage": self.storage.table_path(table),
                "days_in_run": len(days),
                "rows_in_run": obj.rows if isinstance(obj, StoredDays) else len(obj),
            }
        )

    def load_input(self, context: InputContext) -> pd.DataFrame:
        table = "/".join(context.asset_key.path)
        try:
            return self.storage.read_days(
                table, list(context.asset_partition_keys), STORED_SCHEMAS.get(table)
            )
        except MissingDaysError as err:
            fix = (
                f"feature-assets backfill --days {compact_days(err.days, separator=',')}"
                f" --assets {err.table} --wait"
            )
            raise MissingDaysError(f"{err}\nto fix: {fix}", err.table, err.days) from None


class TrainingStorage(ConfigurableResource):
    """Where training reads and writes: the Parquet lake (`storage_url`) and the Optuna
    studies' database (`optuna_url`, a secret when it holds a password: given as
    `EnvVar("FEATURE_ASSETS_OPTUNA_URL")`, never stored or shown by Dagster)."""

    storage_url: str
    optuna_url: str
    heartbeat_seconds: int = 30

    @property
    def lake(self) -> DailyParquetStorage:
        return DailyParquetStorage(self.storage_url)

    def studies(self):
        from feature_assets.training.search import open_storage

        if self.optuna_url.startswith("sqlite") and os.environ.get("KUBERNETES_SERVICE_HOST"):
            # each pod would tune on a study of its own, in a file that dies with the pod
            raise ValueError(
                "FEATURE_ASSETS_OPTUNA_URL is not set in this pod: a SQLite file is not shared"
                " between pods; set it to the Cloud SQL database (README, Run it on GKE)"
            )
        return open_storage(self.optuna_url, self.heartbeat_seconds)

    def has_studies(self) -> bool:
        """False while the default SQLite file does not exist (nothing was ever tuned):
        looking must not create it."""
        if not self.optuna_url.startswith("sqlite:///"):
            return True
        return Path(self.optuna_url.removeprefix("sqlite:///")).exists()


def build_resources() -> dict[str, object]:
    # EnvVar keeps the URL (and its password) out of run config, the UI and the event log.
    source_url = (
        EnvVar("FEATURE_ASSETS_SOURCE_URL")
        if settings.source_url_is_set()
        else settings.default_source_url()
    )
    return {
        "source": SourceDatabase(url=source_url),
        "io_manager": DailyParquetIOManager(base_url=settings.storage_url()),
        "training": TrainingStorage(
            storage_url=settings.storage_url(),
            optuna_url=EnvVar("FEATURE_ASSETS_OPTUNA_URL")
            if settings.optuna_url_is_set()
            else settings.default_optuna_url(),
            heartbeat_seconds=settings.trial_heartbeat_seconds(),
        ),
    }
