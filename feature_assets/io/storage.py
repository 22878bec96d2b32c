"""Daily Parquet storage in the contract's hive layout, and the Dagster IO manager over it.

`<storage>/<asset>/race_date=YYYY-MM-DD/data.parquet`, one file a day, without the
`race_date` column (it is the folder name). Works on a local path, a `file://` URL or
`gs://bucket/prefix` through pyarrow's filesystems. No Dagster here: the IO manager in
`feature_assets.defs.resources` wraps it.

Writes are atomic: locally a hidden temporary file (pyarrow datasets and DuckDB globs skip
names starting with '.') is renamed over the day's file; on GCS an object only appears once
its upload completes. Re-materialising a day replaces it.

Damage is caught, never read as other values: every page is written with a CRC checksum and
verified on read, and each day file's columns and types are checked against the table's
schema, so a flipped byte, a truncated file or a missing, renamed or retyped column fails
the read with the day and file named (`DamagedDayError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from feature_assets.core.dates import compact_days, day_labels
from feature_assets.io.memory import release_unused_memory

PARTITION_COLUMN = "race_date"
FILE_NAME = "data.parquet"
STAGING_FOLDER = ".staging"  # hidden: pyarrow datasets and DuckDB globs skip it
LOCK_FILE = ".write.lock"
SNAPSHOT_AT_KEY = b"feature_assets.snapshot_at"  # in each raw day file's key-value metadata
STALE_TEMPORARY_SECONDS = 3600  # a temporary file this old belongs to no live writer
HIVE_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.date32())]), flavor="hive")
GCS_EMULATOR_VARIABLE = "CLOUD_STORAGE_EMULATOR_ENDPOINT"  # read by pyarrow's GcsFileSystem
WRITE_THREADS = 8  # object stores answer one small upload at a time; overlap them


class MissingDaysError(FileNotFoundError):
    """Upstream days that were never materialised: say which, so they can be backfilled."""

    def __init__(self, message: str, table: str, days: Sequence[str]):
        super().__init__(message)
        self.table = table
        self.days = list(days)


class SnapshotTimes(Mapping[str, float]):
    """Day -> snapshot time of a read frame, kept in its `attrs`. pandas deep-copies `attrs`
    into the result of every operation (`NDFrame.__finalize__`); read-only, this mapping
    copies as itself, so a year of days costs nothing per operation (it cost ~0.2 s a day)."""

    def __init__(self, times: Mapping[str, float]):
        self._times = dict(times)

    def __getitem__(self, day: str) -> float:
        return self._times[day]

    def __iter__(self):
        return iter(self._times)

    def __len__(self) -> int:
        return len(self._times)

    def __deepcopy__(self, memo) -> SnapshotTimes:
        return self


@dataclass(frozen=True)
class StoredDays:
    """Stands for a table's days already written by the step (the IO manager writes nothing)."""

    table: str
    days: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class ReadInputs:
    """The input days a computation read, and when their snapshots were taken: its output
    days are written only while those inputs are still the stored ones."""

    table: str
    snapshot_at: Mapping[str, float]  # input day -> snapshot time as read
    readers: Callable[[str], Iterable[str]]  # input day -> the output days computed from it


class DamagedDayError(ValueError):
    """A stored day file that cannot be trusted: names the table, day, file and what is wrong."""


CHECKED_FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)


