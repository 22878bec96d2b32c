"""The commands a user types, run as a user would: in a subprocess, with the environment."""

import contextlib
import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pyarrow.dataset as ds
import pytest

from feature_assets.io import synthetic
from feature_assets.io.source import SourceLocation
from tests.conftest import FIRST_DAY, fresh_mysql_database, server_connection
from tests.helpers import command_env, dagster_materialize, materialize_command
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def read_only_user(server: SourceLocation, database: str, password: str):
    user = f"fa_reader_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(server_connection(server)) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        cursor.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", (password,))
        for host in ("%", "localhost"):
            cursor.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'{host}'")
    try:
        yield user
    finally:
        with contextlib.closing(server_connection(server)) as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP USER '{user}'@'%', '{user}'@'localhost'")


def _files_containing(folder: Path, secret: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_dagster_asset_materialize_a_range_from_mysql(mysql_server, tmp_path):
    """The README's ranged command: one connection, every day written, the password nowhere."""
    password = "Pw-" + uuid.uuid4().hex
    data = synthetic.generate(FIRST_DAY, days=60, races_per_day=12, seed=8)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        location = SourceLocation.from_url(url)
        with (
            read_only_user(mysql_server, location.database, password) as user,
            TcpProxy(location.host, location.port) as proxy,
        ):
            source = f"mysql://{user}:{password}@127.0.0.1:{proxy.port}/{location.database}"
            env = command_env(
                tmp_path,
                FEATURE_ASSETS_SOURCE_URL=source,
                FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
            )
            run = subprocess.run(
                materialize_command("--partition-range", "2024-01-01...2024-02-29"),
                env=env,
                cwd=tmp_path,
                capture_output=True,
                timeout=300,
            )
            opened = proxy.connections
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert opened == 1
    features = ds.dataset(tmp_path / "parquet" / "race_features", partitioning="hive")
    assert len(features.files) == 60 and features.count_rows() == len(data.entries)
    secret = password.encode()
    assert secret not in run.stdout + run.stderr
    assert _files_containing(tmp_path / "dagster_home", secret) == []
    assert _files_containing(tmp_path / "parquet", secret) == []


def test_demo_leaves_a_healthy_instance(tmp_path):
    """The demo's data reaches the last partition (yesterday in Tokyo): status is clean and
    there is nothing left to backfill."""
    first = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=200)
    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE=first.isoformat())
    run = subprocess.run(
        ["feature-assets", "demo", "--races-per-day", "6"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "days:" in run.stdout and "200" in run.stdout
    features = ds.dataset(
        tmp_path / "dagster_home" / "data" / "parquet" / "race_features", partitioning="hive"
    )
    assert len(features.files) == 200
    assert f"DAGSTER_HOME={tmp_path / 'dagster_home'} dagster dev" in run.stdout
    status = subprocess.run(["feature-assets", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert "200 materialized, 0 failed, 0 in progress, 0 missing" in status.stdout
    again = subprocess.run(
        ["feature-assets", "backfill", "--missing", "--wait"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "Nothing to backfill" in again.stdout


@pytest.mark.parametrize(
    "days_per_run, policy",
    [
        ("", "BackfillPolicy.single_run()"),
        ("30", "BackfillPolicy.multi_run(max_partitions_per_run=30)"),
    ],
)
def test_days_per_run_sets_the_backfill_policy(tmp_path, days_per_run, policy):
    env = command_env(tmp_path, FEATURE_ASSETS_DAYS_PER_RUN=days_per_run)
    code = (
        "from feature_assets.definitions import defs\n"
        "graph = defs.resolve_asset_graph()\n"
        "nodes = [graph.get(k) for k in graph.get_all_asset_keys()]\n"
        "days = [n for n in nodes if n.partitions_def]\n"
        "print({str(n.backfill_policy) for n in days if n.group_name != 'race_day'})\n"
        "print({str(n.backfill_policy) for n in days if n.group_name == 'race_day'})\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == [
        repr({policy}),
        repr({"BackfillPolicy.multi_run(max_partitions_per_run=1)"}),  # a card per run
    ]


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("FEATURE_ASSETS_DAYS_PER_RUN", "0", "FEATURE_ASSETS_DAYS_PER_RUN must be a positive"),
        ("FEATURE_ASSETS_START_DATE", "2024/01/01", "FEATURE_ASSETS_START_DATE must be a date"),
        ("FEATURE_ASSETS_AUTOMATION", "yes", "FEATURE_ASSETS_AUTOMATION must be on or off"),
        ("FEATURE_ASSETS_DAILY_CRON", "every morning", "invalid cron schedule 'every morning'"),
        ("FEATURE_ASSETS_STORAGE_URL", "s3://bucket/x", "unknown scheme 's3'"),
        ("FEATURE_ASSETS_RECHECK_DAYS", "-1", "FEATURE_ASSETS_RECHECK_DAYS must be a whole"),
    ],
)
def test_bad_settings_are_named(tmp_path, variable, value, message):
    env = command_env(tmp_path, **{variable: value})
    run = subprocess.run(
        [sys.executable, "-c", "import feature_assets.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and message in run.stderr


def test_a_password_with_special_characters_works_and_shows_nowhere(mysql_server, tmp_path):
    """Percent-encoded, a password with / @ : # ? % works; unencoded, or wrong, or with the
    link cut mid-read, the runs fail with messages that never hold it."""
    password = f"Pw/@:#?%{uuid.uuid4().hex[:12]}"
    secret = password.encode()
    encoded = quote(password, safe="")
    data = synthetic.generate(FIRST_DAY, days=20, races_per_day=12, seed=8)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        database = SourceLocation.from_url(url).database
        with (
            read_only_user(mysql_server, database, password) as user,
            TcpProxy(mysql_server.host, mysql_server.port) as proxy,
        ):
            host = f"127.0.0.1:{proxy.port}"
            cases = {
                "works": f"mysql://{user}:{encoded}@{host}/{database}",
                "unencoded": f"mysql://{user}:{password}@{host}/{database}",
                "wrong": f"mysql://{user}:{encoded}x@{host}/{database}",
                "cut": f"mysql://{user}:{encoded}@{host}/{database}",
            }
            outcomes = {}
            for case, source in cases.items():
                folder = tmp_path / case
                folder.mkdir()
                env = command_env(
                    folder,
                    FEATURE_ASSETS_SOURCE_URL=source,
                    FEATURE_ASSETS_STORAGE_URL=str(folder / "parquet"),
                    FEATURE_ASSETS_SOURCE_READ_ATTEMPTS="2",
                )
                if case == "cut":
                    proxy.cut_after_bytes(20_000, times=2)
                run = dagster_materialize(env, folder)
                outcomes[case] = run
                assert secret not in (run.stdout + run.stderr).encode(), case
                assert _files_containing(folder, secret) == [], case
    assert outcomes["works"].returncode == 0, outcomes["works"].stderr[-2000:]
    assert outcomes["unencoded"].returncode != 0
    assert "not percent-encoded" in outcomes["unencoded"].stderr
    assert outcomes["wrong"].returncode != 0 and "Access denied" in outcomes["wrong"].stderr
    assert outcomes["cut"].returncode != 0 and "Lost connection" in outcomes["cut"].stderr
