"""The batching event logs (PostgreSQL, and SQLite, the local default): the same partition
status and records as Dagster's own, with the batches stored as batches."""

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    instance_for_test,
)
from dagster._core.definitions.data_version import CODE_VERSION_TAG
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus as CheckStatus,
)
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets.defs.event_log import (
    BatchedPostgresEventLogStorage,
    BatchedSqliteEventLogStorage,
)
from feature_assets.feature_sets.race_features import race_features
from feature_assets.io import synthetic
from feature_assets.ops.status import stale_days
from feature_assets.partitions import daily_partitions
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import CONTRACT_ASSETS, materialize_range

ASSETS = ["raw_races", "raw_race_entries", "race_features"]


def _instance(kind, postgres_database, folder):
    if kind == "sqlite":  # as dagster_home/dagster.yaml has it
        storage = {
            "module": "feature_assets.defs.event_log",
            "class": "BatchedSqliteEventLogStorage",
            "config": {"base_dir": str(folder / "storage")},
        }
        return instance_for_test(overrides={"event_log_storage": storage})
    config = {"postgres_db": postgres_database}
    return instance_for_test(
        overrides={
            "run_storage": {
                "module": "dagster_postgres.run_storage",
                "class": "PostgresRunStorage",
                "config": config,
            },
            "event_log_storage": {
                "module": "feature_assets.defs.event_log",
                "class": "BatchedPostgresEventLogStorage",
                "config": config,
            },
        }
    )


def _statuses(instance, asset, days):
    return instance.get_status_by_partition(AssetKey(asset), days, daily_partitions)


STORAGES = {"postgres": BatchedPostgresEventLogStorage, "sqlite": BatchedSqliteEventLogStorage}


@pytest.mark.parametrize("kind", sorted(STORAGES))
@pytest.mark.parametrize("invalid_races", [0, 2])
def test_partition_status_with_batched_events(
    postgres_database, mysql_server, tmp_path, monkeypatch, invalid_races, kind
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    storage_class = STORAGES[kind]
    stored_one_by_one = []
    store_event = storage_class.store_event

    def spy(self, event):
        stored_one_by_one.append(event.dagster_event_type)
        return store_event(self, event)

    monkeypatch.setattr(storage_class, "store_event", spy)
    data = synthetic.generate(
        FIRST_DAY, days=30, races_per_day=6, invalid_races=invalid_races, seed=3
    )
    days = [(FIRST_DAY + dt.timedelta(days=i)).isoformat() for i in range(30)]
    with (
        fresh_mysql_database(mysql_server) as url,
        _instance(kind, postgres_database, tmp_path) as instance,
    ):
        assert isinstance(instance.event_log_storage, storage_class)
        synthetic.load(url, data)
        result = materialize_range(url, str(tmp_path), instance, CONTRACT_ASSETS, days[0], days[-1])
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
        for asset in ASSETS:  # each stored day once, found by the cross-run index
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset)), limit=100
            ).records
            stored = sorted(r.partition_key for r in records)
            assert stored == (days if asset != "race_features" else sorted(set(days) - bad_days))
            latest = instance.get_latest_materialization_event(AssetKey(asset))
            assert latest is not None and latest.run_id == result.run_id
        # the per-day check: planned for every day at once, each day then evaluated
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("raw_races"), "no_invalid_races"), limit=1000
        )
        by_day = {r.partition: r.status for r in history if r.partition}  # and the run's own
        assert sorted(by_day) == days
        failed = {day for day, status in by_day.items() if status == CheckStatus.FAILED}
        assert failed == bad_days
        assert set(by_day.values()) <= {CheckStatus.SUCCEEDED, CheckStatus.FAILED}
        # each stored day's code version is indexed: the stale-days check reads only that
        versions = instance.event_log_storage.get_latest_tags_by_partition(
            AssetKey("race_features"), DagsterEventType.ASSET_MATERIALIZATION, [CODE_VERSION_TAG]
        )
        assert sorted(versions) == sorted(set(days) - bad_days)
        assert {tags[CODE_VERSION_TAG] for tags in versions.values()} == {
            race_features.code_version
        }
        assert stale_days(instance, race_features) == []
        if kind == "sqlite" and result.success:  # the days' materialisations came as batches
            assert DagsterEventType.ASSET_MATERIALIZATION not in stored_one_by_one