class DailyParquetStorage:
    """One table per asset, one Parquet file per day, under `url`."""

    def __init__(self, url: str):
        self.url = url
        if urlsplit(url).scheme in ("", "file"):
            self.filesystem: pafs.FileSystem = pafs.LocalFileSystem()
            path = urlsplit(url).path if url.startswith("file:") else url
            self.root = os.path.abspath(path)
        elif urlsplit(url).scheme == "gs" and os.environ.get(GCS_EMULATOR_VARIABLE):
            # pyarrow sends emulator requests to this endpoint; the emulator takes no
            # credentials, and looking for Google's would stall outside Google Cloud
            self.filesystem = pafs.GcsFileSystem(anonymous=True)
            self.root = f"{urlsplit(url).netloc}{urlsplit(url).path}".rstrip("/")
        else:
            self.filesystem, self.root = pafs.FileSystem.from_uri(url)
        self.is_local = isinstance(self.filesystem, pafs.LocalFileSystem)

    def table_path(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def day_path(self, table: str, day: str) -> str:
        return f"{self.table_path(table)}/{PARTITION_COLUMN}={day}/{FILE_NAME}"

    def write_days(self, table: str, frame: pd.DataFrame, days: Sequence[str]) -> None:
        """Write one file for each of `days` (an empty one for a day without rows).

        Every row's `race_date` must be one of `days`; within a day rows keep their order.
        """
        self.write_tables({table: frame}, days)

    def write_tables(
        self,
        frames: Mapping[str, pd.DataFrame],
        days: Sequence[str],
        snapshot_at: Mapping[str, float] | None = None,
        inputs: ReadInputs | None = None,
    ) -> list[str]:
        """Writes each day of every table in `frames` together: all files are staged first,
        then each day's files replace the old ones; a failed staging leaves nothing behind.

        Returns the days not written: with `snapshot_at` (day -> when the source snapshot of
        the day was taken), a day is replaced only by a snapshot at least as new as the
        stored one; with `inputs`, a day is not written if an input it was computed from has
        been replaced since it was read (another run stored a newer snapshot meanwhile).
        """
        slices = [
            (table, day, self._stamped(rows, snapshot_at, day))
            for table, frame in frames.items()
            for day, rows in _day_slices(table, frame, days)
        ]
        if not self.is_local:
            return self._upload(slices, snapshot_at, inputs)
        staged: dict[tuple[str, str], str] = {}
        try:
            with ThreadPoolExecutor(WRITE_THREADS) as pool:
                for key, temporary in pool.map(lambda item: self._stage(*item), slices):
                    staged[key] = temporary
            with self._commit_lock():
                return self._commit(list(frames), sorted(days), staged, snapshot_at, inputs)
        finally:
            for temporary in staged.values():
                if os.path.exists(temporary):
                    os.unlink(temporary)

    @staticmethod
    def _stamped(rows: pa.Table, snapshot_at: Mapping[str, float] | None, day: str) -> pa.Table:
        if snapshot_at is None:
            return rows
        metadata = {**(rows.schema.metadata or {}), SNAPSHOT_AT_KEY: repr(snapshot_at[day])}
        return rows.replace_schema_metadata(metadata)

    def _staging_dir(self, table: str) -> str:
        return f"{self.table_path(table)}/{STAGING_FOLDER}"

    def _stage(self, table: str, day: str, rows: pa.Table) -> tuple[tuple[str, str], str]:
        folder = self._staging_dir(table)
        os.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/{day}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(rows, temporary, write_page_checksum=True)
        except OSError as err:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise OSError(f"{table} day {day}: cannot write {temporary}: {err}") from err
        return (table, day), temporary

    @contextlib.contextmanager
    def _commit_lock(self):
        """Serialises the replacing of day files by every writer on this machine's disk."""
        os.makedirs(self.root, exist_ok=True)
        with open(f"{self.root}/{LOCK_FILE}", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _commit(
        self,
        tables: list[str],
        days: list[str],
        staged: dict[tuple[str, str], str],
        snapshot_at: Mapping[str, float] | None,
        inputs: ReadInputs | None,
    ) -> list[str]:
        kept = []
        stale = self._stale_days(inputs)
        # one listing per staging folder: a glob per day would read the whole folder (full of
        # this write's own temporaries) once for every day, quadratic in the days written
        staged_before = {table: self._temporaries_in(self._staging_dir(table)) for table in tables}
        for day in days:
            stored = self.snapshot_at(tables[0], day) if snapshot_at is not None else None
            if (stored is not None and stored > snapshot_at[day]) or day in stale:
                kept.append(day)
                continue
            for table in tables:
                path = self.day_path(table, day)
                os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                os.replace(staged.pop((table, day)), path)  # readers see the old or new day
                day_folder = path.rsplit("/", 1)[0]
                self._remove_stale(
                    [*staged_before[table].get(day, []), *glob.glob(f"{day_folder}/.*.tmp")]
                )
        return kept

    @staticmethod
    def _temporaries_in(folder: str) -> dict[str, list[str]]:
        """The staging folder's temporaries (`<day>.<id>.tmp`) by day."""
        by_day: dict[str, list[str]] = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".tmp"):
                    by_day.setdefault(entry.name.split(".", 1)[0], []).append(entry.path)
        return by_day

    @staticmethod
    def _remove_stale(temporaries: list[str]) -> None:
        """Those of `temporaries` a killed writer left (older than any live write)."""
        horizon = time.time() - STALE_TEMPORARY_SECONDS
        for leftover in temporaries:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(leftover) < horizon:
                    os.unlink(leftover)

    def _stale_days(self, inputs: ReadInputs | None) -> set[str]:
        """The output days computed from an input day that has been replaced since."""
        if inputs is None:
            return set()
        stale: set[str] = set()
        for day, read in inputs.snapshot_at.items():
            if self.snapshot_at(inputs.table, day) != read:
                stale.update(inputs.readers(day))
        return stale

    def _upload(self, slices, snapshot_at, inputs) -> list[str]:
        """An object store: each upload is atomic by itself; snapshot times are compared
        before the upload (not under a lock: a cloud writer racing within that moment wins)."""
        kept = self._stale_days(inputs)
        if snapshot_at is not None:
            table = slices[0][0] if slices else None
            for day in {day for _, day, _ in slices}:
                stored = self.snapshot_at(table, day)
                if stored is not None and stored > snapshot_at[day]:
                    kept.add(day)
        todo = [item for item in slices if item[1] not in kept]

        def upload(item):
            table, day, rows = item
            path = self.day_path(table, day)
            pq.write_table(rows, path, filesystem=self.filesystem, write_page_checksum=True)

        with ThreadPoolExecutor(WRITE_THREADS) as pool:
            list(pool.map(upload, todo))
        return sorted(kept)

    def snapshot_at(self, table: str, day: str) -> float | None:
        """When the source snapshot stored for the day was taken; None if none is stored."""
        path = self.day_path(table, day)
        try:
            metadata = pq.read_metadata(path, filesystem=self.filesystem).metadata or {}
        except (FileNotFoundError, OSError):
            return None
        value = metadata.get(SNAPSHOT_AT_KEY)
        return float(value) if value is not None else None

    def delete_days(self, table: str, days: Sequence[str]) -> None:
        """Removes the files of `days` (those that exist), so that no reader takes a day that
        failed for data its old file still shows."""
        paths = [self.day_path(table, day) for day in days]
        for info in self.filesystem.get_file_info(paths):
            if info.is_file:
                self.filesystem.delete_file(info.path)

    def count_rows(self, table: str) -> int:
        """Rows of every stored day of `table` (from the Parquet footers)."""
        selector = pafs.FileSelector(self.table_path(table), recursive=True)
        files = [
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.is_file and info.base_name == FILE_NAME
        ]
        return ds.dataset(files, filesystem=self.filesystem, format="parquet").count_rows()

    def stored_days(self, table: str) -> list[str]:
        """The days of `table` that have a day file, sorted."""
        selector = pafs.FileSelector(self.table_path(table), recursive=True, allow_not_found=True)
        return sorted(
            _day_of(info.path)
            for info in self.filesystem.get_file_info(selector)
            if info.is_file and info.base_name == FILE_NAME and f"{PARTITION_COLUMN}=" in info.path
        )

    def write_file(self, path: str, data: bytes) -> str:
        """Stores `data` at `path` under the root, replacing it at once (readers see the old
        or the new file); returns the full path."""
        target = f"{self.root.rstrip('/')}/{path}"
        if not self.is_local:  # an object appears once its upload completes
            with self.filesystem.open_output_stream(target) as stream:
                stream.write(data)
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temporary = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return target

    def read_file(self, path: str) -> bytes:
        """The bytes stored at `path` under the root; FileNotFoundError naming it if absent."""
        target = f"{self.root.rstrip('/')}/{path}"
        try:
            with self.filesystem.open_input_stream(target) as stream:
                return stream.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"nothing stored at {target}") from None

    def read_days(
        self, table: str, days: Sequence[str], schema: pa.Schema | None = None
    ) -> pd.DataFrame:
        """The rows of `days` as one DataFrame with its `race_date` column, in stored order.

        With `schema` (the table's columns, `race_date` among them), every file must hold
        exactly those columns but `race_date`, with those types, in that order; the frame's
        columns follow it.
        """
        days = sorted(days)
        paths = [self.day_path(table, day) for day in days]
        infos = self.filesystem.get_file_info(paths)
        missing = [day for day, info in zip(days, infos, strict=True) if not info.is_file]
        if missing:
            raise MissingDaysError(
                f"{table} has no data for {len(missing)} day(s): {compact_days(missing)};"
                f" materialise them first (storage {self.url})",
                table,
                missing,
            )
        file_schema = None
        if schema is not None:
            file_schema = schema.remove(schema.get_field_index(PARTITION_COLUMN))
        try:
            dataset = ds.dataset(
                paths,
                schema=None
                if file_schema is None
                else file_schema.append(HIVE_PARTITIONING.schema[0]),
                filesystem=self.filesystem,
                format=CHECKED_FORMAT,
                partitioning=HIVE_PARTITIONING,
                partition_base_dir=self.table_path(table),
            )
            stamps = {}
            if file_schema is not None:
                stamps = self._check_files(table, dataset, file_schema)
            arrow = dataset.to_table()
        except DamagedDayError:
            raise
        except (OSError, ValueError, pa.ArrowException) as err:  # ValueError: bad UTF-8 too
            raise self._damaged(table, paths, err) from None
        arrow = arrow.set_column(
            arrow.schema.get_field_index(PARTITION_COLUMN),
            PARTITION_COLUMN,
            arrow[PARTITION_COLUMN].cast(pa.timestamp("ns")),
        )
        if schema is None:
            arrow = arrow.select(_stored_column_order(dataset.schema, arrow.column_names))
        else:
            arrow = arrow.select(schema.names)
        # split_blocks + self_destruct: each column's Arrow memory is freed once converted
        frame = arrow.to_pandas(split_blocks=True, self_destruct=True)
        del arrow, dataset
        release_unused_memory()  # the files' buffers, back to the system
        frame.attrs["snapshot_at"] = SnapshotTimes(stamps)  # for `ReadInputs`
        return frame

    def _check_files(self, table: str, dataset: ds.Dataset, schema: pa.Schema) -> dict[str, float]:
        """Each file's own columns and types against `schema` (a dataset given a schema would
        read a missing column as NULLs); returns each day's snapshot time, where recorded."""
        stamps = {}
        for fragment in dataset.get_fragments():
            try:
                found = pa.schema([(field.name, field.type) for field in fragment.physical_schema])
            except (OSError, ValueError, pa.ArrowException) as err:
                raise self._damaged(table, [fragment.path], err) from None
            if found.equals(schema.remove_metadata()):
                value = (fragment.metadata.metadata or {}).get(SNAPSHOT_AT_KEY)
                if value is not None:
                    stamps[_day_of(fragment.path)] = float(value)
                continue
            expected = {field.name: field.type for field in schema}
            got = {field.name: field.type for field in found}
            problems = [f"missing column {name}" for name in expected if name not in got]
            problems += [f"unexpected column {name}" for name in got if name not in expected]
            problems += [
                f"{name} is {got[name]}, not {expected[name]}"
                for name in expected
                if name in got and got[name] != expected[name]
            ]
            raise DamagedDayError(
                f"{table} day {_day_of(fragment.path)}: file {fragment.path} does not hold the"
                f" table's columns ({'; '.join(problems) or 'columns out of order'});"
                " materialise the day again"
            )
        return stamps

    def _damaged(self, table: str, paths: Sequence[str], err: Exception) -> DamagedDayError:
        """Names the files among `paths` that fail to read whole, with their own errors."""
        broken = []
        for path in paths:
            try:
                whole = pq.read_table(
                    path, filesystem=self.filesystem, page_checksum_verification=True
                )
                [field.name for field in whole.schema]  # names decode lazily
            except (OSError, ValueError, pa.ArrowException) as file_err:
                broken.append(f"day {_day_of(path)}: file {path}: {file_err}")
        if not broken:  # only failed together: name them all
            broken = [f"day {_day_of(path)}: file {path}: {err}" for path in paths]
        listed = "; ".join(broken[:5]) + (
            f"; and {len(broken) - 5} more" if len(broken) > 5 else ""
        )
        return DamagedDayError(
            f"{table}: damaged day file(s), materialise the day(s) again: {listed or err}"
        )


