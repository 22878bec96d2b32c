"""The assets through Dagster: ranged runs, single days, invalid days, one connection a run."""

import datetime as dt

import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey, instance_for_test
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets.defs.features import feature_set_asset
from feature_assets.defs.raw import raw_snapshot
from feature_assets.feature_sets.race_features import race_features as built_in_set
from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.partitions import daily_partitions
from tests import reference
from tests.conftest import fresh_mysql_database
from tests.helpers import CONTRACT_ASSETS, materialize_range, nth_day
from tests.tcp_proxy import TcpProxy, proxied_url

FIRST_DAY = dt.date(2024, 1, 1)
DAYS = 120

race_features = feature_set_asset(built_in_set)


def _check_days(instance, asset, check):
    """(failing days, number of passing days) of a per-day asset check."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(asset), check), limit=1000
    )
    by_day = {r.partition: r.status for r in records if r.partition}
    failing = sorted(d for d, s in by_day.items() if s == AssetCheckExecutionRecordStatus.FAILED)
    passing = sum(s == AssetCheckExecutionRecordStatus.SUCCEEDED for s in by_day.values())
    return failing, passing


@pytest.fixture(scope="module")
def valid_data():
    return synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=24, seed=21)


@pytest.fixture(scope="module")
def valid_source(mysql_server, valid_data):
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, valid_data)
        yield url


def test_a_ranged_run_matches_the_reference_with_one_connection(
    valid_source, valid_data, mysql_server, tmp_path
):
    with instance_for_test() as instance, TcpProxy(mysql_server.host, mysql_server.port) as proxy:
        source = proxied_url(valid_source, proxy)
        result = materialize_range(
            source, str(tmp_path), instance, CONTRACT_ASSETS, nth_day(0), nth_day(DAYS - 1)
        )
        assert result.success
        assert proxy.connections == 1

    storage = DailyParquetStorage(str(tmp_path))
    races, entries = reference.rows_of(valid_data.races), reference.rows_of(valid_data.entries)
    for offset in [0, 1, 30, 89, 90, 91, 119]:
        got = reference.rows_of(storage.read_days("race_features", [nth_day(offset)]))
        want = reference.features_of_day(races, entries, dt.date.fromisoformat(nth_day(offset)))
        assert want and reference.mismatches(got, want) == [], nth_day(offset)
    raw = storage.read_days("raw_race_entries", [nth_day(o) for o in range(DAYS)])
    pd.testing.assert_frame_equal(raw, valid_data.entries)


def test_a_day_alone_in_a_range_and_in_a_full_run_are_identical(valid_source, tmp_path):
    full, parts = str(tmp_path / "full"), str(tmp_path / "parts")
    day = nth_day(100)
    with instance_for_test() as instance:
        assert materialize_range(
            valid_source, full, instance, CONTRACT_ASSETS, nth_day(0), nth_day(DAYS - 1)
        ).success
        assert materialize_range(
            valid_source, parts, instance, [raw_snapshot], nth_day(0), nth_day(DAYS - 1)
        ).success
        assert materialize_range(valid_source, parts, instance, [race_features], day).success
        alone = DailyParquetStorage(parts).read_days("race_features", [day])
        assert materialize_range(
            valid_source, parts, instance, [race_features], nth_day(95), nth_day(105)
        ).success
        in_range = DailyParquetStorage(parts).read_days("race_features", [day])
    in_full = DailyParquetStorage(full).read_days("race_features", [day])
    assert len(alone) > 0
    pd.testing.assert_frame_equal(alone, in_full)
    pd.testing.assert_frame_equal(in_range, in_full)


def test_features_need_their_history_materialised_first(valid_source, tmp_path):
    with instance_for_test() as instance:
        assert materialize_range(
            valid_source, str(tmp_path), instance, [raw_snapshot], nth_day(50)
        ).success
        result = materialize_range(
            valid_source, str(tmp_path), instance, [race_features], nth_day(50)
        )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "has no data for 50 day(s): 2024-01-01...2024-02-19" in error.to_string()


def test_invalid_days_fail_by_name_and_good_days_are_still_written(mysql_server, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=60, races_per_day=12, invalid_races=5, seed=4)
    bad_days = sorted(
        {pd.Timestamp(str(r)[:8]).strftime("%Y-%m-%d") for r in data.invalid_race_ids}
    )
    all_days = [nth_day(i) for i in range(60)]
    with fresh_mysql_database(mysql_server) as url, instance_for_test() as instance:
        synthetic.load(url, data)
        result = materialize_range(
            url, str(tmp_path), instance, CONTRACT_ASSETS, nth_day(0), nth_day(59)
        )
        assert not result.success
        message = result.get_step_failure_events()[0].step_failure_data.error.message
        for race_id, rule in data.invalid_race_ids.items():
            day = pd.Timestamp(str(race_id)[:8]).strftime("%Y-%m-%d")
            assert f"day {day}: invalid races" in message
            assert f"race_id {race_id}: {rule}" in message
        assert "Failure: invalid races on 5 day(s): " in message
        assert "race_features is not written for them" in message

        written = sorted(
            p.name.split("=")[1] for p in (tmp_path / "race_features").glob("race_date=*")
        )
        assert written == [day for day in all_days if day not in bad_days]
        assert len(list((tmp_path / "raw_races").glob("race_date=*"))) == 60  # stays whole

        statuses = instance.get_status_by_partition(
            AssetKey("race_features"), all_days, daily_partitions
        )
        failed = sorted(d for d, s in statuses.items() if s == AssetPartitionStatus.FAILED)
        assert failed == bad_days
        assert sum(s == AssetPartitionStatus.MATERIALIZED for s in statuses.values()) == 55

        # the per-day checks: the snapshot's warns on exactly the bad days, the features'
        # passes on every day that was written
        assert _check_days(instance, "raw_races", "no_invalid_races") == (bad_days, 55)
        assert _check_days(instance, "race_features", "one_row_per_valid_entry") == ([], 55)

        # the good days are the same as when computed alone
        good_day = next(day for day in reversed(all_days) if day not in bad_days)
        stored = DailyParquetStorage(str(tmp_path)).read_days("race_features", [good_day])
        alone = tmp_path / "alone"
        assert materialize_range(
            url, str(alone), instance, [raw_snapshot], nth_day(0), nth_day(59)
        ).success
        assert materialize_range(url, str(alone), instance, [race_features], good_day).success
        pd.testing.assert_frame_equal(
            stored, DailyParquetStorage(str(alone)).read_days("race_features", [good_day])
        )
