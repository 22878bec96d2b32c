"""Helpers shared by tests (and benchmarks): one place, imported, never copied."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from dagster import AssetKey, DagsterInstance, instance_for_test, materialize

from feature_assets.defs.features import feature_set_asset
from feature_assets.defs.raw import raw_snapshot
from feature_assets.defs.resources import DailyParquetIOManager, SourceDatabase
from feature_assets.feature_sets.race_features import race_features as built_in_set
from feature_assets.io.source import SourceLocation
from feature_assets.partitions import daily_partitions
from tests.conftest import FIRST_DAY, server_connection


def materialize_days(source_url, storage_url, instance, feature_sets, first, last, raw=True):
    """The raw assets (unless raw=False) and `feature_sets` for first..last in one ranged
    run, as a backfill runs them; failures are returned, not raised."""
    assets = [raw_snapshot, *(feature_set_asset(s) for s in feature_sets)]
    return materialize(
        assets,
        selection=assets if raw else assets[1:],
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        instance=instance,
        resources={
            "source": SourceDatabase(url=source_url),
            "io_manager": DailyParquetIOManager(base_url=storage_url),
        },
        raise_on_error=False,
    )


def partition_status(instance, asset: str, keys=None) -> dict:
    """day -> AssetPartitionStatus of `asset`, as the UI's partition bar shows it."""
    keys = keys or daily_partitions.get_partition_keys()
    return instance.get_status_by_partition(AssetKey(asset), keys, daily_partitions)


REPO = Path(__file__).resolve().parents[1]
# Debian's Chromium (.ci/run installs it); as root it runs without its sandbox, and with no
# background networking, which this machine's closed network refuses
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def command_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURE_ASSETS_")}
    return {**env, "DAGSTER_HOME": str(home), **variables}


def dagster_materialize(env, cwd, *days: str):
    """The raw assets through `dagster asset materialize`, for `--partition[-range] DAYS`."""
    days = days or ("--partition-range", "2024-01-01...2024-01-20")
    return subprocess.run(
        ["dagster", "asset", "materialize", "-m", "feature_assets.definitions"]
        + ["--select", "raw_races,raw_race_entries", *days],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


SELECT = "raw_races,raw_race_entries,race_features"


race_features = feature_set_asset(built_in_set)
CONTRACT_ASSETS = [raw_snapshot, race_features]


def nth_day(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def materialize_range(source_url, storage_url, instance, assets, first, last=None, universe=None):
    """Materialise `assets` (of `universe`: default the raw assets and the built-in set)
    for the days first..last in one run, as a backfill would."""
    tags = {}
    partition_key = first
    if last is not None:
        tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        }
        partition_key = None
    return materialize(
        universe or [raw_snapshot, race_features],
        selection=assets,
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        resources={
            "source": SourceDatabase(url=source_url),
            "io_manager": DailyParquetIOManager(base_url=storage_url),
        },
        raise_on_error=False,
    )


def _target_days(instance: DagsterInstance, backfill_id: str) -> dict[str, list[str]]:
    subset = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
    return {
        key.to_user_string(): sorted(subset.get_partitions_subset(key).get_partition_keys())
        for key in subset.asset_keys
    }


def backfill_targets(home) -> list[dict[str, list[str]]]:
    with instance_for_test(temp_dir=str(home)) as instance:
        return [_target_days(instance, b.backfill_id) for b in reversed(instance.get_backfills())]


def backfill_command(env, *args):
    return subprocess.run(
        ["feature-assets", "backfill", *args], env=env, cwd=REPO, capture_output=True, text=True
    )


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def dagster_dev(env: dict, log: Path):
    with open(log, "wb") as output:
        server = subprocess.Popen(
            ["dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-p", "0"],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        with DagsterInstance.get() as instance:
            beats = {"BACKFILL", "SENSOR"}  # the commands look for these daemon threads
            wait_for(lambda: beats <= set(instance.get_daemon_heartbeats()), 120, "the daemon")
            yield instance
    finally:
        stop_process_group(server)
        os.environ.pop("DAGSTER_HOME", None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_up(port: int) -> bool:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
        return True
    return False


@contextlib.contextmanager
def dagster_services(env: dict, logs: Path, *services: str):
    """`dagster-webserver` (on the repo's workspace.yaml) and, when asked for, `dagster-daemon
    run`, each a process of its own logging to `logs`; yields the webserver's port."""
    port = _free_port()
    workspace = str(REPO / "workspace.yaml")
    commands = {
        "webserver": ["dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
        "daemon": ["dagster-daemon", "run", "-w", workspace],
    }
    processes = []
    try:
        for name in services:
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        commands[name],
                        env=env,
                        cwd=REPO,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        wait_for(lambda: _server_up(port), 120, "the webserver")
        yield port
    finally:
        for process in processes:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (started with start_new_session), SIGKILL after 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def feature_assets_command(env, *args, timeout=900):
    return subprocess.run(
        ["feature-assets", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def swap_first_two_finishers(url: str, race_id: int) -> None:
    """A late correction: the first and second of a race change places."""
    location = SourceLocation.from_url(url)
    with contextlib.closing(server_connection(location, location.database)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "UPDATE race_entries SET finish_position = 3 - finish_position"
                " WHERE race_id = %s AND finish_position IN (1, 2)",
                (race_id,),
            )
            assert cursor.rowcount == 2


def graphql(port: int, query: str, variables: dict) -> dict:
    """A query to the webserver's GraphQL endpoint, as the UI sends it; its data."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


def materialize_command(*partitions: str) -> list[str]:
    """`dagster asset materialize` of the contract's three assets, for a partition option."""
    return [
        "dagster", "asset", "materialize", "-m", "feature_assets.definitions",
        "--select", SELECT, *partitions,
    ]  # fmt: skip


SMALL_PARAMS = {"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 20}
SMALL_FEATURES = [
    "racer_win_rate_90d",
    "racer_top2_rate_90d",
    "implied_win_prob",
    "exhibition_time_rank",
]


def train_small_model(storage, first: dt.date, last: dt.date) -> None:
    """A small win model over the stored days of every registered set (LightGBM with fixed
    parameters, no search), stored where and as `win_model` stores one."""
    from feature_assets.feature_sets import registered_sets
    from feature_assets.training import data, live, model, predict

    sets = list(registered_sets())
    window = data.window(first, last, 6, 6)
    table = data.assemble(storage, sets, window.days, window.split_of)
    features = list(data.feature_columns(sets).values())
    final = model.train_final(table, features, SMALL_PARAMS, threads=1, seed=7)
    lineage = {"sets": {s.name: s.code_version for s in sets}, "features": features}
    test = table[table["split"] == "test"]
    probabilities = model.race_probabilities(final.booster, test, features, final.calibration)
    info = {
        "lineage": lineage,
        "calibration": dataclasses.asdict(final.calibration),
        "backtest": live.backtest_record(test, probabilities),
    }
    predict.store_model(storage, final.booster.model_to_string(), info)


class FakeSlack(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        fields = (
            json.loads(body)
            if self.headers.get("Content-Type", "").startswith("application/json")
            else {k: v[0] for k, v in parse_qs(body).items()}
        )
        FakeSlack.received.append((self.path, self.headers.get("Authorization"), fields))
        payload = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass
