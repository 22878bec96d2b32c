"""Reading the source database: MySQL, or SQLite for the embedded default.

MySQL has two readers (`READERS`, chosen by FEATURE_ASSETS_SOURCE_READER): `arrow`, the
default, reads through connectorx (`feature_assets.io.source_arrow`, one statement for a run's
range, about four times faster); `pymysql`, described here, serves sources the Arrow reader
cannot (a server or proxy it does not speak to). Both give the same frames, bit for bit.

The pymysql reader reads its range of days through one connection, in windows of whole days
(`ReadLimits.window_days`): each window is one read-only, consistent-snapshot transaction
with one query per table, so every day is consistent with itself, and the locks a
transaction holds (they keep the source's DDL, and the writers queued behind it, waiting)
last one window's read, not a ten-year one. Rows are streamed in chunks.

Faults: a connection lost or reset, a lock or statement timeout, is retried from a fresh
snapshot of the window with backoff, `ReadLimits.attempts` times in all, and the real error
stays in the message. Access denied, unknown database, table or column, and values that do
not convert fail at once, naming where (host, database, table, column, day, race_id).
Every wait is bounded: connect, each network read, lock waits and each statement.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE
from pymysql.converters import conversions

from feature_assets.core.schema import (
    RACE_ENTRIES_COLUMNS,
    RACES_COLUMNS,
    SOURCE_RACE_ENTRIES_COLUMNS,
    SOURCE_RACES_COLUMNS,
    typed_frame,
)
from feature_assets.settings import SOURCE_READERS

FETCH_ROWS = 20_000
READERS = SOURCE_READERS  # FEATURE_ASSETS_SOURCE_READER chooses
log = logging.getLogger(__name__)

# DECIMAL arrives as float (the contract's float64), DATE as its ISO text: both far cheaper
# than pymysql's Decimal and datetime.date objects.
_MYSQL_CONVERSIONS = {
    **conversions,
    FIELD_TYPE.NEWDECIMAL: float,
    FIELD_TYPE.DECIMAL: float,
    FIELD_TYPE.DATE: str,
}

# {day} is the dialect's date of race_date (a DATETIME source column maps to its date);
# the half-open range keeps a DATETIME at noon of the last day inside it, and uses the index.
RACES_QUERY = """
SELECT race_id, {day} AS race_date, {columns}
FROM races
WHERE race_date >= {p} AND race_date < {p}
"""
RACE_ENTRIES_QUERY = """
SELECT e.race_id, {day} AS race_date, {columns}
FROM race_entries e JOIN races r ON r.race_id = e.race_id
WHERE r.race_date >= {p} AND r.race_date < {p}
"""
# races that belong to no partition: no date, or a date outside the partitions
RACES_WITHOUT_A_DAY_QUERY = """
SELECT COUNT(*) FROM races WHERE race_date IS NULL OR race_date < {p} OR race_date >= {p}
"""
_DAY_EXPRESSION = {"mysql": "CAST({table}race_date AS DATE)", "sqlite": "DATE({table}race_date)"}

# MySQL client and server error codes
_TRANSIENT = {
    1205,  # lock wait timeout
    1213,  # deadlock
    1969,  # MariaDB: max_statement_time exceeded
    3024,  # MySQL: max_execution_time exceeded
    2003,  # cannot connect
    2006,  # server has gone away
    2013,  # lost connection during query
    2055,  # lost connection (system error)
}


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on every wait of a snapshot read, and its retries (see settings.py)."""

    connect_timeout: int = 10  # seconds to open a connection
    read_timeout: int = 120  # seconds without a byte from the server: a stalled link
    lock_wait_timeout: int = 60  # seconds a read waits for a table or row lock
    statement_timeout: int = 900  # seconds one statement may run on the server
    window_days: int = 366  # days per snapshot transaction
    attempts: int = 3  # tries of a window whose connection was lost
    backoff_seconds: float = 2.0  # first wait between tries, doubled each time


class SourceReadError(RuntimeError):
    """The source answered, but the read cannot succeed as asked: names where and why."""


class SourceUnavailableError(ConnectionError):
    """The source database cannot be reached or refuses us; says where, never the password."""


