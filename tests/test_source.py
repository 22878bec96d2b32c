"""Reading the source: a faithful snapshot, one connection, clear errors without secrets."""

import contextlib
import dataclasses
import datetime as dt
import socket
import threading

import pandas as pd
import pytest

from feature_assets.io import synthetic
from feature_assets.io.source import (
    READERS,
    ReadLimits,
    SourceLocation,
    SourceReadError,
    SourceUnavailableError,
    read_snapshot,
)
from tests.conftest import server_connection
from tests.tcp_proxy import TcpProxy

FIRST, LAST = dt.date(2024, 1, 10), dt.date(2024, 2, 20)


@pytest.fixture(params=READERS)
def reader(request) -> str:
    """Every MySQL read and fault below, through each reader: they keep the same promises."""
    return request.param


@pytest.fixture(scope="module")
def small_data():
    return synthetic.generate(
        dt.date(2024, 1, 1), days=60, races_per_day=14, invalid_races=9, seed=5
    )


def _expected(data, first=FIRST, last=LAST):
    in_range = data.races["race_date"].between(pd.Timestamp(first), pd.Timestamp(last))
    races = data.races[in_range].sort_values("race_id", ignore_index=True)
    entries = data.entries[data.entries["race_id"].isin(races["race_id"])]
    return races, entries.sort_values(["race_id", "lane"], ignore_index=True)


def test_mysql_snapshot_equals_the_source_rows_in_one_connection(
    reader, mysql_url, mysql_server, small_data
):
    synthetic.load(mysql_url, small_data)
    location = SourceLocation.from_url(mysql_url)
    with TcpProxy(location.host, location.port) as proxy:
        snapshot = read_snapshot(_through(proxy, location), FIRST, LAST, reader=reader)
        assert proxy.connections == 1
    races, entries = snapshot.races, snapshot.entries
    expected_races, expected_entries = _expected(small_data)
    pd.testing.assert_frame_equal(races, expected_races)
    pd.testing.assert_frame_equal(entries, expected_entries)
    assert races["weather"].isna().any() and entries["win_odds"].isna().any()