def _day_slices(table: str, frame: pd.DataFrame, days: Sequence[str]) -> list[tuple[str, pa.Table]]:
    """(day, rows of the day without `race_date`) for each of `days`."""
    if not frame[PARTITION_COLUMN].is_monotonic_increasing:  # sorted already: no copy
        frame = frame.sort_values(PARTITION_COLUMN, kind="stable", ignore_index=True)
    row_days = day_labels(frame[PARTITION_COLUMN])
    unexpected = sorted(set(row_days) - set(days))
    if unexpected:
        raise ValueError(
            f"{table}: rows dated {compact_days(unexpected)} lie outside the days being"
            f" written ({compact_days(sorted(days))})"
        )
    if frame.attrs:  # a read frame's snapshot times belong to the run, not to the stored file
        frame = frame.copy(deep=False)
        frame.attrs = {}
    arrow = pa.Table.from_pandas(frame, preserve_index=False).drop_columns([PARTITION_COLUMN])
    sorted_days = np.array(sorted(days), dtype=str)
    starts = np.searchsorted(row_days, sorted_days, side="left")
    ends = np.searchsorted(row_days, sorted_days, side="right")
    return [
        (str(day), arrow.slice(start, end - start))
        for day, start, end in zip(sorted_days, starts, ends, strict=True)
    ]


def _day_of(path: str) -> str:
    return path.split(f"{PARTITION_COLUMN}=", 1)[-1][:10]


def _stored_column_order(schema: pa.Schema, loaded: Sequence[str]) -> list[str]:
    """The column order of the DataFrame that was written, `race_date` included."""
    pandas_metadata = (schema.metadata or {}).get(b"pandas")
    if not pandas_metadata:
        return list(loaded)
    written = [column["name"] for column in json.loads(pandas_metadata)["columns"]]
    return [name for name in written if name in loaded]
