"""The Arrow-native MySQL reader (connectorx): the same snapshot as `feature_assets.io.source`'s
pymysql reader, bit for bit, about four times faster (ten years: 2.8 s against 10.8 s, at
about the same peak memory, ~590 MB).

What it keeps of the pymysql reader's promises, and how:

- **One connection, one consistent snapshot.** A run's whole range is one SELECT (races
  LEFT JOIN race_entries, split apart here), on one connection: a single statement reads
  one InnoDB snapshot, so races and entries agree. The same statement gives the server's
  clock and the count of races that belong to no partition. (The range is not cut in
  windows: at this speed ten years take seconds, shorter than one pymysql window.)
- **Bounded waits.** Connect: `tcp_connect_timeout_ms`. Lock waits and statement time:
  session variables set on the connection before the query, as the pymysql reader does.
  A stalled link: the driver has no read timeout, so `_StallWatch` reads the kernel's
  time since the socket last received data (TCP_INFO) and shuts the socket down after
  `read_timeout` seconds of silence; the read then fails as timed out and is retried.
- **The same errors.** The driver's errors arrive as text; they are turned into the
  pymysql errors they correspond to (server error codes kept), so retries and messages
  follow `feature_assets.io.source`. A connection the driver cannot open (its pool tries for
  30 s) is diagnosed by pymysql, which names the cause (access denied, unknown database).
- **Secrets.** The password travels only in the driver's URL; no message repeats it.
- **Types.** DECIMAL arrives as decimal128 and is converted through its exact decimal text
  to float64: correctly rounded, the same bits as pymysql's `float(text)`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import struct
import threading
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from feature_assets.core.schema import (
    RACE_ENTRIES_COLUMNS,
    RACES_COLUMNS,
    SOURCE_RACE_ENTRIES_COLUMNS,
    SOURCE_RACES_COLUMNS,
    arrow_schema,
)
from feature_assets.io.memory import release_unused_memory


def _driver():
    """connectorx, loaded on first use. Its pool logs each failed connection attempt to
    stderr (our own message says it), so its log is off unless RUST_LOG asks; the driver
    reads RUST_LOG when it loads."""
    os.environ.setdefault("RUST_LOG", "off")
    import connectorx

    return connectorx


class CannotConnect(ConnectionError):
    """The driver's pool gave up opening a connection (after 30 s of tries); its text
    rarely says why, so the caller asks pymysql, which names the cause at once."""


_RACE_COLUMNS = SOURCE_RACES_COLUMNS[2:]  # after race_id, race_date
_ENTRY_COLUMNS = SOURCE_RACE_ENTRIES_COLUMNS[1:]  # after race_id
# One statement: the one-row derived table makes even an empty range answer with the
# server's clock and the count of races outside the partitions.
QUERY = """
SELECT t.taken_at, t.outside, r.race_id, CAST(r.race_date AS DATE) AS race_date, {races},
  e.race_id AS entry_race_id, {entries}