def test_entries_without_a_race_row_belong_to_no_day(reader, mysql_url, mysql_server, small_data):
    synthetic.load(mysql_url, small_data)
    location = SourceLocation.from_url(mysql_url)
    with contextlib.closing(server_connection(location, location.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO race_entries (race_id, lane, racer_id, racer_class, motor_no,"
                " boat_no) VALUES (999, 1, 1, 'A1', 1, 1)"
            )
    entries = read_snapshot(
        SourceLocation.from_url(mysql_url), dt.date(2000, 1, 1), dt.date(2030, 1, 1)
    ).entries
    assert 999 not in set(entries["race_id"])
    assert len(entries) == len(small_data.entries)


def test_sqlite_snapshot_equals_the_source_rows(tmp_path, small_data):
    url = f"sqlite:///{tmp_path}/source.sqlite"
    synthetic.load(url, small_data)
    snapshot = read_snapshot(SourceLocation.from_url(url), FIRST, LAST)
    races, entries = snapshot.races, snapshot.entries
    expected_races, expected_entries = _expected(small_data)
    pd.testing.assert_frame_equal(races, expected_races)
    pd.testing.assert_frame_equal(entries, expected_entries)


@pytest.mark.integration  # a refused connection to a port nobody serves
def test_unreachable_database_names_where_without_the_password(reader):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    location = SourceLocation.from_url(f"mysql://reader:Sup3r-s3cret@127.0.0.1:{port}/races")
    with pytest.raises(SourceUnavailableError) as raised:
        read_snapshot(location, FIRST, LAST, connect_attempts=2, reader=reader)
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "'races'" in message and "2 attempts" in message
    assert "Sup3r-s3cret" not in message and "Sup3r-s3cret" not in repr(raised.value)


def test_wrong_password_is_reported_without_the_password(reader, mysql_server, mysql_url):
    location = SourceLocation.from_url(mysql_url)
    wrong = SourceLocation.from_url(
        f"mysql://{location.user}:Wr0ng-pw@{location.host}:{location.port}/{location.database}"
    )
    with pytest.raises(SourceUnavailableError) as raised:
        read_snapshot(wrong, FIRST, LAST, connect_attempts=1, reader=reader)
    assert "Access denied" in str(raised.value)
    assert "Wr0ng-pw" not in str(raised.value)


@pytest.mark.parametrize(
    "url, problem",
    [
        ("postgres://u@h/db", "unsupported source URL scheme"),
        ("mysql://u@h", "looks like mysql://"),
        ("sqlite://", "looks like sqlite:///"),
    ],
)
def test_malformed_urls_say_what_is_expected(url, problem):
    with pytest.raises(ValueError, match=problem):
        SourceLocation.from_url(url)


def test_url_parts_are_decoded():
    location = SourceLocation.from_url("mysql://us%40er:p%3Ass@db.example:3307/races")
    assert (location.user, location.password, location.port) == ("us@er", "p:ss", 3307)
    assert "p:ss" not in location.describe()
    assert SourceLocation.from_url("sqlite:////abs/x.sqlite").database == "/abs/x.sqlite"


# Faults, replayed against the real server through a proxy the test owns ------------------

FAST = ReadLimits(read_timeout=2, lock_wait_timeout=1, attempts=3, backoff_seconds=0.2)


@pytest.fixture
def loaded_source(mysql_url, small_data):
    synthetic.load(mysql_url, small_data)
    return SourceLocation.from_url(mysql_url)


def _through(proxy: TcpProxy, location: SourceLocation) -> SourceLocation:
    return dataclasses.replace(location, host="127.0.0.1", port=proxy.port)


def _assert_equals_the_source(snapshot, data, first=FIRST, last=LAST):
    expected_races, expected_entries = _expected(data, first, last)
    pd.testing.assert_frame_equal(snapshot.races, expected_races)
    pd.testing.assert_frame_equal(snapshot.entries, expected_entries)


def test_a_link_cut_mid_read_is_read_again_from_a_fresh_snapshot(
    reader, loaded_source, small_data, caplog
):
    with TcpProxy(loaded_source.host, loaded_source.port) as proxy:
        proxy.cut_after_bytes(30_000, times=2)  # the first two tries lose the link mid-rows
        snapshot = read_snapshot(
            _through(proxy, loaded_source), FIRST, LAST, limits=FAST, reader=reader
        )
        # three tries, never two connections at once; the Arrow driver's pool may open a
        # replacement for a broken connection before it is dropped
        assert proxy.most_at_once == 1
        assert proxy.connections == 3 if reader == "pymysql" else 3 <= proxy.connections <= 5
    _assert_equals_the_source(snapshot, small_data)
    retries = [r.getMessage() for r in caplog.records if "fresh snapshot" in r.getMessage()]
    assert len(retries) == 2 and "Lost connection" in retries[0]


def test_a_link_that_keeps_dropping_fails_with_the_real_cause(reader, loaded_source):
    with TcpProxy(loaded_source.host, loaded_source.port) as proxy:
        proxy.cut_after_bytes(30_000, times=10)
        with pytest.raises(SourceUnavailableError) as raised:
            read_snapshot(_through(proxy, loaded_source), FIRST, LAST, limits=FAST, reader=reader)
    message = str(raised.value)
    assert "failed 3 times" in message and "Lost connection to MySQL server" in message
    assert "NoneType" not in message and "reading days 2024-01-10...2024-02-20" in message
    assert "timed out" not in message  # the link was cut, not stalled


def test_a_stalled_link_times_out_instead_of_hanging(reader, loaded_source):
    with TcpProxy(loaded_source.host, loaded_source.port) as proxy:
        proxy.stall_after_bytes(30_000)
        limits = dataclasses.replace(FAST, attempts=2)
        with pytest.raises(SourceUnavailableError, match="failed 2 times") as raised:
            read_snapshot(_through(proxy, loaded_source), FIRST, LAST, limits=limits, reader=reader)
    assert "timed out" in str(raised.value)


def test_a_table_lock_is_waited_for_boundedly_then_read(reader, loaded_source, small_data):
    locker = server_connection(loaded_source, loaded_source.database)
    with contextlib.closing(locker), locker.cursor() as cursor:
        cursor.execute("LOCK TABLES races WRITE")
        threading.Timer(1.5, lambda: cursor.execute("UNLOCK TABLES")).start()
        snapshot = read_snapshot(loaded_source, FIRST, LAST, limits=FAST, reader=reader)
    _assert_equals_the_source(snapshot, small_data)


def test_a_lock_held_for_good_fails_naming_the_wait(reader, loaded_source):
    locker = server_connection(loaded_source, loaded_source.database)
    with contextlib.closing(locker), locker.cursor() as cursor:
        cursor.execute("LOCK TABLES races WRITE")
        limits = dataclasses.replace(FAST, attempts=2)
        with pytest.raises(SourceUnavailableError) as raised:
            read_snapshot(loaded_source, FIRST, LAST, limits=limits, reader=reader)
    assert "Lock wait timeout exceeded" in str(raised.value)


def test_pymysql_reads_in_windows_equal_one_read(loaded_source, small_data):
    limits = dataclasses.replace(FAST, window_days=7)
    _assert_equals_the_source(
        read_snapshot(loaded_source, FIRST, LAST, limits=limits, reader="pymysql"), small_data
    )


@pytest.mark.parametrize(
    "statement, names",
    [
        ("ALTER TABLE race_entries CHANGE win_odds odds DECIMAL(7,1)", "Unknown column"),
        ("DROP TABLE race_entries", "race_entries' doesn't exist"),
    ],
)
def test_permanent_errors_fail_at_once_naming_where(reader, loaded_source, statement, names):
    with contextlib.closing(server_connection(loaded_source, loaded_source.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    with TcpProxy(loaded_source.host, loaded_source.port) as proxy:
        with pytest.raises(SourceReadError) as raised:
            read_snapshot(_through(proxy, loaded_source), FIRST, LAST, limits=FAST, reader=reader)
        assert proxy.connections == 1  # no retry: the same read fails the same way
    message = str(raised.value)
    assert names in message and f"'{loaded_source.database}'" in message
    assert "days 2024-01-10...2024-02-20" in message


def test_an_unconvertible_value_names_table_column_race_and_day(reader, loaded_source, small_data):
    race_id = int(small_data.entries["race_id"].iloc[500])
    with contextlib.closing(server_connection(loaded_source, loaded_source.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute("ALTER TABLE race_entries MODIFY win_odds VARCHAR(10)")
            cursor.execute(
                "UPDATE race_entries SET win_odds = 'N/A' WHERE race_id = %s AND lane = 1",
                (race_id,),
            )
    day = pd.Timestamp(str(race_id)[:8]).strftime("%Y-%m-%d")
    with pytest.raises(SourceReadError) as raised:
        read_snapshot(
            loaded_source, dt.date(2024, 1, 1), dt.date(2024, 2, 29), limits=FAST, reader=reader
        )
    assert f"race_entries.win_odds: value 'N/A' of race_id {race_id} on {day}" in str(raised.value)


def test_datetime_dates_map_to_their_day_and_dateless_races_are_counted(
    reader, loaded_source, small_data
):
    last_race = int(
        small_data.races["race_id"][small_data.races["race_date"] == pd.Timestamp(LAST)].iloc[0]
    )
    with contextlib.closing(server_connection(loaded_source, loaded_source.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute("ALTER TABLE races MODIFY race_date DATETIME NULL")
            cursor.execute(
                "UPDATE races SET race_date = race_date + INTERVAL 12 HOUR WHERE race_id = %s",
                (last_race,),
            )
            cursor.execute(
                "INSERT INTO races (race_id, race_date, venue_code, race_no, grade, distance_m)"
                " VALUES (1, NULL, 1, 1, 'IPPAN', 1800), (2, '2099-01-01', 1, 1, 'IPPAN', 1800)"
            )
    snapshot = read_snapshot(
        loaded_source,
        FIRST,
        LAST,
        limits=FAST,
        partitions=(dt.date(2024, 1, 1), LAST),
        reader=reader,
    )
    _assert_equals_the_source(snapshot, small_data)  # the noon race is on its day
    assert snapshot.races_without_a_day == 2 + int(
        (small_data.races["race_date"] > pd.Timestamp(LAST)).sum()
    )


def test_both_readers_give_the_same_frames_bit_for_bit(loaded_source):
    """Decimals at the edges of their columns (the Arrow reader converts them through their
    exact text), NULLs and text: every value, and every float's bits, the same."""
    with contextlib.closing(server_connection(loaded_source, loaded_source.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "UPDATE race_entries SET win_odds = CASE lane WHEN 1 THEN 999999.9 WHEN 2 THEN"
                " 0.1 WHEN 3 THEN 900719.9 ELSE win_odds END, exhibition_time = 99.99,"
                " start_timing = -0.07 WHERE race_id % 7 = 0"
            )
            cursor.execute(
                "UPDATE races SET wind_speed_mps = 0.3, weather = 'ü' WHERE race_id % 5 = 0"
            )
    arrow, plain = (
        read_snapshot(loaded_source, FIRST, LAST, limits=FAST, reader=reader)
        for reader in ("arrow", "pymysql")
    )
    for got, expected in ((arrow.races, plain.races), (arrow.entries, plain.entries)):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        floats = [c for c in got if got[c].dtype == "float64"]
        assert (
            got[floats].fillna(0).to_numpy().view("int64")
            == expected[floats].fillna(0).to_numpy().view("int64")
        ).all()
    assert (arrow.entries["win_odds"] == 999999.9).any() and arrow.races["weather"].eq("ü").any()
