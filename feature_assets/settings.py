"""Every environment variable the code location reads, with its default, in one place.

- FEATURE_ASSETS_START_DATE: first daily partition, YYYY-MM-DD (Asia/Tokyo); 2024-01-01.
- FEATURE_ASSETS_PREDICT_START_DATE: first day of the race-day assets (predictions and
  their results), where predicting started; default the last 30 days.
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
- FEATURE_ASSETS_SOURCE_CONNECT_TIMEOUT, _READ_TIMEOUT, _LOCK_WAIT_TIMEOUT,
  _STATEMENT_TIMEOUT (seconds; defaults 10, 120, 60, 900), _WINDOW_DAYS (days per snapshot
  transaction; 366) and _READ_ATTEMPTS (tries of a read whose connection was lost; 3): the
  bounds of a source read, see `feature_assets.io.source.ReadLimits`.
- FEATURE_ASSETS_SOURCE_READER: how a MySQL source is read, `arrow` (connectorx, the
  default: one statement per run, about four times faster) or `pymysql` (in windows of
  _WINDOW_DAYS, for a server or proxy connectorx cannot talk to); see `feature_assets.io.source`.
- FEATURE_ASSETS_FEATURE_SETS: importable modules (comma-separated) that declare feature
  sets besides those in `feature_assets/feature_sets/`; default none.
- FEATURE_ASSETS_WORKERS: worker processes a run computes its days on; default the CPUs
  the process may use (its affinity, capped by a cgroup CPU limit: a pod's limit).
- FEATURE_ASSETS_AUTOMATION: `on` starts the daily schedule and the correction sensor as
  soon as a daemon loads the code (production); default off, switched on in the UI.
- FEATURE_ASSETS_TRAIN_START, _TRAIN_END: the days (YYYY-MM-DD) the training data covers;
  default the first and the last day stored by any feature set.
- FEATURE_ASSETS_VALIDATION_DAYS, _TEST_DAYS: calendar days at the end of that window held
  out, the test period last and validation before it; default 365 each (ten years: eight
  years to learn from, a year to tune on, a year to judge the model once).
- FEATURE_ASSETS_OPTUNA_URL: the database (SQLAlchemy URL, a secret when it holds a password)
  of the Optuna studies; default `sqlite:///$DAGSTER_HOME/optuna.sqlite` (beside the local
  instance). On GKE the Cloud SQL PostgreSQL, from a Kubernetes secret.
- FEATURE_ASSETS_TRIAL_HEARTBEAT: seconds between a running trial's heartbeats; a trial
  silent for three of them (its worker died) is failed and run again; default 30.

`check_configuration()` runs when the code location loads: a bad value stops the load with
one error naming every bad variable, before any run exists, rather than failing each day of
a run later. The storage is probed with a real write (a local path) or its URL checked
(gs://); the source URL is only parsed here, its server is reached when a run reads it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

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


PREDICT_WINDOW_DAYS = 30  # race days the race-day assets cover when no start is set


def predict_start_date() -> str:
    """The first day of the race-day assets (`predictions`, `prediction_results`): where
    predicting started. FEATURE_ASSETS_PREDICT_START_DATE; unset, the last 30 days (Tokyo),
    so a new deployment's UI does not count years never predicted as missing. Never before
    FEATURE_ASSETS_START_DATE."""
    value = os.environ.get("FEATURE_ASSETS_PREDICT_START_DATE", "").strip()
    if value:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError as err:
            raise ValueError(
                f"FEATURE_ASSETS_PREDICT_START_DATE must be a date like 2026-01-01, got {value!r}"
            ) from err
    else:
        tokyo_today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()
        day = tokyo_today - dt.timedelta(days=PREDICT_WINDOW_DAYS)
    return max(day.isoformat(), start_date())


def source_url_is_set() -> bool:
    return bool(os.environ.get("FEATURE_ASSETS_SOURCE_URL"))


def default_source_url() -> str:
    return f"sqlite:///{demo_sqlite_path()}"


class ConfigurationError(ValueError):
    """One or more FEATURE_ASSETS_* variables hold a bad value; names each of them."""


def check_configuration(*more_checks: Callable[[], None]) -> None:
    """Checks every setting at once, and `more_checks` (of what the settings choose, such as
    the sets' pods against the run machine, which live where those things do); raises
    ConfigurationError listing each bad one."""
    from dagster._utils.schedules import is_valid_cron_string

    problems = []
    checks = (
        start_date,
        predict_start_date,
        days_per_run,
        recheck_days,
        drift_days,
        automation_on,
        read_limits,
        source_reader,
        workers,
        training_window,
        held_out_days,
        trial_heartbeat_seconds,
        _check_optuna_url,
        _check_storage,
        *more_checks,
    )
    for check in checks:
        try:
            check()
        except ValueError as err:
            problems.append(str(err))
    if not is_valid_cron_string(daily_cron()):
        problems.append(
            f"FEATURE_ASSETS_DAILY_CRON: invalid cron schedule {daily_cron()!r}"
            " (five fields, e.g. '0 5 * * *')"
        )
    if predict_cron() and not is_valid_cron_string(predict_cron()):
        problems.append(
            f"FEATURE_ASSETS_PREDICT_CRON: invalid cron schedule {predict_cron()!r}"
            " (five fields, e.g. '30 8 * * *')"
        )
    if problems:
        raise ConfigurationError(
            "feature_assets configuration: "
            + "; ".join(problems)
            + " (see feature_assets/settings.py)"
        )


def _check_storage() -> None:
    """The storage URL's scheme, and for a local path that a file can be written there."""
    url = storage_url()
    scheme = urlsplit(url).scheme
    if scheme == "gs":
        if not urlsplit(url).netloc:
            raise ValueError(
                f"FEATURE_ASSETS_STORAGE_URL {url!r} names no bucket (gs://bucket/prefix)"
            )
        return
    if scheme not in ("", "file"):
        raise ValueError(
            f"FEATURE_ASSETS_STORAGE_URL {url!r}: unknown scheme {scheme!r};"
            " use a path, file:///path or gs://bucket/prefix"
        )
    root = Path(urlsplit(url).path if scheme == "file" else url)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(
            f"FEATURE_ASSETS_STORAGE_URL {url!r}: cannot write there ({err.strerror or err})"
        ) from None


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


_READ_LIMIT_VARIABLES = {
    "connect_timeout": "FEATURE_ASSETS_SOURCE_CONNECT_TIMEOUT",
    "read_timeout": "FEATURE_ASSETS_SOURCE_READ_TIMEOUT",
    "lock_wait_timeout": "FEATURE_ASSETS_SOURCE_LOCK_WAIT_TIMEOUT",
    "statement_timeout": "FEATURE_ASSETS_SOURCE_STATEMENT_TIMEOUT",
    "window_days": "FEATURE_ASSETS_SOURCE_WINDOW_DAYS",
    "attempts": "FEATURE_ASSETS_SOURCE_READ_ATTEMPTS",
}


SOURCE_READERS = ("arrow", "pymysql")  # the first is the default; see feature_assets.io.source


def source_reader() -> str:
    value = os.environ.get("FEATURE_ASSETS_SOURCE_READER", "").strip() or SOURCE_READERS[0]
    if value not in SOURCE_READERS:
        raise ValueError(
            f"FEATURE_ASSETS_SOURCE_READER must be one of {', '.join(SOURCE_READERS)},"
            f" got {value!r}"
        )
    return value


def read_limits() -> dict[str, int]:
    """The bounds of a source read that variables change: {`ReadLimits` field: value}."""
    values = {}
    for field_name, variable in _READ_LIMIT_VARIABLES.items():
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{variable} must be a positive whole number, got {value!r}")
        values[field_name] = int(value)
    return values


def daily_cron() -> str:
    return os.environ.get("FEATURE_ASSETS_DAILY_CRON", "").strip() or "0 5 * * *"


def predict_cron() -> str:
    """When the prediction schedule runs (cron, Asia/Tokyo); empty (the default): it is off."""
    return os.environ.get("FEATURE_ASSETS_PREDICT_CRON", "").strip()


def drift_days() -> int:
    """Race days of live log loss compared with the backtest's range before an alert."""
    value = os.environ.get("FEATURE_ASSETS_DRIFT_DAYS", "").strip() or "7"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FEATURE_ASSETS_DRIFT_DAYS must be a whole number >= 1, got {value!r}")
    return int(value)


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


def enable_event_batches() -> None:
    """Dagster sends asset events to the instance in batches only while
    DAGSTER_EVENT_BATCH_SIZE is set (its own opt-in); the batching event logs of
    feature_assets.defs.event_log store a batch at once. Set in the environment, it wins."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")


def feature_set_modules() -> list[str]:
    value = os.environ.get("FEATURE_ASSETS_FEATURE_SETS", "")
    return [name.strip() for name in value.split(",") if name.strip()]


def available_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota (a pod's
    limit; cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), at least 1."""
    cpus = len(os.sched_getaffinity(0))
    for quota_file, period_file in (
        ("cpu.max", None),
        ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"),
    ):
        try:
            fields = Path(cgroup, quota_file).read_text().split()
            if period_file:
                fields.append(Path(cgroup, period_file).read_text().strip())
            quota, period = fields[0], fields[-1]
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, int(quota) // int(period)))
        break
    return cpus


def workers() -> int:
    """Worker processes per run: FEATURE_ASSETS_WORKERS, else the CPUs this process may use."""
    value = os.environ.get("FEATURE_ASSETS_WORKERS", "").strip()
    if not value:
        return available_cpus()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FEATURE_ASSETS_WORKERS must be a positive whole number, got {value!r}")
    return int(value)


def _optional_date(variable: str) -> dt.date | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{variable} must be a date like 2024-01-01, got {value!r}") from None


def training_window() -> tuple[dt.date | None, dt.date | None]:
    """(first, last) day of the training data; None where the stored days decide."""
    first = _optional_date("FEATURE_ASSETS_TRAIN_START")
    last = _optional_date("FEATURE_ASSETS_TRAIN_END")
    if first and last and first > last:
        raise ValueError(
            f"FEATURE_ASSETS_TRAIN_START {first} lies after FEATURE_ASSETS_TRAIN_END {last}"
        )
    return first, last


def _positive(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{variable} must be a positive whole number, got {value!r}")
    return int(value)


def held_out_days() -> tuple[int, int]:
    """(validation days, test days) at the end of the training window."""
    return (
        _positive("FEATURE_ASSETS_VALIDATION_DAYS", 365),
        _positive("FEATURE_ASSETS_TEST_DAYS", 365),
    )


def optuna_url_is_set() -> bool:
    return bool(os.environ.get("FEATURE_ASSETS_OPTUNA_URL"))


def default_optuna_url() -> str:
    home = os.environ.get("DAGSTER_HOME") or str(REPO_ROOT / "dagster_home")
    return f"sqlite:///{Path(home).resolve() / 'optuna.sqlite'}"


def optuna_url() -> str:
    return os.environ.get("FEATURE_ASSETS_OPTUNA_URL") or default_optuna_url()


def _check_optuna_url() -> None:
    """A database URL Optuna can use; the message never repeats it (it holds a password)."""
    if not optuna_url_is_set():
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(os.environ["FEATURE_ASSETS_OPTUNA_URL"]).get_backend_name()
    except ArgumentError:
        backend = None
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise ValueError(
            "FEATURE_ASSETS_OPTUNA_URL is not a database URL of SQLite, PostgreSQL or MySQL"
            " (like postgresql://user:password@host:5432/optuna)"
        )


def trial_heartbeat_seconds() -> int:
    return _positive("FEATURE_ASSETS_TRIAL_HEARTBEAT", 30)


def in_kubernetes() -> bool:
    """This process runs in a Kubernetes pod (the variable every pod gets)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


@dataclasses.dataclass(frozen=True)
class Slack:
    token_is_set: bool  # SLACK_BOT_TOKEN: the secret itself goes in as an EnvVar
    channel: str  # FEATURE_ASSETS_SLACK_CHANNEL
    ui_url: str  # FEATURE_ASSETS_UI_URL: the base of the run link
    api_url: str  # FEATURE_ASSETS_SLACK_API_URL: a proxy or a test server


def slack() -> Slack:
    """The failed-run alert's settings; off unless both the token and channel are set."""
    return Slack(
        token_is_set=bool(os.environ.get("SLACK_BOT_TOKEN")),
        channel=os.environ.get("FEATURE_ASSETS_SLACK_CHANNEL", "").strip(),
        ui_url=os.environ.get("FEATURE_ASSETS_UI_URL", "").strip() or "http://localhost:3000",
        api_url=os.environ.get("FEATURE_ASSETS_SLACK_API_URL", "").strip(),
    )


def run_machine() -> str | None:
    """FEATURE_ASSETS_RUN_MACHINE: the machine type of the nodes run pods go to (the Spot
    pool, deploy/gke SPOT_MACHINE); unset, run pods are not checked against a node."""
    return os.environ.get("FEATURE_ASSETS_RUN_MACHINE", "").strip() or None
