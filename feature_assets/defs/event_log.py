"""Event logs that store Dagster's batches of asset events in one go: PostgreSQL and SQLite.

Before a ranged run starts, Dagster records one ASSET_MATERIALIZATION_PLANNED event per
asset and day (three assets x 3,650 days = 10,950 events); partition status needs them to
show the days of a failed run as failed. Dagster already sends them as one batch when
`DAGSTER_EVENT_BATCH_SIZE` is set, but `PostgresEventLogStorage.store_event_batch` only
inserts materializations in bulk and stores every other event with its own round trips
(about 7 ms each: over a minute for ten years). This storage inserts a batch of planned
events with one statement and updates the asset index once per asset, exactly as Dagster
does for a batch of materializations.

Use it in dagster.yaml as the `event_log_storage` (see deploy/ and benchmarks/), with
DAGSTER_EVENT_BATCH_SIZE set in the run workers' environment.

`BatchedSqliteEventLogStorage` does the same for the embedded default: SQLite's event log
stores every event in a transaction of its own, twice for asset events (the run's file,
then the cross-run index), each opening a new engine: about 15 ms an event, minutes for the
planned and stored days of a long ranged run. It writes a batch in one transaction per
file. `dagster_home/dagster.yaml` uses it, and the code location sets
DAGSTER_EVENT_BATCH_SIZE (settings.enable_event_batches) so that Dagster sends batches.

Both also index each day's code version and store a check planned for many days at once
(`DayAwareIndexes`).
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterEventType, EventLogEntry, Field
from dagster._config import StringSource
from dagster._core.definitions.data_version import CODE_VERSION_TAG
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, BATCH_WRITABLE_EVENTS
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class DayAwareIndexes:
    """What both event logs add to Dagster's for runs of thousands of days.

    - The code version tag of asset events is indexed beside the data version (the only tag
      Dagster indexes), so the code version each stored day was computed by is one indexed
      query (`get_latest_tags_by_partition`) instead of every day's event deserialised
      (~0.75 ms a day: 2.7 s for ten years, in every run of a feature set: its stale-days
      check, feature_assets/ops/status.py).
    - A check planned for many days stores its rows as Dagster does, but with the event
      serialised once rather than once per day and the rows inserted as one batch (Dagster's
      `_store_asset_check_evaluation_planned`: 0.6 s per check for ten years).
    """

    def get_asset_tags_to_index(self, tag_keys: set[str]) -> set[str]:
        return super().get_asset_tags_to_index(tag_keys) | (tag_keys & {CODE_VERSION_TAG})

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = event.get_dagster_event().event_specific_data
        subset = planned.partitions_subset
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        days = subset.get_partition_keys() if subset else [None]
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(), [{**row, "partition": d} for d in days]
            )


class BatchedPostgresEventLogStorage(DayAwareIndexes, PostgresEventLogStorage):
    """`PostgresEventLogStorage` that also bulk-inserts batches of planned events."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "BatchedPostgresEventLogStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        planned_type = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        planned = [event for event in events if event.dagster_event_type == planned_type]
        others = [event for event in events if event.dagster_event_type != planned_type]
        if len(planned) < 2:
            super().store_event_batch(events)
            return
        # the run's asset-check plans come in the same batch: stored as Dagster stores them
        if others:
            super().store_event_batch(others)
        with self._connect() as conn:
            inserted = conn.execute(
                self.prepare_insert_event_batch(planned).returning(SqlEventLogStorageTable.c.id)
            )
            event_ids = [int(row[0]) for row in inserted.fetchall()]
        latest_by_asset = {}
        for event, event_id in zip(planned, event_ids, strict=True):
            latest_by_asset[event.dagster_event.asset_key] = (event, event_id)
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, planned, event_ids)
            for event, event_id in latest_by_asset.values():
                self._store_asset_event(conn, event, event_id)


class BatchedSqliteEventLogStorage(DayAwareIndexes, SqliteEventLogStorage):
    """`SqliteEventLogStorage` that stores a batch of one run's events in one transaction on
    the run's file and one on the index, updating each asset's index row once per batch.

    Configured with `dagster_home` (in dagster.yaml `{env: DAGSTER_HOME}`) it keeps its files
    in `<dagster_home>/storage`, where Dagster's default event log lives, so an instance
    switched to it keeps its history; or with `base_dir`, the folder itself."""

    @classmethod
    def config_type(cls):
        return {
            "dagster_home": Field(StringSource, is_required=False),
            "base_dir": Field(StringSource, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "BatchedSqliteEventLogStorage":
        if ("base_dir" in config_value) == ("dagster_home" in config_value):
            raise ValueError("BatchedSqliteEventLogStorage: give dagster_home or base_dir")
        if "base_dir" in config_value:
            return cls(base_dir=config_value["base_dir"], inst_data=inst_data)
        base_dir = os.path.join(config_value["dagster_home"], "storage")
        return cls(base_dir=base_dir, inst_data=inst_data)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        kinds = {event.dagster_event_type for event in events}
        if len({event.run_id for event in events}) != 1 or not kinds <= BATCH_WRITABLE_EVENTS:
            super().store_event_batch(events)  # one by one: what Dagster never batches
            return
        rows = [self._event_to_row(event) for event in events]  # each serialised once
        table = SqlEventLogStorageTable
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(table.insert(), rows)  # one statement compiled, executed per row
        kinds = [event.dagster_event_type for event in events]
        indexed = [i for i, kind in enumerate(kinds) if kind in ASSET_EVENTS | ASSET_CHECK_EVENTS]
        if not indexed:
            return
        returning = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        assets, asset_ids, checks = [], [], []
        with self.index_transaction() as conn:
            inserted = conn.execute(returning, [rows[i] for i in indexed])
            for i, (event_id,) in zip(indexed, inserted.all(), strict=True):
                if kinds[i] in ASSET_EVENTS:
                    assets.append(events[i])
                    asset_ids.append(event_id)
                else:
                    checks.append((events[i], event_id))
            self._store_asset_event_tags(conn, assets, asset_ids)
            latest = {  # per asset and kind: a planned event does not hide a stored one
                (event.dagster_event.asset_key, event.dagster_event_type): (event, event_id)
                for event, event_id in zip(assets, asset_ids, strict=True)
            }
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)
        for event, event_id in checks:  # as Dagster stores them, after their events
            self.store_asset_check_event(event, event_id)
