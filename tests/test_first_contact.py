"""First contact: empty days, failed days leave no file, a readable status, repairing backfills."""

import contextlib
import datetime as dt
import json
import subprocess
import threading

import pandas as pd
import pyarrow.dataset as ds
import pytest
from dagster import AssetKey, instance_for_test
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets.core.schema import RACE_FEATURES_COLUMNS
from feature_assets.defs.features import feature_set_asset
from feature_assets.defs.raw import raw_snapshot
from feature_assets.feature_sets.race_features import race_features as built_in_set
from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.partitions import daily_partitions
from tests import reference
from tests.conftest import fresh_mysql_database, server_connection
from tests.helpers import (
    CONTRACT_ASSETS,
    REPO,
    backfill_command,
    backfill_targets,
    command_env,
    dagster_materialize,
    materialize_range,
)
from tests.tcp_proxy import TcpProxy, proxied_url

FIRST_DAY = dt.date(2024, 1, 1)
DATA_DAYS = 40
ALL_ASSETS = ("raw_races", "raw_race_entries", "race_features")

race_features = feature_set_asset(built_in_set)


def _day(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def _status(instance, asset):
    keys = daily_partitions.get_partition_keys()[:120]
    return instance.get_status_by_partition(AssetKey(asset), keys, daily_partitions)


def _feature_assets(env, *args):
    return subprocess.run(
        ["feature-assets", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_days_without_races_are_empty_files_with_the_full_schema(tmp_path):
    url = f"sqlite:///{tmp_path}/source.sqlite"
    synthetic.load(url, synthetic.generate(FIRST_DAY, days=DATA_DAYS, races_per_day=6, seed=3))
    storage = str(tmp_path / "parquet")
    empty_range = (_day(DATA_DAYS), _day(DATA_DAYS + 9))
    with instance_for_test() as instance:
        assert materialize_range(
            url, storage, instance, CONTRACT_ASSETS, _day(0), _day(DATA_DAYS - 1)
        ).success
        assert materialize_range(
            url, storage, instance, CONTRACT_ASSETS, *empty_range
        ).success  # a range of empty days
        assert materialize_range(
            url, storage, instance, CONTRACT_ASSETS, _day(DATA_DAYS + 10)
        ).success  # one empty day
        for asset in ALL_ASSETS:
            statuses = _status(instance, asset)
            assert all(
                statuses[_day(i)] == AssetPartitionStatus.MATERIALIZED
                for i in range(DATA_DAYS + 11)
            ), asset
    empty = ds.dataset(f"{storage}/race_features/race_date={_day(DATA_DAYS + 10)}")
    assert empty.count_rows() == 0
    stored = DailyParquetStorage(storage).read_days("race_features", [_day(DATA_DAYS + 3)])
    assert list(stored.columns) == list(RACE_FEATURES_COLUMNS) and stored.empty


@pytest.mark.e2e
def test_a_day_that_fails_has_no_file_and_backfill_failed_repairs_it(mysql_server, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=DATA_DAYS, races_per_day=8, seed=9)
    bad_day, race_id = (
        _day(30),
        int(data.races["race_id"][data.races["race_date"] == _day(30)].iloc[0]),
    )
    storage = str(tmp_path / "parquet")
    home = tmp_path / "dagster_home"
    env = command_env(tmp_path)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        location_db = url.rsplit("/", 1)[1]
        with instance_for_test(temp_dir=str(home)) as instance:
            assert materialize_range(
                url, storage, instance, CONTRACT_ASSETS, _day(0), _day(DATA_DAYS - 1)
            ).success
            assert DailyParquetStorage(storage).read_days("race_features", [bad_day]).size
            with contextlib.closing(server_connection(mysql_server, location_db)) as conn:
                with conn.cursor() as cursor:
                    cursor.execute(
                        "UPDATE races SET venue_code = 99 WHERE race_id = %s", (race_id,)
                    )
            result = materialize_range(url, storage, instance, CONTRACT_ASSETS, _day(25), _day(35))
            assert not result.success
            # the failed day's old file is gone; its neighbours are current
            lake = ds.dataset(f"{storage}/race_features", partitioning="hive")
            assert bad_day not in {f.split("race_date=")[1][:10] for f in lake.files}
            assert len(lake.files) == DATA_DAYS - 1

            status = _feature_assets(env, "status", "--assets", "race_features")
            assert status.returncode == 1
            assert f"{bad_day} (1 day(s)): invalid races: venue_code must be in 1..24" in (
                status.stdout
            )
            assert f"race_id {race_id}" in status.stdout
            assert "to fix: feature-assets backfill --failed --wait" in status.stdout
            verbose = _feature_assets(env, "status", "--verbose", "--json")
            [features] = [a for a in json.loads(verbose.stdout) if a["asset"] == "race_features"]
            assert (
                f"race_id {race_id}: venue_code must be in 1..24"
                in (features["errors"][bad_day]["detail"])
            )

            # fixed in the source: --failed snapshots the failed day again, then recomputes it
            with contextlib.closing(server_connection(mysql_server, location_db)) as conn:
                with conn.cursor() as cursor:
                    cursor.execute("UPDATE races SET venue_code = 1 WHERE race_id = %s", (race_id,))
            assert backfill_command(env, "--failed").returncode == 0
            [target] = backfill_targets(home)
            assert target == {
                a: [bad_day] for a in ("raw_races", "raw_race_entries", "race_features")
            }
            # what the daemon would run for that backfill, run here in process
            assert materialize_range(url, storage, instance, CONTRACT_ASSETS, bad_day).success
            assert _status(instance, "race_features")[bad_day] == AssetPartitionStatus.MATERIALIZED
    fixed = data.races.copy()
    fixed.loc[fixed["race_id"] == race_id, "venue_code"] = 1
    got = reference.rows_of(DailyParquetStorage(storage).read_days("race_features", [bad_day]))
    want = reference.features_of_day(
        reference.rows_of(fixed), reference.rows_of(data.entries), dt.date.fromisoformat(bad_day)
    )
    assert want and reference.mismatches(got, want) == []


@pytest.mark.e2e
def test_status_after_a_failed_500_day_run_fits_on_a_screen(tmp_path):
    url = f"sqlite:///{tmp_path}/source.sqlite"
    synthetic.load(url, synthetic.generate(FIRST_DAY, days=20, races_per_day=4, seed=2))
    home = tmp_path / "dagster_home"
    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE="2024-01-01")
    with instance_for_test(temp_dir=str(home)) as instance:
        # features of 500 days whose raw history was never stored: one cause for every day
        result = materialize_range(
            url, str(tmp_path / "pq"), instance, [race_features], _day(0), _day(499)
        )
        assert not result.success
    status = _feature_assets(env, "status")
    assert status.returncode == 1
    lines = status.stdout.splitlines()
    assert len(lines) <= 15, status.stdout
    assert (
        "2024-01-01...2025-05-14 (500 day(s)): MissingDaysError: raw_race_entries has no data"
        in status.stdout
    )
    assert max(map(len, lines)) <= 160


@pytest.mark.e2e
def test_features_of_a_range_bring_the_raw_history_that_is_not_stored(tmp_path):
    env = command_env(tmp_path)
    run = backfill_command(env, "--range", "2024-03-01...2024-03-03", "--assets", "race_features")
    assert run.returncode == 0, run.stderr
    [target] = backfill_targets(tmp_path / "dagster_home")
    history = [d.strftime("%Y-%m-%d") for d in pd.date_range("2024-01-01", "2024-03-03")]
    assert target == {
        "raw_races": history,
        "raw_race_entries": history,
        "race_features": ["2024-03-01", "2024-03-02", "2024-03-03"],
    }


def test_missing_history_names_the_command_that_fixes_it(tmp_path):
    url = f"sqlite:///{tmp_path}/source.sqlite"
    synthetic.load(url, synthetic.generate(FIRST_DAY, days=20, races_per_day=4, seed=2))
    with instance_for_test() as instance:
        assert materialize_range(
            url, str(tmp_path), instance, [raw_snapshot], _day(3), _day(9)
        ).success
        result = materialize_range(url, str(tmp_path), instance, [race_features], _day(9))
    error = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    fix = "feature-assets backfill --days 2024-01-01...2024-01-03 --assets raw_race_entries --wait"
    assert f"to fix: {fix}" in error


@pytest.mark.e2e
def test_a_bad_storage_url_is_reported_once_before_any_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = command_env(tmp_path, FEATURE_ASSETS_STORAGE_URL=str(blocker / "parquet"))
    run = dagster_materialize(env, tmp_path, "--partition", "2024-01-05")
    assert run.returncode != 0
    assert "FEATURE_ASSETS_STORAGE_URL" in run.stderr and "cannot write there" in run.stderr
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        assert instance.get_runs() == []  # no run, so no day recorded as failed


@pytest.mark.e2e
def test_a_reversed_range_is_named(tmp_path):
    env = command_env(tmp_path)
    run = dagster_materialize(env, tmp_path, "--partition-range", "2024-01-05...2024-01-01")
    assert run.returncode != 0
    assert "range 2024-01-05...2024-01-01 is reversed" in run.stdout + run.stderr


def test_overlapping_runs_keep_the_newest_snapshot(mysql_server, tmp_path):
    """Run 1 takes its snapshot, stalls mid-read; the source is corrected and run 2 stores
    the day; run 1 then finishes and writes last: the correction stays, and run 1 records
    the stored (newer) content for the day."""
    data = synthetic.generate(FIRST_DAY, days=20, races_per_day=8, seed=6)
    day = _day(10)
    race_id = int(data.races["race_id"][data.races["race_date"] == day].iloc[0])
    storage = str(tmp_path / "parquet")
    with (
        fresh_mysql_database(mysql_server) as url,
        TcpProxy(mysql_server.host, mysql_server.port) as proxy,
        instance_for_test() as instance,
    ):
        synthetic.load(url, data)
        proxy.stall_after_bytes(20_000)
        first = {}
        run_1 = threading.Thread(
            target=lambda: first.setdefault(
                "result",
                materialize_range(
                    proxied_url(url, proxy), storage, instance, [raw_snapshot], _day(0), _day(19)
                ),
            )
        )
        run_1.start()
        assert proxy.wait_until_stalled()
        with contextlib.closing(server_connection(mysql_server, url.rsplit("/", 1)[1])) as conn:
            with conn.cursor() as cursor:
                cursor.execute(
                    "UPDATE race_entries SET finish_position = 7 - finish_position"
                    " WHERE race_id = %s AND finish_position IS NOT NULL",
                    (race_id,),
                )
                conn.commit()
        second = materialize_range(url, storage, instance, [raw_snapshot], _day(5), _day(15))
        assert second.success
        proxy.resume()
        run_1.join(120)
        assert first["result"].success
        logs = [e.user_message for e in instance.all_logs(first["result"].run_id)]
        assert any(
            f"kept the newer snapshot that another run stored for {_day(5)}" in m for m in logs
        )
        hashes = [
            {
                m.partition: m.metadata["content_hash"].value
                for m in result.asset_materializations_for_node("raw_snapshot")
                if m.asset_key == AssetKey("raw_races")
            }[day]
            for result in (first["result"], second)
        ]
    stored = DailyParquetStorage(storage).read_days("raw_race_entries", [day])
    corrected = stored[stored["race_id"] == race_id].set_index("lane")["finish_position"]
    original = data.entries[data.entries["race_id"] == race_id].set_index("lane")
    assert (corrected == 7 - original["finish_position"]).dropna().all()
    assert corrected.notna().any()
    assert hashes[0] == hashes[1]  # run 1 describes what is stored, not what it read
