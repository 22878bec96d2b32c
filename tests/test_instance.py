"""The batching PostgreSQL event log: same partition status, far fewer round trips."""

import datetime as dt

import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, instance_for_test
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets import demo
from feature_assets.instance import BatchedPostgresEventLogStorage
from feature_assets.partitions import daily_partitions
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.test_pipeline import ALL, _run

ASSETS = ["raw_races", "raw_race_entries", "race_features"]


def _instance(postgres_database):
    config = {"postgres_db": postgres_database}
    return instance_for_test(
        overrides={
            "run_storage": {
                "module": "dagster_postgres.run_storage",
                "class": "PostgresRunStorage",
                "config": config,
            },
            "event_log_storage": {
                "module": "feature_assets.instance",
                "class": "BatchedPostgresEventLogStorage",
                "config": config,
            },
        }
    )


def _statuses(instance, asset, days):
    return instance.get_status_by_partition(AssetKey(asset), days, daily_partitions)


@pytest.mark.parametrize("invalid_races", [0, 2])
def test_partition_status_with_batched_events(
    postgres_database, mysql_server, tmp_path, monkeypatch, invalid_races
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    stored_one_by_one = []
    store_event = BatchedPostgresEventLogStorage.store_event

    def spy(self, event):
        stored_one_by_one.append(event.dagster_event_type)
        return store_event(self, event)

    monkeypatch.setattr(BatchedPostgresEventLogStorage, "store_event", spy)
    data = demo.generate(FIRST_DAY, days=30, races_per_day=6, invalid_races=invalid_races, seed=3)
    days = [(FIRST_DAY + dt.timedelta(days=i)).isoformat() for i in range(30)]
    with fresh_mysql_database(mysql_server) as url, _instance(postgres_database) as instance:
        assert isinstance(instance.event_log_storage, BatchedPostgresEventLogStorage)
        demo.load(url, data)
        result = _run(url, str(tmp_path), instance, ALL, days[0], days[-1])
        assert result.success == (invalid_races == 0)

        planned = instance.fetch_planned_materializations(
            AssetRecordsFilter(asset_key=AssetKey("raw_races")), limit=100
        ).records
        assert sorted(r.partition_key for r in planned) == days
        assert DagsterEventType.ASSET_MATERIALIZATION_PLANNED not in stored_one_by_one

        for asset in ("raw_races", "raw_race_entries"):
            statuses = _statuses(instance, asset, days)
            assert set(statuses.values()) == {AssetPartitionStatus.MATERIALIZED}
        bad_days = {pd.Timestamp(str(r)[:8]).strftime("%Y-%m-%d") for r in data.invalid_race_ids}
        statuses = _statuses(instance, "race_features", days)
        failed = {day for day, status in statuses.items() if status == AssetPartitionStatus.FAILED}
        assert failed == bad_days
        materialized = [s for s in statuses.values() if s == AssetPartitionStatus.MATERIALIZED]
        assert len(materialized) == 30 - len(bad_days)
