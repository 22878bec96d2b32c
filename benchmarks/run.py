"""The full backfill, measured side by side: Dagster (A), the bare floor (B), per-row (C).

    python benchmarks/run.py                      # ten years, about 146,000 races
    python benchmarks/run.py --days 20 --races-per-day 6 --out /tmp/RESULTS.md   # smoke

Generates the dataset into MariaDB/MySQL (`--mysql-url`, a server where it may create the
database `feature_assets_bench`), runs each scenario in its own process, prints a Markdown
table and writes it into `--out` (default benchmarks/RESULTS.md) between the `measured`
markers, keeping the text around them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pymysql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feature_assets.io import synthetic  # noqa: E402
from feature_assets.io.source import SourceLocation  # noqa: E402
from tests import reference  # noqa: E402
from tests.helpers import graphql, materialize_command, stop_process_group  # noqa: E402

FIRST_DAY = dt.date(2015, 1, 1)
SELECT = "raw_races,raw_race_entries,race_features"
START, END = "<!-- measured:start -->", "<!-- measured:end -->"


# -- measuring ---------------------------------------------------------------------------


def run_process(command: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Runs `command` to the end; returns (seconds, peak RSS in MB of its largest process).

    The peak is sampled from /proc (VmHWM, reset at exec): a forked child's ru_maxrss would
    count this benchmark's own memory, copied into it before its exec.
    """
    marker = f"FEATURE_ASSETS_BENCH_PROCESS={time.monotonic_ns()}"
    name, value = marker.split("=")
    started = time.perf_counter()
    with open(log, "wb") as output, PeakRss(marker) as peak:
        process = subprocess.Popen(
            command, env={**env, name: value}, stdout=output, stderr=subprocess.STDOUT
        )
        status = process.wait()
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed; see {log}")
    return seconds, peak.peak_mb


class Sampler:
    """Calls `sample()` every `interval` seconds on a thread while it is open; `peak_mb`
    keeps what the samples found."""

    interval = 0.1

    def __init__(self):
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError


class PeakRss(Sampler):
    """Samples the peak RSS (VmHWM) of the processes started while it is open whose
    environment holds `marker` (NAME=value): a command and its children, or the run workers
    of a daemon backfill (marker DAGSTER_HOME=...)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker.encode()
        self._existing = {p.name for p in Path("/proc").iterdir()}

    def sample(self):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or proc.name in self._existing:
                continue
            with contextlib.suppress(OSError):
                if self.marker not in (proc / "environ").read_bytes().split(b"\0"):
                    continue
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)


class MySqlCounters:
    """Connections opened and SELECTs run on the server between two readings."""

    def __init__(self, server: SourceLocation):
        self.server = server

    def read(self) -> dict[str, int]:
        connection = pymysql.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=self.server.password,
        )
        with contextlib.closing(connection), connection.cursor() as cursor:
            cursor.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Connections', 'Com_select')"
            )
            return {name: int(value) for name, value in cursor.fetchall()}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        after = self.read()
        # minus the connection that took this reading
        return {
            "connections": after["Connections"] - before["Connections"] - 1,
            "selects": after["Com_select"] - before["Com_select"],
        }


def dagster_figures(home: Path) -> dict:
    """Events written and step times of every run of the instance in `home`."""
    from dagster import DagsterEventType, DagsterInstance

    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        events, steps = 0, {}
        for run in instance.get_runs():
            logs = instance.all_logs(run.run_id)
            events += len(logs)
            started = {}
            for event in logs:
                if event.dagster_event_type == DagsterEventType.STEP_START:
                    started[event.step_key] = event.timestamp
                elif event.dagster_event_type == DagsterEventType.STEP_SUCCESS:
                    steps[event.step_key] = steps.get(event.step_key, 0) + (
                        event.timestamp - started[event.step_key]
                    )
        return {"events": events, "steps": steps, "runs": len(instance.get_runs())}


# -- scenarios ---------------------------------------------------------------------------


def instance_home(work: Path, name: str, postgres_db: str | None = None) -> Path:
    home = work / name / "dagster_home"
    home.mkdir(parents=True)
    config = (REPO / "dagster_home" / "dagster.yaml").read_text()
    if postgres_db:  # PostgreSQL's storages replace the local file's (SQLite) event log
        config = re.sub(r"(?m)^event_log_storage:\n(?: .*\n)*", "", config)
        config += postgres_instance_config(postgres_db)
    (home / "dagster.yaml").write_text(config)
    return home


def postgres_instance_config(database: str) -> str:
    """Run, schedule and event storage on PostgreSQL; events through the batching storage."""
    db = (
        "    postgres_db:\n      hostname: 127.0.0.1\n      username: postgres\n"
        f"      password: ''\n      db_name: {database}\n      port: 5432\n"
    )
    return (
        f"run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n"
        f"  config:\n{db}"
        f"schedule_storage:\n  module: dagster_postgres.schedule_storage\n"
        f"  class: PostgresScheduleStorage\n  config:\n{db}"
        f"event_log_storage:\n  module: feature_assets.defs.event_log\n"
        f"  class: BatchedPostgresEventLogStorage\n  config:\n{db}"
    )


def scenario_env(
    home: Path, source: str, storage: Path, first: dt.date, batched_events: bool = False
) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATURE_ASSETS_", "DAGSTER_"))}
    if batched_events:
        env["DAGSTER_EVENT_BATCH_SIZE"] = "1000"
    return {
        **env,
        "DAGSTER_HOME": str(home),
        "FEATURE_ASSETS_SOURCE_URL": source,
        "FEATURE_ASSETS_STORAGE_URL": str(storage),
        "FEATURE_ASSETS_START_DATE": first.isoformat(),
    }


def fresh_postgres_database(host: str, name: str) -> str:
    subprocess.run(["dropdb", "-h", host, "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", host, "-U", "postgres", name], check=True)
    return name


def ranged_run(work, name, source, first, last, counters, postgres_db=None) -> dict:
    home = instance_home(work, name, postgres_db)
    storage = work / name / "parquet"
    env = scenario_env(home, source, storage, first, batched_events=bool(postgres_db))
    before = counters.read()
    seconds, rss = run_process(
        materialize_command("--partition-range", f"{first}...{last}"), env, work / f"{name}.log"
    )
    return {
        "seconds": seconds,
        "rss_mb": rss,
        **counters.since(before),
        **dagster_figures(home),
        "storage": storage,
        "home": home,
        "env": env,
    }


def single_day(work, ranged: dict, day: dt.date, counters) -> dict:
    before = counters.read()
    seconds, rss = run_process(
        materialize_command("--partition", day.isoformat()),
        ranged["env"],
        work / "single_day.log",
    )
    return {"seconds": seconds, "rss_mb": rss, **counters.since(before)}


LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""


def daemon_backfill(work, source, first, last, counters, postgres_db=None, port=3917) -> dict:
    """A: a backfill launched as the UI does, run by the daemon with the default days per run."""
    home = instance_home(work, "daemon", postgres_db)
    env = scenario_env(
        home, source, work / "daemon" / "parquet", first, batched_events=bool(postgres_db)
    )
    log = open(work / "daemon.log", "wb")
    server = subprocess.Popen(
        [shutil.which("dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            time.sleep(1)
        before = counters.read()
        started = time.perf_counter()
        span = {"range": {"start": first.isoformat(), "end": last.isoformat()}}
        params = {
            "partitionsByAssets": [
                {"assetKey": {"path": [asset]}, "partitions": span} for asset in SELECT.split(",")
            ]
        }
        with PeakRss(f"DAGSTER_HOME={home}") as peak:
            launched = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
            if "backfillId" not in launched:
                raise RuntimeError(f"backfill not launched: {launched}")
            status = "REQUESTED"
            while status in ("REQUESTED", "CANCELING", "FAILING"):
                time.sleep(2)
                status = graphql(port, BACKFILL_STATUS, {"id": launched["backfillId"]})[
                    "partitionBackfillOrError"
                ]["status"]
        seconds = time.perf_counter() - started
        if status not in ("COMPLETED", "COMPLETED_SUCCESS"):
            raise RuntimeError(f"daemon backfill ended {status}; see {work / 'daemon.log'}")
    finally:
        stop_process_group(server)
        log.close()
    return {
        "seconds": seconds,
        "rss_mb": peak.peak_mb,
        **counters.since(before),
        **dagster_figures(home),
    }


def bare(work, source, first, last, counters) -> dict:
    before = counters.read()
    log = work / "bare.log"
    seconds, rss = run_process(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bare.py"),
            source,
            str(work / "bare"),
            first.isoformat(),
            last.isoformat(),
        ],
        {**os.environ, "PYTHONPATH": str(REPO)},
        log,
    )
    stages = json.loads(log.read_text().strip().splitlines()[-1])
    return {"seconds": seconds, "rss_mb": rss, **counters.since(before), "stages": stages}


def per_row(data: synthetic.SyntheticData, last: dt.date, races_sampled: int = 12) -> dict:
    """C: the per-row reference run per record, as the user's original code worked: each
    race of the last day computed on its own from its 365-day history."""
    races, entries = reference.rows_of(data.races), reference.rows_of(data.entries)
    window_start = last - dt.timedelta(days=365)
    history_races = [r for r in races if window_start <= r["race_date"] < last]
    history_ids = {r["race_id"] for r in history_races}
    history = [e for e in entries if e["race_id"] in history_ids]
    sample = [r for r in races if r["race_date"] == last][:races_sampled]
    seconds, count = 0.0, 0
    for race in sample:
        field = [e for e in entries if e["race_id"] == race["race_id"]]
        started = time.perf_counter()
        count += len(reference.features_of_day(history_races + [race], history + field, last))
        seconds += time.perf_counter() - started
    return {"seconds_per_entry": seconds / max(count, 1), "entries": count}


# -- report ------------------------------------------------------------------------------


def report(args, data, results: dict) -> str:
    b = results["B"]
    entries = len(data.entries)

    def row(label, r, target=""):
        ratio = r["seconds"] / b["seconds"]
        return (
            f"| {label} | {r['seconds']:.1f} | {ratio:.2f}× | {r['rss_mb']:.0f} |"
            f" {r.get('connections', '')} | {r.get('selects', '')} |"
            f" {r.get('events', '')} | {target} |"
        )

    def verdict(ok):
        return "met" if ok else "**not met**"

    a1, a1pg, daemon = results["A1"], results.get("A1_pg"), results.get("daemon")
    c = results["C"]
    lines = [
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {platform.node()}:"
        f" {os.cpu_count()} cores, {_memory_gb():.0f} GB, {platform.machine()},"
        f" Python {platform.python_version()}, dagster {version('dagster')},"
        f" pandas {version('pandas')}, pyarrow {version('pyarrow')}, pymysql {version('pymysql')},"
        f" connectorx {version('connectorx')},"
        f" {results['server_version']}.",
        "",
        f"Dataset: {args.days:,} days from {FIRST_DAY}, {len(data.races):,} races,"
        f" {entries:,} entries (generated in {results['generate_s']:.0f} s,"
        f" loaded into MySQL in {results['load_s']:.0f} s).",
        "",
        "| run | wall s | vs B | peak RSS MB | MySQL connections | MySQL SELECTs |"
        " Dagster events | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        row("B: bare script, no Dagster", b),
        row(
            "A: `dagster asset materialize`, one ranged run, SQLite instance",
            a1,
            f"≤ 1.6× B: {verdict(a1['seconds'] <= 1.6 * b['seconds'])}; RSS ≤ 1 GB:"
            f" {verdict(a1['rss_mb'] <= 1024)}; 1 connection: {verdict(a1['connections'] == 1)}",
        ),
    ]
    if a1pg:
        lines.append(
            row(
                "A: the same on PostgreSQL, batched event writes",
                a1pg,
                f"≤ 1.3× B: {verdict(a1pg['seconds'] <= 1.3 * b['seconds'])}; RSS ≤ 1 GB:"
                f" {verdict(a1pg['rss_mb'] <= 1024)}",
            )
        )
    if daemon:
        lines.append(
            row(
                "A: daemon backfill (UI route), default days per run",
                daemon,
                f"≤ 3× B: {verdict(daemon['seconds'] <= 3 * b['seconds'])}",
            )
        )
    single = results["single"]
    lines.append(
        row(
            "one day, three assets (`--partition`)",
            single,
            f"≤ 3 s: {verdict(single['seconds'] <= 3)}; RSS ≤ 400 MB:"
            f" {verdict(single['rss_mb'] <= 400)}",
        )
    )
    per_entry = c["seconds_per_entry"]
    speedups = [("B", b)] + [
        (label, r) for label, r in (("A on SQLite", a1), ("A on PostgreSQL", a1pg)) if r
    ]
    speedup_text = "; ".join(
        f"{label} {per_entry / (r['seconds'] / entries):,.0f}× faster"
        f" ({verdict(per_entry / (r['seconds'] / entries) >= 1000)})"
        for label, r in speedups
    )
    lines += [
        "",
        f"C, the per-row reference: {per_entry * 1000:.2f} ms per entry (timed on"
        f" {c['entries']} entries of the last day, each race computed on its own from its"
        f" 365-day history, as per-record code does). Per entry, end to end, against the"
        f" target of ≥ 1,000×: {speedup_text}.",
        "",
        "Stages of B:",
        "",
        "| stage | volume | s | rate |",
        "| --- | ---: | ---: | ---: |",
    ]
    s = b["stages"]
    mb = s["parquet_bytes"] / 1e6
    lines += [
        "| MySQL snapshot (pymysql, one connection, 2 queries a window) |"
        f" {s['snapshot_rows']:,} rows |"
        f" {s['snapshot_s']:.1f} | {s['snapshot_rows'] / s['snapshot_s']:,.0f} rows/s |",
        f"| read raw history back from Parquet | | {s['read_back_s']:.1f} | |",
        f"| features | {s['feature_rows']:,} rows | {s['features_s']:.1f} |"
        f" {s['feature_rows'] / s['features_s']:,.0f} rows/s |",
        f"| Parquet writes (3 assets × {args.days} days) | {mb:.1f} MB | {s['write_s']:.1f} |"
        f" {mb / s['write_s']:.1f} MB/s |",
        "",
        "Where A's time goes (step compute as timed by Dagster; the rest is run start-up and"
        " event bookkeeping):",
        "",
        "| run | raw_snapshot step s | race_features step s | everything else s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, r in (("A, SQLite", a1), ("A, PostgreSQL", a1pg), ("daemon", daemon)):
        if r:
            raw_s = r["steps"].get("raw_snapshot", 0)
            feat_s = r["steps"].get("race_features", 0)
            lines.append(
                f"| {label} | {raw_s:.1f} | {feat_s:.1f} | {r['seconds'] - raw_s - feat_s:.1f} |"
            )
    return "\n".join(lines)


def _memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        return int(meminfo.readline().split()[1]) / 1024**2


def write_results(
    path: Path, table: str, start: str = START, end: str = END, section: str = ""
) -> None:
    """Puts `table` between the `start` and `end` markers of `path`, keeping the text around
    them; a file without them gets them at its end (under `section`, a heading)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start not in text:
        text += f"\n{section}{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}")


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=3650)
    parser.add_argument("--races-per-day", type=int, default=40)
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306")
    parser.add_argument(
        "--database",
        default="feature_assets_bench",
        help="MySQL and PostgreSQL database the benchmark (re)creates",
    )
    parser.add_argument("--postgres", default="127.0.0.1", help="'' to skip the PostgreSQL run")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon backfill")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    source = f"{args.mysql_url.rstrip('/')}/{args.database}"
    server = SourceLocation.from_url(source)
    counters = MySqlCounters(server)
    last = FIRST_DAY + dt.timedelta(days=args.days - 1)
    results: dict = {}

    started = time.perf_counter()
    data = synthetic.generate(FIRST_DAY, args.days, races_per_day=args.races_per_day, seed=2015)
    results["generate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    synthetic.load(source, data)
    results["load_s"] = time.perf_counter() - started
    with contextlib.closing(
        pymysql.connect(
            host=server.host, port=server.port, user=server.user, password=server.password
        )
    ) as c:
        with c.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            results["server_version"] = f"MariaDB/MySQL {cursor.fetchone()[0]}"
    print(f"{len(data.races):,} races, {len(data.entries):,} entries loaded", flush=True)

    results["B"] = bare(args.work, source, FIRST_DAY, last, counters)
    print(f"B {results['B']['seconds']:.1f} s", flush=True)
    results["A1"] = ranged_run(args.work, "ranged", source, FIRST_DAY, last, counters)
    print(f"A {results['A1']['seconds']:.1f} s", flush=True)
    results["single"] = single_day(args.work, results["A1"], last, counters)
    postgres_db = daemon_db = None
    if args.postgres:
        postgres_db = fresh_postgres_database(args.postgres, args.database)
        daemon_db = fresh_postgres_database(args.postgres, f"{args.database}_daemon")
        results["A1_pg"] = ranged_run(
            args.work, "ranged_pg", source, FIRST_DAY, last, counters, postgres_db=postgres_db
        )
        print(f"A on PostgreSQL {results['A1_pg']['seconds']:.1f} s", flush=True)
    if not args.no_daemon:
        results["daemon"] = daemon_backfill(
            args.work, source, FIRST_DAY, last, counters, postgres_db=daemon_db
        )
        print(f"daemon {results['daemon']['seconds']:.1f} s", flush=True)
    results["C"] = per_row(data, last)

    table = report(args, data, results)
    print(table)
    write_results(args.out, table)
    drop_mysql_database(server)
    for database in filter(None, (postgres_db, daemon_db)):
        subprocess.run(["dropdb", "-h", args.postgres, "-U", "postgres", database], check=True)


def drop_mysql_database(server: SourceLocation) -> None:
    connection = pymysql.connect(
        host=server.host, port=server.port, user=server.user, password=server.password
    )
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{server.database}`")


if __name__ == "__main__":
    main()