def _error_code(err: BaseException) -> int | None:
    args = getattr(err, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_transient(err: BaseException) -> bool:
    """A lost or reset connection, or a timeout: worth another try from a fresh snapshot."""
    if isinstance(err, ConnectionError | TimeoutError | pymysql.err.InterfaceError):
        return True
    return isinstance(err, pymysql.err.OperationalError) and _error_code(err) in _TRANSIENT


@dataclass(frozen=True)
class SourceLocation:
    """Where the source is, parsed from `mysql://user:password@host:port/db` or `sqlite:///path`."""

    kind: str
    database: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)  # never in a repr, log or message

    @classmethod
    def from_url(cls, url: str) -> SourceLocation:
        """Parses a source URL. Errors never repeat any part of it: it may hold a password."""
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme == "sqlite":
            # as in SQLAlchemy: sqlite:///relative/path, sqlite:////absolute/path
            path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
            if not path:
                raise ValueError("a SQLite source URL looks like sqlite:///path/to/file.sqlite")
            return cls(kind="sqlite", database=path)
        if scheme not in ("mysql", "mysql+pymysql"):
            raise ValueError(
                "unsupported source URL scheme: use mysql://user:password@host:3306/database"
                " or sqlite:///path"
            )
        authority = url.split("://", 1)[1]
        if "@" in authority and any(c in authority.rsplit("@", 1)[0] for c in "/?#"):
            raise ValueError(
                "the user or password of the MySQL source URL holds a '/', '?' or '#' that is"
                " not percent-encoded; encode each special character of the password"
                " (/ @ : # ? % as %2F %40 %3A %23 %3F %25), e.g. with"
                " urllib.parse.quote(password, safe='')"
            )
        try:
            parts = urlsplit(url)
            port = parts.port or 3306
        except ValueError:
            raise ValueError(
                "the MySQL source URL cannot be parsed (the port must be a number; special"
                " characters of the password must be percent-encoded)"
            ) from None
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database or "/" in database:
            raise ValueError(
                "a MySQL source URL looks like mysql://user:password@host:3306/database"
                " (this one lacks a host or a database name)"
            )
        return cls(
            kind="mysql",
            database=database,
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )

    def describe(self) -> str:
        """Where the source is, for messages and logs: everything but the password."""
        if self.kind == "sqlite":
            return f"SQLite database {self.database}"
        return f"MySQL database {self.database!r} at {self.host}:{self.port} as user {self.user!r}"


def connect(
    location: SourceLocation,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    limits: ReadLimits = ReadLimits(),
) -> Any:
    """A DB-API connection, retried with exponential backoff; a clear error after the last try."""
    if location.kind == "sqlite":
        attempts = 1  # a local file is there or not: waiting changes nothing
    for attempt in range(1, attempts + 1):
        try:
            return _open(location, limits)
        except (pymysql.err.OperationalError, pymysql.err.InternalError, sqlite3.Error) as err:
            cause = err
            if not is_transient(err) and location.kind == "mysql":
                # access denied, unknown database: asking again changes nothing
                raise SourceUnavailableError(
                    f"cannot connect to {location.describe()}: {err}"
                ) from None
            if attempt < attempts:
                wait = backoff_seconds * 2 ** (attempt - 1)
                log.warning(
                    f"cannot connect to {location.describe()} (attempt {attempt} of {attempts}):"
                    f" {err}; retrying in {wait:.1f} s"
                )
                time.sleep(wait)
    raise SourceUnavailableError(
        f"cannot connect to {location.describe()} after {attempts} attempts: {cause}"
    )


def _open(location: SourceLocation, limits: ReadLimits) -> Any:
    if location.kind == "sqlite":
        path = Path(location.database)
        if not path.is_file():
            raise sqlite3.OperationalError(f"no such file: {path}")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=limits.lock_wait_timeout)
    return pymysql.connect(
        host=location.host,
        port=location.port,
        user=location.user,
        password=location.password,
        database=location.database,
        charset="utf8mb4",
        conv=_MYSQL_CONVERSIONS,
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        write_timeout=limits.read_timeout,
    )


@dataclass
class Snapshot:
    """The rows of a range of days, and how many source races belong to no partition."""

    races: pd.DataFrame
    entries: pd.DataFrame
    # day -> when its snapshot was taken (the source server's clock, seconds since 1970)
    taken_at: dict[str, float] = field(default_factory=dict)
    races_without_a_day: int | None = None


