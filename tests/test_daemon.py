"""Backfills through a real daemon: `feature-assets backfill`, status, and kill -9 of run workers.

Starts `dagster dev` (webserver, daemon, code server) on the repo's workspace.yaml with a
temporary instance that uses the repo's dagster_home/dagster.yaml.
"""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from dagster import DagsterRunStatus, RunsFilter

from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import REPO, command_env, dagster_dev, feature_assets_command, wait_for
from tests.tcp_proxy import TcpProxy, proxied_url

pytestmark = pytest.mark.e2e

DAYS = 400


def _run_workers(home: Path) -> list[int]:
    """Pids of the run workers of the instance in `home`: the code server (`dagster api
    grpc`) starts each run in a child process through multiprocessing's spawn."""
    marker = f"DAGSTER_HOME={home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if not proc.name.isdigit() or b"spawn_main" not in (proc / "cmdline").read_bytes():
                continue
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            parent_cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
            environment = (proc / "environ").read_bytes().split(b"\0")
            if b"grpc" in parent_cmdline and marker in environment:
                pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def clean_features(mysql_server, tmp_path_factory):
    """The source, and the features of a clean run to compare with."""
    data = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=8, invalid_races=3, seed=17)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        yield url, data


def test_backfill_with_killed_workers_ends_like_a_clean_run(clean_features, tmp_path):
    url, data = clean_features
    last = (pd.Timestamp(FIRST_DAY) + pd.Timedelta(days=DAYS - 1)).strftime("%Y-%m-%d")
    bad_days = sorted(
        {pd.Timestamp(str(r)[:8]).strftime("%Y-%m-%d") for r in data.invalid_race_ids}
    )
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_SOURCE_URL=url,
        FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
    )
    home = Path(env["DAGSTER_HOME"])
    with dagster_dev(env, tmp_path / "dagster_dev.log") as instance:
        backfill = subprocess.Popen(
            ["feature-assets", "backfill", "--range", f"2024-01-01...{last}", "--wait"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = []
        for _ in range(2):  # kill the run worker twice, each time in the middle of its work
            pid = wait_for(
                lambda: [p for p in _run_workers(home) if p not in killed], 180, "a run worker"
            )[0]
            time.sleep(3)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        out, err = backfill.communicate(timeout=900)

        assert backfill.returncode == 1, err[-3000:]  # the invalid days failed
        assert "asset-days done" in err
        runs = instance.get_runs(RunsFilter())
        assert sum(r.status == DagsterRunStatus.FAILURE for r in runs) >= 2
        assert any(r.tags.get("dagster/is_resume_retry") or r.parent_run_id for r in runs)

        status = feature_assets_command(env, "status", "--json")
    assert status.returncode == 1  # failed days, and the days after the data are missing
    by_asset = {entry["asset"]: entry for entry in json.loads(status.stdout)}
    for raw in ("raw_races", "raw_race_entries"):
        assert by_asset[raw]["failed"] == [] and by_asset[raw]["materialized"] == DAYS
    features = by_asset["race_features"]
    assert features["failed"] == bad_days
    assert features["materialized"] == DAYS - len(bad_days)
    assert set(features["errors"]) == set(bad_days)
    assert all("invalid races on" in e["detail"] for e in features["errors"].values())

    # same files and values as a clean run, nothing half-written
    storage = DailyParquetStorage(str(tmp_path / "parquet"))
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(FIRST_DAY, periods=DAYS)]
    good_days = [d for d in days if d not in bad_days]
    stored = storage.read_days("race_features", good_days)
    # only the write lock and the staging folders are hidden; a killed worker's temporaries
    # wait there (invisible to readers) until a later write of their day clears them
    hidden = {p.name for p in (tmp_path / "parquet").rglob(".*")}
    assert hidden <= {".write.lock", ".staging"} | {p.name for p in _staged(tmp_path)}
    assert all(p.suffix == ".tmp" for p in _staged(tmp_path))
    for asset, count in [("raw_races", DAYS), ("race_features", DAYS - len(bad_days))]:
        files = ds.dataset(tmp_path / "parquet" / asset, partitioning="hive").files
        assert {Path(f).name for f in files} == {"data.parquet"} and len(files) == count
    from tests.reference import compute_race_features

    expected = compute_race_features(data.races, data.entries, good_days)
    pd.testing.assert_frame_equal(stored, expected)


def _staged(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "parquet").glob("*/.staging/*")]


def test_split_backfill_never_opens_more_connections_than_the_pool(
    clean_features, mysql_server, tmp_path
):
    url, _ = clean_features
    # the runs reach the source through a proxy of this test's own: it counts their
    # connections open at once, whoever else uses the server
    with TcpProxy(mysql_server.host, mysql_server.port) as proxy:
        env = command_env(
            tmp_path,
            FEATURE_ASSETS_SOURCE_URL=proxied_url(url, proxy),
            FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
        )
        with dagster_dev(env, tmp_path / "dagster_dev.log") as instance:
            backfill = subprocess.run(
                [
                    "feature-assets",
                    "backfill",
                    "--range",
                    "2024-01-01...2024-04-30",
                    "--days-per-run",
                    "30",
                    "--wait",
                ],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=900,
            )
            out, err = backfill.stdout, backfill.stderr
            runs = instance.get_runs(RunsFilter())
        most = proxy.most_at_once
    assert backfill.returncode == 1, err[-3000:]  # 2024-03-08 has an invalid race
    assert "Launched backfill(s)" in out and out.count(",") >= 7  # 4 raw + 4 feature backfills
    assert len(runs) >= 8
    assert most == 1  # one run reads the source at a time: the pool's limit
    features = DailyParquetStorage(str(tmp_path / "parquet"))
    assert len(features.read_days("race_features", ["2024-04-30"])) > 0
