"""B, the floor to beat: the same read, features and Parquet writes as the assets, no Dagster.

    python benchmarks/bare.py SOURCE_URL STORAGE_URL FIRST_DAY LAST_DAY

Prints one JSON object with the time and volume of each stage.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd

from feature_assets.core.engine import compute_days
from feature_assets.feature_sets.race_features import race_features
from feature_assets.io.source import SourceLocation, read_snapshot
from feature_assets.io.storage import DailyParquetStorage


def _folder_bytes(storage: DailyParquetStorage, table: str) -> int:
    return sum(p.stat().st_size for p in Path(storage.table_path(table)).rglob("*.parquet"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(source_url: str, storage_url: str, first: dt.date, last: dt.date) -> dict:
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(first, last)]
    storage = DailyParquetStorage(storage_url)
    figures: dict[str, float] = {}

    started = time.perf_counter()
    # the reader the user started with: the ratios show what the product gained over it
    snapshot = read_snapshot(SourceLocation.from_url(source_url), first, last, reader="pymysql")
    races, entries = snapshot.races, snapshot.entries
    figures["snapshot_s"] = time.perf_counter() - started
    figures["snapshot_rows"] = len(races) + len(entries)
    figures["peak_mb_after_snapshot"] = _peak_mb()

    started = time.perf_counter()
    storage.write_days("raw_races", races, days)
    storage.write_days("raw_race_entries", entries, days)
    raw_write_s = time.perf_counter() - started
    figures["peak_mb_after_raw_write"] = _peak_mb()
    del races, entries

    # as the asset does: the history is read back from the raw Parquet days (nothing is
    # stored before the first day, so the history of the range is the range)
    started = time.perf_counter()
    races = storage.read_days("raw_races", days)
    entries = storage.read_days("raw_race_entries", days)
    figures["read_back_s"] = time.perf_counter() - started
    figures["peak_mb_after_read_back"] = _peak_mb()

    started = time.perf_counter()
    features = compute_days(race_features, races, entries, days)
    figures["features_s"] = time.perf_counter() - started
    figures["feature_rows"] = len(features)
    figures["peak_mb_after_features"] = _peak_mb()
    del races, entries

    started = time.perf_counter()
    storage.write_days("race_features", features, days)
    figures["write_s"] = raw_write_s + time.perf_counter() - started
    figures["parquet_bytes"] = sum(
        _folder_bytes(storage, t) for t in ("raw_races", "raw_race_entries", "race_features")
    )
    figures["dagster_imported"] = "dagster" in sys.modules
    return figures


if __name__ == "__main__":
    source, target, first_day, last_day = sys.argv[1:5]
    result = run(source, target, dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day))
    print(json.dumps(result))