def read_snapshot(
    location: SourceLocation,
    first_day: dt.date,
    last_day: dt.date,
    connect_attempts: int = 3,
    limits: ReadLimits = ReadLimits(),
    partitions: tuple[dt.date, dt.date] | None = None,
    reader: str = "arrow",
) -> Snapshot:
    """Races and race_entries of the days `first_day .. last_day`, each day from one
    consistent snapshot (see the module's docstring for windows, retries and timeouts).

    Both frames carry `race_date`; rows are sorted by (race_id) and (race_id, lane). With
    `partitions` (first, last day), the source's races outside them, or without a date, are
    counted. `reader` (one of `READERS`) applies to a MySQL source.
    """
    if reader not in READERS:
        raise ValueError(f"unknown source reader {reader!r}: use one of {', '.join(READERS)}")
    if location.kind == "mysql" and reader == "arrow":
        return _read_arrow(location, first_day, last_day, connect_attempts, limits, partitions)
    windows = []
    start = first_day
    while start <= last_day:
        end = min(last_day, start + dt.timedelta(days=limits.window_days - 1))
        windows.append((start, end))
        start = end + dt.timedelta(days=1)
    connection = None
    try:
        parts, outside = [], None
        for window in windows:
            connection, frames = _read_window(
                location, connection, window, connect_attempts, limits
            )
            parts.append(frames)
        if partitions is not None:
            connection, outside = _with_retries(
                location,
                connection,
                connect_attempts,
                limits,
                "counting races without a day",
                lambda conn: _count_without_a_day(conn, location, partitions),
            )
    finally:
        if connection is not None:
            _close_quietly(connection)
    races = pd.concat([p[0] for p in parts]).sort_values("race_id", ignore_index=True)
    entries = pd.concat([p[1] for p in parts]).sort_values(["race_id", "lane"], ignore_index=True)
    taken_at = {
        (first + dt.timedelta(days=i)).isoformat(): frames[2]
        for (first, last), frames in zip(windows, parts, strict=True)
        for i in range((last - first).days + 1)
    }
    return Snapshot(races, entries, taken_at, outside)


def _read_arrow(location, first_day, last_day, connect_attempts, limits, partitions):
    from feature_assets.io import source_arrow  # loads the driver only where it is used

    span = f"days {first_day}...{last_day}" if first_day != last_day else f"day {first_day}"

    def read(_):
        try:
            return source_arrow.read_range(location, first_day, last_day, limits, partitions)
        except source_arrow.CannotConnect:
            connect(location, connect_attempts, limits=limits).close()  # names the cause
            raise  # it connects now: a transient fault, read again

    _, (races, entries, taken_at, outside) = _with_retries(
        location, None, connect_attempts, limits, f"reading {span}", read, connected=False
    )
    races = _typed(races, RACES_COLUMNS, "races", span).sort_values("race_id", ignore_index=True)
    entries = _typed(entries, RACE_ENTRIES_COLUMNS, "race_entries", span)
    entries = entries.sort_values(["race_id", "lane"], ignore_index=True)
    days = (
        (first_day + dt.timedelta(days=i)).isoformat()
        for i in range((last_day - first_day).days + 1)
    )
    return Snapshot(races, entries, dict.fromkeys(days, taken_at), outside)


def _read_window(location, connection, window, connect_attempts, limits):
    first, last = window
    bounds = (first.isoformat(), (last + dt.timedelta(days=1)).isoformat())
    days = f"days {first}...{last}" if first != last else f"day {first}"

    def read(conn):
        placeholder = _begin_snapshot(conn, location, limits)
        taken_at = _server_time(conn)
        frames = tuple(
            _read_frame(conn, _query(template, location, placeholder), bounds, columns, table, days)
            for template, columns, table in (
                (RACES_QUERY, RACES_COLUMNS, "races"),
                (RACE_ENTRIES_QUERY, RACE_ENTRIES_COLUMNS, "race_entries"),
            )
        )
        conn.rollback()  # read-only: nothing to keep; ends the snapshot and frees its locks
        return (*frames, taken_at)

    return _with_retries(location, connection, connect_attempts, limits, f"reading {days}", read)


def _with_retries(location, connection, connect_attempts, limits, what, action, connected=True):
    """(connection, action(connection)), retried on a fresh connection after a transient
    fault, with backoff; the last fault's own message is kept. With `connected=False` the
    action opens its own connection (the Arrow reader) and gets None."""
    for attempt in range(1, limits.attempts + 1):
        if connection is None and connected:
            connection = connect(location, connect_attempts, limits=limits)
        try:
            return connection, action(connection)
        except Exception as err:
            _close_quietly(connection)  # never leave a snapshot open: it holds locks
            connection = None
            if isinstance(err, SourceReadError | SourceUnavailableError):
                raise
            if not is_transient(err):
                raise SourceReadError(f"{what} from {location.describe()}: {err}") from None
            if attempt == limits.attempts:
                raise SourceUnavailableError(
                    f"{what} from {location.describe()} failed {limits.attempts} times;"
                    f" the last error: {err}"
                ) from None
            wait = limits.backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                f"{what} from {location.describe()}: {err} (attempt {attempt} of"
                f" {limits.attempts}); reading again from a fresh snapshot in {wait:.1f} s"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):  # closing a dropped connection may fail; it is gone
        connection.close()


