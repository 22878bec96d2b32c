"""Daily Parquet storage in the contract's hive layout, and the Dagster IO manager over it.

`<storage>/<asset>/race_date=YYYY-MM-DD/data.parquet`, one file a day, without the
`race_date` column (it is the folder name). Works on a local path, a `file://` URL or
`gs://bucket/prefix` through pyarrow's filesystems. No Dagster here: the IO manager in
`feature_assets.resources` wraps it.

Writes are atomic: locally a hidden temporary file (pyarrow datasets and DuckDB globs skip
names starting with '.') is renamed over the day's file; on GCS an object only appears once
its upload completes. Re-materialising a day replaces it.

Damage is caught, never read as other values: every page is written with a CRC checksum and
verified on read, and each day file's columns and types are checked against the table's
schema, so a flipped byte, a truncated file or a missing, renamed or retyped column fails
the read with the day and file named (`DamagedDayError`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from feature_assets.dates import compact_days, day_labels

PARTITION_COLUMN = "race_date"
FILE_NAME = "data.parquet"
HIVE_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.date32())]), flavor="hive")
GCS_EMULATOR_VARIABLE = "CLOUD_STORAGE_EMULATOR_ENDPOINT"  # read by pyarrow's GcsFileSystem
WRITE_THREADS = 8  # object stores answer one small upload at a time; overlap them


class MissingDaysError(FileNotFoundError):
    """Upstream days that were never materialised: say which, so they can be backfilled."""

    def __init__(self, message: str, table: str, days: Sequence[str]):
        super().__init__(message)
        self.table = table
        self.days = list(days)


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
        frame = frame.sort_values(PARTITION_COLUMN, kind="stable", ignore_index=True)
        row_days = day_labels(frame[PARTITION_COLUMN])
        unexpected = sorted(set(row_days) - set(days))
        if unexpected:
            raise ValueError(
                f"{table}: rows dated {compact_days(unexpected)} lie outside the days being"
                f" written ({compact_days(sorted(days))})"
            )
        arrow = pa.Table.from_pandas(frame, preserve_index=False).drop_columns([PARTITION_COLUMN])
        sorted_days = np.array(sorted(days), dtype=str)
        starts = np.searchsorted(row_days, sorted_days, side="left")
        ends = np.searchsorted(row_days, sorted_days, side="right")
        slices = [
            (day, arrow.slice(start, end - start))
            for day, start, end in zip(sorted_days, starts, ends, strict=True)
        ]
        with ThreadPoolExecutor(WRITE_THREADS) as pool:
            list(pool.map(lambda item: self._write_file(table, *item), slices))

    def _write_file(self, table: str, day: str, rows: pa.Table) -> None:
        path = self.day_path(table, day)
        if not self.is_local:
            # an object store has no folders to make: the upload alone creates the object
            pq.write_table(rows, path, filesystem=self.filesystem, write_page_checksum=True)
            return
        folder = path.rsplit("/", 1)[0]
        self.filesystem.create_dir(folder, recursive=True)
        temporary = f"{folder}/.{FILE_NAME}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(rows, temporary, filesystem=self.filesystem, write_page_checksum=True)
            os.replace(temporary, path)  # atomic on POSIX: readers see the old or the new day
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

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
            if file_schema is not None:
                self._check_schemas(table, dataset, file_schema)
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
        return arrow.to_pandas(split_blocks=True, self_destruct=True)

    def _check_schemas(self, table: str, dataset: ds.Dataset, schema: pa.Schema) -> None:
        """Each file's own columns and types against `schema` (a dataset given a schema would
        read a missing column as NULLs)."""
        for fragment in dataset.get_fragments():
            try:
                found = pa.schema([(field.name, field.type) for field in fragment.physical_schema])
            except (OSError, ValueError, pa.ArrowException) as err:
                raise self._damaged(table, [fragment.path], err) from None
            if found.equals(schema.remove_metadata()):
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


def _day_of(path: str) -> str:
    return path.split(f"{PARTITION_COLUMN}=", 1)[-1][:10]


def _stored_column_order(schema: pa.Schema, loaded: Sequence[str]) -> list[str]:
    """The column order of the DataFrame that was written, `race_date` included."""
    pandas_metadata = (schema.metadata or {}).get(b"pandas")
    if not pandas_metadata:
        return list(loaded)
    written = [column["name"] for column in json.loads(pandas_metadata)["columns"]]
    return [name for name in written if name in loaded]
