"""A feature set's backfill launched as the UI launches it, on the embedded default.

Sets up a temporary DAGSTER_HOME (the repo's dagster.yaml, SQLite) with the demo's days
stored, starts `dagster dev` (webserver and daemon) and, once the daemon beats, sends the
Materialize dialog's own `launchPartitionBackfill` mutation for `race_features` over the
last 5 days, then the last 60 days, several times each at random moments of the daemon's
cycle. For each launch it prints where the time went, from the instance's own records:

- launch -> runs created: the wait for the backfill daemon's tick (Dagster's
  DEFAULT_DAEMON_INTERVAL_SECONDS, 30 s, not configurable) and the tick itself;
- -> run started: the run queue's dequeue interval (`dequeue_interval_seconds`) and the
  run worker's start-up (a new Python process loading the code location);
- -> days stored: the run's steps, i.e. when the UI's partition status shows the days;
- -> backfill completed: the next backfill tick, which marks the backfill done.

Also the floor: the same days as one `dagster asset materialize` (no daemon at all).
Prints the figures; asserts none.

    python benchmarks/ui_backfill.py [--days 400] [--repeat 3] [--sizes 5,60]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TOKYO = dt.timezone(dt.timedelta(hours=9))

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=400, help="stored days before today")
    parser.add_argument("--repeat", type=int, default=3, help="launches of each size")
    parser.add_argument("--sizes", default="5,60", help="days per backfill")
    parser.add_argument(
        "--spread", type=float, default=30, help="launch at a random moment of this many seconds"
    )
    args = parser.parse_args()
    yesterday = dt.datetime.now(TOKYO).date() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory(prefix="ui-backfill-bench-") as home:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FEATURE_ASSETS_")},
            "DAGSTER_HOME": home,
            "FEATURE_ASSETS_START_DATE": first.isoformat(),
        }
        Path(home, "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
        subprocess.run(["feature-assets", "demo"], env=env, check=True, capture_output=True)
        os.environ.update(env)
        sizes = [int(size) for size in args.sizes.split(",")]
        floors = {size: _materialize(env, yesterday, size) for size in sizes}
        with _dagster_dev(env, Path(home) / "dagster-dev.log") as (instance, port):
            results = {size: [] for size in sizes}
            for _ in range(args.repeat):
                for size in sizes:
                    time.sleep(random.uniform(0, args.spread))  # a moment of the daemon's cycle
                    results[size].append(_timed_backfill(instance, port, yesterday, size))
    config = _queue_config()
    print(f"embedded default (SQLite instance), {config}; backfill daemon tick: 30 s (fixed)")
    for size, timings in results.items():
        print(f"\n{size}-day backfill of race_features, {len(timings)} launches:")
        for name in timings[0]:
            values = [t[name] for t in timings]
            print(
                f"  {name:<34} median {statistics.median(values):5.1f} s"
                f"  ({', '.join(f'{v:.1f}' for v in values)})"
            )
        print(f"  floor: one `dagster asset materialize` of the same days: {floors[size]:.1f} s")


def _queue_config() -> str:
    import yaml

    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    interval = (config["run_coordinator"].get("config") or {}).get("dequeue_interval_seconds", 5)
    return f"run queue dequeue interval {interval} s"


def _materialize(env: dict, last: dt.date, days: int) -> float:
    first = last - dt.timedelta(days=days - 1)
    command = [
        "dagster", "asset", "materialize", "-m", "feature_assets.definitions",
        "--select", "race_features", "--partition-range", f"{first}...{last}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


@contextlib.contextmanager
def _dagster_dev(env: dict, log: Path):
    """`dagster dev` on a free port; the instance and the port once the daemon beats."""
    from dagster import DagsterInstance

    from tests.helpers import stop_process_group, wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log, "wb") as output:
        server = subprocess.Popen(
            ["dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-p", str(port)],
            env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        with DagsterInstance.get() as instance:
            beats = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
            wait_for(lambda: beats <= set(instance.get_daemon_heartbeats()), 120, "the daemon")
            wait_for(lambda: _server_up(port), 120, "the webserver")
            yield instance, port
    finally:
        stop_process_group(server)


def _server_up(port: int) -> bool:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
        return True
    return False


def _timed_backfill(instance, port: int, last: dt.date, days: int) -> dict[str, float]:
    """Launch as the dialog does; the moments each stage ended, in seconds from the launch."""
    from dagster import DagsterEventType
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.storage.dagster_run import RunsFilter

    from tests.helpers import graphql

    names = [(last - dt.timedelta(days=n)).isoformat() for n in reversed(range(days))]
    params = {"assetSelection": [{"path": ["race_features"]}], "partitionNames": names}
    launched_at = time.time()
    backfill_id = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]["backfillId"]
    while True:
        backfill = instance.get_backfill(backfill_id)
        if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
            break
        time.sleep(0.2)
    done_at = time.time()
    if backfill.status != BulkActionStatus.COMPLETED_SUCCESS:
        raise RuntimeError(f"backfill {backfill_id} ended {backfill.status}")
    runs = instance.get_run_records(RunsFilter.for_backfill(backfill_id))
    created = min(r.create_timestamp.timestamp() for r in runs)
    started = max(r.start_time for r in runs)
    stored = max(r.end_time for r in runs)
    materialized = instance.get_records_for_run(
        runs[0].dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    assert materialized, "the backfill stored nothing"
    return {
        "launch -> runs created": created - launched_at,
        "launch -> last run started": started - launched_at,
        "launch -> days stored (runs ended)": stored - launched_at,
        "launch -> backfill completed": done_at - launched_at,
    }


if __name__ == "__main__":
    main()