def _query(template: str, location: SourceLocation, placeholder: str) -> str:
    entries = template is RACE_ENTRIES_QUERY
    columns = SOURCE_RACE_ENTRIES_COLUMNS[1:] if entries else SOURCE_RACES_COLUMNS[2:]
    return template.format(
        day=_DAY_EXPRESSION[location.kind].format(table="r." if entries else ""),
        columns=", ".join(("e." if entries else "") + c for c in columns),
        p=placeholder,
    )


def _server_time(connection: Any) -> float:
    """The source's own clock, so that snapshots taken from different pods compare."""
    if isinstance(connection, sqlite3.Connection):
        return time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT UNIX_TIMESTAMP(NOW(6))")
        return float(cursor.fetchone()[0])


def _count_without_a_day(connection, location, partitions) -> int:
    first, last = partitions
    placeholder = "?" if location.kind == "sqlite" else "%s"
    bounds = (first.isoformat(), (last + dt.timedelta(days=1)).isoformat())
    query = RACES_WITHOUT_A_DAY_QUERY.format(p=placeholder)
    if location.kind == "sqlite":
        return int(connection.execute(query, bounds).fetchone()[0])
    with connection.cursor() as cursor:
        cursor.execute(query, bounds)
        return int(cursor.fetchone()[0])


def _begin_snapshot(connection: Any, location: SourceLocation, limits: ReadLimits) -> str:
    """Start the read-only snapshot transaction; returns the driver's parameter marker."""
    if location.kind == "sqlite":
        connection.execute("BEGIN")  # SQLite reads inside one transaction see one snapshot
        return "?"
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION lock_wait_timeout = %s", (limits.lock_wait_timeout,))
        cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", (limits.lock_wait_timeout,))
        try:  # MariaDB counts seconds, MySQL milliseconds (and names it otherwise)
            cursor.execute("SET SESSION max_statement_time = %s", (limits.statement_timeout,))
        except pymysql.err.OperationalError:
            cursor.execute(
                "SET SESSION max_execution_time = %s", (limits.statement_timeout * 1000,)
            )
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    return "%s"


def _read_frame(
    connection: Any,
    query: str,
    params: tuple,
    columns: dict[str, object],
    table: str,
    days: str,
) -> pd.DataFrame:
    # Each chunk is typed at once, so only one chunk of Python objects is alive at a time.
    chunks = [
        _typed_chunk(rows, columns, table, days) for rows in _stream_rows(connection, query, params)
    ]
    if not chunks:
        return _typed_chunk([], columns, table, days)
    return pd.concat(chunks, ignore_index=True)


def _typed_chunk(
    rows: list[tuple], columns: dict[str, object], table: str, days: str
) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame["race_date"] = pd.to_datetime(frame["race_date"], format="%Y-%m-%d")
    return _typed(frame, columns, table, days)


def _typed(frame: pd.DataFrame, columns: dict[str, object], table: str, days: str) -> pd.DataFrame:
    try:
        return typed_frame(frame, columns)
    except (ValueError, TypeError) as err:
        raise SourceReadError(_unconvertible(frame, columns, table, days) or str(err)) from None


def _unconvertible(frame: pd.DataFrame, columns: dict[str, object], table: str, days: str) -> str:
    """Names the first value that does not convert: table, column, value, race_id, day."""
    for name, dtype in columns.items():
        try:
            typed_frame(frame[[name]], {name: dtype})
            continue
        except (ValueError, TypeError):
            pass
        for index, value in frame[name].items():
            try:
                typed_frame(pd.DataFrame({name: [value]}), {name: dtype})
            except (ValueError, TypeError):
                row = frame.loc[index]
                return (
                    f"{table}.{name}: value {value!r} of race_id {row['race_id']} on"
                    f" {row['race_date']:%Y-%m-%d} cannot be read as {dtype} (reading {days})"
                )
    return ""


def _stream_rows(connection: Any, query: str, params: tuple) -> Iterator[list[tuple]]:
    """Yields rows in chunks; a MySQL result is streamed (unbuffered cursor), never held whole."""
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.execute(query, params)
    else:
        cursor = connection.cursor(pymysql.cursors.SSCursor)
        cursor.execute(query, params)
    try:
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield rows
    finally:
        # after a dropped link, closing an unbuffered cursor raises its own error, which
        # would replace the real one (pymysql: 'NoneType' object has no attribute 'read')
        with contextlib.suppress(Exception):
            cursor.close()
