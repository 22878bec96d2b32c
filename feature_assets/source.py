"""Reading the source database: MySQL through pymysql, or SQLite for the embedded default.

A run reads its whole range of days through one connection, in one read-only,
consistent-snapshot transaction, with one query per table; rows are streamed in chunks.
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

from feature_assets.racing.schema import (
    RACE_ENTRIES_COLUMNS,
    RACES_COLUMNS,
    SOURCE_RACE_ENTRIES_COLUMNS,
    SOURCE_RACES_COLUMNS,
    typed_frame,
)

FETCH_ROWS = 20_000
log = logging.getLogger(__name__)

# DECIMAL arrives as float (the contract's float64), DATE as its ISO text: both far cheaper
# than pymysql's Decimal and datetime.date objects.
_MYSQL_CONVERSIONS = {
    **conversions,
    FIELD_TYPE.NEWDECIMAL: float,
    FIELD_TYPE.DECIMAL: float,
    FIELD_TYPE.DATE: str,
}

RACES_QUERY = f"""
SELECT {", ".join(SOURCE_RACES_COLUMNS)}
FROM races
WHERE race_date BETWEEN {{p}} AND {{p}}
"""
RACE_ENTRIES_QUERY = f"""
SELECT e.race_id, r.race_date, {", ".join("e." + c for c in SOURCE_RACE_ENTRIES_COLUMNS[1:])}
FROM race_entries e JOIN races r ON r.race_id = e.race_id
WHERE r.race_date BETWEEN {{p}} AND {{p}}
"""


class SourceUnavailableError(ConnectionError):
    """The source database cannot be reached or refuses us; says where, never the password."""


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


def connect(location: SourceLocation, attempts: int = 3, backoff_seconds: float = 1.0) -> Any:
    """A DB-API connection, retried with exponential backoff; a clear error after the last try."""
    if location.kind == "sqlite":
        attempts = 1  # a local file is there or not: waiting changes nothing
    for attempt in range(1, attempts + 1):
        try:
            return _open(location)
        except (pymysql.err.OperationalError, pymysql.err.InternalError, sqlite3.Error) as err:
            cause = err
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


def _open(location: SourceLocation) -> Any:
    if location.kind == "sqlite":
        path = Path(location.database)
        if not path.is_file():
            raise sqlite3.OperationalError(f"no such file: {path}")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return pymysql.connect(
        host=location.host,
        port=location.port,
        user=location.user,
        password=location.password,
        database=location.database,
        charset="utf8mb4",
        conv=_MYSQL_CONVERSIONS,
        connect_timeout=10,
    )


def read_snapshot(
    location: SourceLocation, first_day: dt.date, last_day: dt.date, connect_attempts: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(races, race_entries) of the days `first_day .. last_day`, from one consistent snapshot.

    Both frames carry `race_date`; rows are sorted by (race_id) and (race_id, lane).
    """
    bounds = (first_day.isoformat(), last_day.isoformat())
    connection = connect(location, attempts=connect_attempts)
    with contextlib.closing(connection):
        placeholder = _begin_snapshot(connection, location)
        races = _read_frame(connection, RACES_QUERY.format(p=placeholder), bounds, RACES_COLUMNS)
        entries = _read_frame(
            connection, RACE_ENTRIES_QUERY.format(p=placeholder), bounds, RACE_ENTRIES_COLUMNS
        )
        connection.rollback()  # read-only: nothing to keep
    races = races.sort_values("race_id", ignore_index=True)
    entries = entries.sort_values(["race_id", "lane"], ignore_index=True)
    return races, entries


def _begin_snapshot(connection: Any, location: SourceLocation) -> str:
    """Start the read-only snapshot transaction; returns the driver's parameter marker."""
    if location.kind == "sqlite":
        connection.execute("BEGIN")  # SQLite reads inside one transaction see one snapshot
        return "?"
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    return "%s"


def _read_frame(
    connection: Any, query: str, params: tuple, columns: dict[str, object]
) -> pd.DataFrame:
    # Each chunk is typed at once, so only one chunk of Python objects is alive at a time.
    chunks = [_typed_chunk(rows, columns) for rows in _stream_rows(connection, query, params)]
    if not chunks:
        return _typed_chunk([], columns)
    return pd.concat(chunks, ignore_index=True)


def _typed_chunk(rows: list[tuple], columns: dict[str, object]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame["race_date"] = pd.to_datetime(frame["race_date"], format="%Y-%m-%d")
    return typed_frame(frame, columns)


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
        cursor.close()