FROM (SELECT UNIX_TIMESTAMP(NOW(6)) AS taken_at, {outside} AS outside) t
LEFT JOIN races r ON r.race_date >= '{first}' AND r.race_date < '{end}'
LEFT JOIN race_entries e ON e.race_id = r.race_id
"""
OUTSIDE = (
    "(SELECT COUNT(*) FROM races WHERE race_date IS NULL"
    " OR race_date < '{first}' OR race_date >= '{end}')"
)
_SERVER_ERROR = re.compile(r"ERROR (\d+) \(\w+\): (.*?)(?: \}|$)", re.S)
# the statement-time variable: MariaDB counts seconds, MySQL milliseconds
_MARIADB, _MYSQL = "max_statement_time", "max_execution_time"
_flavour_of: dict[tuple[str, int], str] = {}  # (host, port) -> the variable it knows


def read_range(location, first_day: dt.date, last_day: dt.date, limits, partitions=None):
    """(races, entries, taken_at, races_without_a_day) of the days `first_day .. last_day`;
    raises pymysql's errors (or ConnectionError, TimeoutError) for the caller's retries."""
    key = (location.host, location.port)
    flavour = _flavour_of.get(key, _MARIADB)
    try:
        table = _fetch(location, _statement(first_day, last_day, partitions), limits, flavour)
    except pymysql.err.OperationalError as err:
        if err.args[0] != 1193 or flavour != _MARIADB:  # 1193: unknown system variable
            raise
        flavour = _MYSQL
        table = _fetch(location, _statement(first_day, last_day, partitions), limits, flavour)
    _flavour_of[key] = flavour
    return _split(table, partitions is not None)


def _statement(first_day, last_day, partitions) -> str:
    bounds = {"first": first_day.isoformat(), "end": (last_day + dt.timedelta(days=1)).isoformat()}
    outside = "NULL"
    if partitions is not None:
        first, last = partitions
        end = (last + dt.timedelta(days=1)).isoformat()
        outside = OUTSIDE.format(first=first.isoformat(), end=end)
    return QUERY.format(
        races=", ".join(f"r.{c}" for c in _RACE_COLUMNS),
        entries=", ".join(f"e.{c}" for c in _ENTRY_COLUMNS),
        outside=outside,
        **bounds,
    )


def _session_settings(limits, flavour: str) -> list[str]:
    statement_time = limits.statement_timeout * (1000 if flavour == _MYSQL else 1)
    return [
        f"SET SESSION lock_wait_timeout = {int(limits.lock_wait_timeout)}",
        f"SET SESSION innodb_lock_wait_timeout = {int(limits.lock_wait_timeout)}",
        f"SET SESSION {flavour} = {int(statement_time)}",
    ]


def _url(location, limits) -> str:
    credentials = quote(location.user, safe="")
    if location.password:
        credentials += ":" + quote(location.password, safe="")
    # prefer_socket=false: the driver would otherwise open a second connection (a socket)
    return (
        f"mysql://{credentials}@{location.host}:{location.port}/{quote(location.database)}"
        f"?prefer_socket=false&tcp_connect_timeout_ms={int(limits.connect_timeout * 1000)}"
    )


def _fetch(location, query: str, limits, flavour: str) -> pa.Table:
    with _StallWatch(location.host, location.port, limits.read_timeout) as watch:
        try:
            return _driver().read_sql(
                _url(location, limits),
                query,
                return_type="arrow",
                pre_execution_query=_session_settings(limits, flavour),
            )
        except Exception as err:  # the driver raises RuntimeError with its error's text
            raise _as_pymysql_error(str(err), location, limits, watch.fired) from None


def _as_pymysql_error(text: str, location, limits, stalled: bool) -> Exception:
    text = _without_password(text, location)
    if stalled:
        return TimeoutError(
            f"timed out: no data from the server for {limits.read_timeout} s (a stalled link)"
        )
    server = _SERVER_ERROR.search(text)
    if "timed out waiting for connection" in text:
        return CannotConnect(f"cannot connect to the server: {text}")
    if server:
        return pymysql.err.OperationalError(int(server.group(1)), server.group(2).strip())
    if re.search(r"IoError|CodecError|DriverError|disconnected|bytes remaining", text):
        return ConnectionError(f"Lost connection to MySQL server during the read ({text})")
    return RuntimeError(text)


def _without_password(text: str, location) -> str:
    for secret in {location.password, quote(location.password, safe="")} - {""}:
        text = text.replace(secret, "***")
    return text


def _split(table: pa.Table, counted: bool):
    """The joined rows as the pymysql reader's two frames: typed in Arrow to the contract's
    schema (no Python objects but the text), or, where a value does not convert, handed on
    as they came so that the caller's typing names it."""
    taken_at = float(table.column("taken_at")[0].as_py())
    outside = table.column("outside")[0].as_py() if counted else None
    if table.column("race_id").null_count:  # the one row of an empty range
        table = table.filter(pc.is_valid(table.column("race_id")))
    race_ids = table.column("race_id").to_numpy()
    first_of_race = ~pd.Series(race_ids).duplicated().to_numpy()
    races = _frame(
        table.select(["race_id", "race_date", *_RACE_COLUMNS]).filter(first_of_race), RACES_COLUMNS
    )
    with_entry = table.column("entry_race_id")
    table = table.select(["race_id", "race_date", *_ENTRY_COLUMNS])
    if with_entry.null_count:  # races without entries
        table = table.filter(pc.is_valid(with_entry))
    entries = _frame(table, RACE_ENTRIES_COLUMNS)
    release_unused_memory()  # the joined rows' memory, back to the system
    return races, entries, taken_at, None if outside is None else int(outside)


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype()}


def _frame(table: pa.Table, columns: dict) -> pd.DataFrame:
    schema = arrow_schema(columns)
    try:
        typed = pa.table([_cast(table.column(f.name), f.type) for f in schema], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        frame = table.to_pandas()
        frame["race_date"] = pd.to_datetime(frame["race_date"]).astype("datetime64[ns]")
        return frame
    return typed.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _cast(values: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_decimal(values.type):  # through the exact decimal text: correctly rounded
        values = pc.cast(values, pa.string())
    return pc.cast(values, to)


class _StallWatch:
    """Shuts down this process's new sockets to host:port that receive nothing for
    `seconds` (the kernel's own TCP_INFO.last_data_recv), so a read blocked on a stalled
    link fails instead of hanging. Linux only; elsewhere a stall waits for TCP itself."""

    _POLL_SECONDS = 0.25
    _LAST_DATA_RECV = struct.Struct("I")  # tcp_info.tcpi_last_data_recv (ms), offset 52
    _LAST_DATA_RECV_OFFSET = 52

    def __init__(self, host: str, port: int, seconds: float):
        self._peers = {(address[4][0], port) for address in _addresses(host, port)}
        self._seconds = seconds
        self._stop = threading.Event()
        self.fired = False

    def __enter__(self) -> _StallWatch:
        if os.path.isdir("/proc/self/fd"):
            self._before = set(_socket_fds())
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self._POLL_SECONDS):
            for fd in set(_socket_fds()) - self._before:
                with contextlib.suppress(OSError):
                    self._check(fd)

    def _check(self, fd: int) -> None:
        with socket.socket(fileno=os.dup(fd)) as sock:  # a duplicate: closing it keeps fd
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return
            if sock.getpeername()[:2] not in self._peers:
                return
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            (silent_ms,) = self._LAST_DATA_RECV.unpack_from(info, self._LAST_DATA_RECV_OFFSET)
            if silent_ms >= self._seconds * 1000:
                self.fired = True
                sock.shutdown(socket.SHUT_RDWR)  # acts on the socket itself, not the dup


def _socket_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.append(int(name))
    return fds


def _addresses(host: str, port: int) -> list:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
