"""Helpers shared by tests (and benchmarks): one place, imported, never copied."""

from __future__ import annotations

from dagster import AssetKey, materialize

from feature_assets.defs.feature_sets import feature_set_asset
from feature_assets.defs.partitions import daily_partitions
from feature_assets.defs.raw import raw_snapshot
from feature_assets.defs.resources import DailyParquetIOManager, SourceDatabase


def materialize_days(source_url, storage_url, instance, feature_sets, first, last, raw=True):
    """The raw assets (unless raw=False) and `feature_sets` for first..last in one ranged
    run, as a backfill runs them; failures are returned, not raised."""
    assets = [raw_snapshot, *(feature_set_asset(s) for s in feature_sets)]
    return materialize(
        assets,
        selection=assets if raw else assets[1:],
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        instance=instance,
        resources={
            "source": SourceDatabase(url=source_url),
            "io_manager": DailyParquetIOManager(base_url=storage_url),
        },
        raise_on_error=False,
    )


def partition_status(instance, asset: str, keys=None) -> dict:
    """day -> AssetPartitionStatus of `asset`, as the UI's partition bar shows it."""
    keys = keys or daily_partitions.get_partition_keys()
    return instance.get_status_by_partition(AssetKey(asset), keys, daily_partitions)
