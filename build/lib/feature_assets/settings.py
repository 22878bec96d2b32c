"""Every environment variable the code location reads, with its default, in one place.

- FEATURE_ASSETS_START_DATE: first daily partition, YYYY-MM-DD (Asia/Tokyo); 2024-01-01.
- FEATURE_ASSETS_SOURCE_URL: `mysql://user:password@host:port/db` or `sqlite:///path`;
  default the demo SQLite file `<local data>/demo.sqlite`.
- FEATURE_ASSETS_STORAGE_URL: where Parquet goes, a path, `file://` URL or
  `gs://bucket/prefix`; default `<local data>/parquet`.

`<local data>` is `$DAGSTER_HOME/data`, or `<repo>/dagster_home/data` when DAGSTER_HOME is
unset: the embedded default keeps all its state beside the local Dagster instance.
- FEATURE_ASSETS_DAYS_PER_RUN: days per run when a backfill is split into runs; default
  unset, one run for the whole range (see `days_per_run`).
- FEATURE_ASSETS_DAILY_CRON: when the daily schedule runs, a cron expression in Asia/Tokyo
  time; default `0 5 * * *` (05:00, when the evening's results are in).
- FEATURE_ASSETS_RECHECK_DAYS: how many days before the new day the daily schedule
  snapshots again to catch late corrections; default 7.
- FEATURE_ASSETS_AUTOMATION: `on` starts the daily schedule and the correction sensor as
  soon as a daemon loads the code (production); default off, switched on in the UI.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_START_DATE = "2024-01-01"


def local_data_dir() -> Path:
    home = os.environ.get("DAGSTER_HOME") or str(REPO_ROOT / "dagster_home")
    return Path(home).resolve() / "data"


def demo_sqlite_path() -> Path:
    return local_data_dir() / "demo.sqlite"


def start_date() -> str:
    value = os.environ.get("FEATURE_ASSETS_START_DATE", DEFAULT_START_DATE)
    try:
        dt.date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(
            f"FEATURE_ASSETS_START_DATE must be a date like 2024-01-01, got {value!r}"
        ) from err
    return value


def source_url_is_set() -> bool:
    return bool(os.environ.get("FEATURE_ASSETS_SOURCE_URL"))


def default_source_url() -> str:
    return f"sqlite:///{demo_sqlite_path()}"


def storage_url() -> str:
    return os.environ.get("FEATURE_ASSETS_STORAGE_URL") or str(local_data_dir() / "parquet")


def days_per_run() -> int | None:
    """Days per run of a split backfill; None means one run for the whole range.

    The default is one run: the source is read once, Dagster's per-run start-up is paid
    once, and `dagster asset materialize --partition-range` (which only accepts single-run
    assets) works. Set it on a cluster where many runs should work in parallel.
    """
    value = os.environ.get("FEATURE_ASSETS_DAYS_PER_RUN", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FEATURE_ASSETS_DAYS_PER_RUN must be a positive integer, got {value!r}")
    return int(value)


def daily_cron() -> str:
    return os.environ.get("FEATURE_ASSETS_DAILY_CRON", "").strip() or "0 5 * * *"


def recheck_days() -> int:
    value = os.environ.get("FEATURE_ASSETS_RECHECK_DAYS", "").strip() or "7"
    if not value.isdigit():
        raise ValueError(f"FEATURE_ASSETS_RECHECK_DAYS must be a whole number, got {value!r}")
    return int(value)


def automation_on() -> bool:
    value = os.environ.get("FEATURE_ASSETS_AUTOMATION", "").strip().lower()
    if value not in ("", "on", "off"):
        raise ValueError(f"FEATURE_ASSETS_AUTOMATION must be on or off, got {value!r}")
    return value == "on"
