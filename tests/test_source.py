"""Reading the source: a faithful snapshot, one connection, clear errors without secrets."""

import contextlib
import datetime as dt
import socket

import pandas as pd
import pytest

from feature_assets import demo
from feature_assets.source import SourceLocation, SourceUnavailableError, read_snapshot
from tests.conftest import connections_opened, server_connection

FIRST, LAST = dt.date(2024, 1, 10), dt.date(2024, 2, 20)


@pytest.fixture(scope="module")
def small_data():
    return demo.generate(dt.date(2024, 1, 1), days=60, races_per_day=14, invalid_races=9, seed=5)


def _expected(data, first=FIRST, last=LAST):
    in_range = data.races["race_date"].between(pd.Timestamp(first), pd.Timestamp(last))
    races = data.races[in_range].sort_values("race_id", ignore_index=True)
    entries = data.entries[data.entries["race_id"].isin(races["race_id"])]
    return races, entries.sort_values(["race_id", "lane"], ignore_index=True)


def test_mysql_snapshot_equals_the_source_rows_in_one_connection(
    mysql_url, mysql_server, small_data
):
    demo.load(mysql_url, small_data)
    location = SourceLocation.from_url(mysql_url)
    before = connections_opened(mysql_server)
    races, entries = read_snapshot(location, FIRST, LAST)
    assert connections_opened(mysql_server) - before == 2  # the snapshot's, and our count's
    expected_races, expected_entries = _expected(small_data)
    pd.testing.assert_frame_equal(races, expected_races)
    pd.testing.assert_frame_equal(entries, expected_entries)
    assert races["weather"].isna().any() and entries["win_odds"].isna().any()


def test_entries_without_a_race_row_belong_to_no_day(mysql_url, mysql_server, small_data):
    demo.load(mysql_url, small_data)
    location = SourceLocation.from_url(mysql_url)
    with contextlib.closing(server_connection(location, location.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO race_entries (race_id, lane, racer_id, racer_class, motor_no,"
                " boat_no) VALUES (999, 1, 1, 'A1', 1, 1)"
            )
    _, entries = read_snapshot(
        SourceLocation.from_url(mysql_url), dt.date(2000, 1, 1), dt.date(2030, 1, 1)
    )
    assert 999 not in set(entries["race_id"])
    assert len(entries) == len(small_data.entries)


def test_sqlite_snapshot_equals_the_source_rows(tmp_path, small_data):
    url = f"sqlite:///{tmp_path}/source.sqlite"
    demo.load(url, small_data)
    races, entries = read_snapshot(SourceLocation.from_url(url), FIRST, LAST)
    expected_races, expected_entries = _expected(small_data)
    pd.testing.assert_frame_equal(races, expected_races)
    pd.testing.assert_frame_equal(entries, expected_entries)


def test_unreachable_database_names_where_without_the_password():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    location = SourceLocation.from_url(f"mysql://reader:Sup3r-s3cret@127.0.0.1:{port}/races")
    with pytest.raises(SourceUnavailableError) as raised:
        read_snapshot(location, FIRST, LAST, connect_attempts=2)
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "'races'" in message and "2 attempts" in message
    assert "Sup3r-s3cret" not in message and "Sup3r-s3cret" not in repr(raised.value)


def test_wrong_password_is_reported_without_the_password(mysql_server, mysql_url):
    location = SourceLocation.from_url(mysql_url)
    wrong = SourceLocation.from_url(
        f"mysql://{location.user}:Wr0ng-pw@{location.host}:{location.port}/{location.database}"
    )
    with pytest.raises(SourceUnavailableError) as raised:
        read_snapshot(wrong, FIRST, LAST, connect_attempts=1)
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
