"""A PostgreSQL event log that writes a run's planned-materialization events in batches.

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
"""

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterEventType, EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
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
