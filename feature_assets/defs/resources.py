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
from feature_assets.io.source import ReadLimits, Snapshot, SourceLocation, read_snapshot
from feature_assets.io.storage import DailyParquetStorage, MissingDaysError, StoredDays


class SourceDatabase(ConfigurableResource):
    """The race-results database and the bounds of a read (`ReadLimits`, seconds; set
    from the FEATURE_ASSETS_SOURCE_* variables by `build_resources`). `url` is a secret
    when it holds a password: give it as `EnvVar("FEATURE_ASSETS_SOURCE_URL")` so Dagster
    never stores or shows its value."""

    url: str
    connect_attempts: int = 3
    reader: str = "arrow"  # or "pymysql" (see feature_assets.io.source)
    connect_timeout: int = ReadLimits.connect_timeout
    read_timeout: int = ReadLimits.read_timeout
    lock_wait_timeout: int = ReadLimits.lock_wait_timeout
    statement_timeout: int = ReadLimits.statement_timeout
    window_days: int = ReadLimits.window_days
    read_attempts: int = ReadLimits.attempts

    @property
    def location(self) -> SourceLocation:
        return SourceLocation.from_url(self.url)

    @classmethod
    def bounded(cls, url, reader: str, limits: ReadLimits) -> SourceDatabase:
        """The resource with the bounds of `limits` as its fields."""
        return cls(
            url=url,
            reader=reader,
            connect_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
            lock_wait_timeout=limits.lock_wait_timeout,
            statement_timeout=limits.statement_timeout,
            window_days=limits.window_days,
            read_attempts=limits.attempts,
        )

    @property
    def limits(self) -> ReadLimits:
        return ReadLimits(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            lock_wait_timeout=self.lock_wait_timeout,
            statement_timeout=self.statement_timeout,
            window_days=self.window_days,
            attempts=self.read_attempts,
        )

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
            self.limits,
            partitions,
            self.reader,
        )


def stored_schema(table: str):
    """What each day file of `table` must hold: a file that differs is damaged, never read
    as NULLs. None for a table that is not a raw asset or a registered set."""
    raw = {"raw_races": RACES_COLUMNS, "raw_race_entries": RACE_ENTRIES_COLUMNS}
    if table in raw:
        return arrow_schema(raw[table])
    for feature_set in registered_sets():
        if feature_set.name == table:
            return arrow_schema(feature_set.output_columns)
    return None


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
                table, list(context.asset_partition_keys), stored_schema(table)
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
    in_kubernetes: bool = False  # a pod: its SQLite file would be a study of its own
    validation_days: int = 365  # held out at the end of the window, before the test days
    test_days: int = 365  # held out last
    train_start: str = ""  # YYYY-MM-DD; empty: the first day any feature set stored
    train_end: str = ""  # YYYY-MM-DD; empty: the last day any feature set stored

    @property
    def lake(self) -> DailyParquetStorage:
        return DailyParquetStorage(self.storage_url)

    def studies(self):
        from feature_assets.training.search import open_storage

        if self.optuna_url.startswith("sqlite") and self.in_kubernetes:
            # each pod would tune on a study of its own, in a file that dies with the pod
            raise ValueError(
                "FEATURE_ASSETS_OPTUNA_URL is not set in this pod: a SQLite file is not shared"
                " between pods; set it to the Cloud SQL database (docs/gke.md)"
            )
        return open_storage(self.optuna_url, self.heartbeat_seconds)

    def has_studies(self) -> bool:
        """False while the default SQLite file does not exist (nothing was ever tuned):
        looking must not create it."""
        if not self.optuna_url.startswith("sqlite:///"):
            return True
        return Path(self.optuna_url.removeprefix("sqlite:///")).exists()


def training_window_fields() -> dict:
    """TrainingStorage's window fields, from the settings."""
    validation_days, test_days = settings.held_out_days()
    first, last = settings.training_window()
    return {
        "validation_days": validation_days,
        "test_days": test_days,
        "train_start": str(first or ""),
        "train_end": str(last or ""),
    }


class SlackAlerts(ConfigurableResource):
    """Where failed runs are posted: a bot `token` (a secret: `EnvVar("SLACK_BOT_TOKEN")`)
    and a `channel`; empty, the alert is off. `ui_url` is the base of the run link,
    `api_url` a proxy or a test server in place of Slack's API."""

    token: str = ""
    channel: str = ""
    ui_url: str = "http://localhost:3000"
    api_url: str = ""

    @property
    def on(self) -> bool:
        return bool(self.token and self.channel)

    def post(self, text: str) -> None:
        """Posts `text` to the channel (nothing when the alert is off)."""
        if not self.on:
            return
        from dagster_slack import SlackResource  # here: its Slack client costs every run 0.1 s

        client = SlackResource(token=self.token).get_client()
        if self.api_url:
            client.base_url = self.api_url.rstrip("/") + "/"
        client.chat_postMessage(channel=self.channel, text=text)


def build_resources() -> dict[str, object]:
    """The resources, configured once from the environment (`feature_assets.settings`);
    secrets go in as `EnvVar`, so Dagster never stores or shows their values."""
    source_url = (
        EnvVar("FEATURE_ASSETS_SOURCE_URL")
        if settings.source_url_is_set()
        else settings.default_source_url()
    )
    slack = settings.slack()
    return {
        "source": SourceDatabase.bounded(
            source_url, settings.source_reader(), ReadLimits(**settings.read_limits())
        ),
        "io_manager": DailyParquetIOManager(base_url=settings.storage_url()),
        "training": TrainingStorage(
            storage_url=settings.storage_url(),
            optuna_url=EnvVar("FEATURE_ASSETS_OPTUNA_URL")
            if settings.optuna_url_is_set()
            else settings.default_optuna_url(),
            heartbeat_seconds=settings.trial_heartbeat_seconds(),
            in_kubernetes=settings.in_kubernetes(),
            **training_window_fields(),
        ),
        "alerts": SlackAlerts(
            token=EnvVar("SLACK_BOT_TOKEN") if slack.token_is_set else "",
            channel=slack.channel,
            ui_url=slack.ui_url,
            api_url=slack.api_url,
        ),
    }


def check_source_url() -> None:
    """FEATURE_ASSETS_SOURCE_URL parses (a check of `settings.check_configuration`); its
    server is reached when a run reads it. The message never repeats the URL: it holds a
    password."""
    if settings.source_url_is_set():
        try:
            SourceLocation.from_url(os.environ["FEATURE_ASSETS_SOURCE_URL"])
        except ValueError as err:
            raise ValueError(f"FEATURE_ASSETS_SOURCE_URL: {err}") from None
