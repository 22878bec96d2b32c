"""check-leakage catches a set that reaches around `history`: its own connection with a URL it
holds, the SQLite source opened by its path, the stored Parquet read at the storage path."""

import datetime as dt
import importlib
import os
import re
import subprocess
import sys

import pytest
from dagster import instance_for_test

from feature_assets.feature_sets.race_context import race_context
from feature_assets.feature_sets.race_features import race_features
from feature_assets.feature_sets.racer_form import racer_form
from feature_assets.io import synthetic
from feature_assets.ops.leakage import Reach, check_stored_days
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import REPO, command_env, materialize_days

DAYS = 12
CHECKED = [(FIRST_DAY + dt.timedelta(days=o)).isoformat() for o in (DAYS - 3, DAYS - 1)]

# Written as a user would: each one copies day D's results into its features.
LEAKY_SETS = """
import os
import sqlite3

import pandas as pd
import pyarrow.parquet as pq
import pymysql

from feature_assets import per_day, per_race


@per_race(history_days=3, columns={{"wins_today": "int"}})
def holds_a_url(race, history):
    connection = pymysql.connect(host="{host}", port={port}, user="{user}", database="{database}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM race_entries WHERE race_id = %s AND finish_position = 1",
            (race.race_id,),
        )
        wins = cursor.fetchone()[0]
    connection.close()
    return [{{"wins_today": wins}} for _ in race.each_entry()]


@per_day(history_days=3, columns={{"finish": "int"}})
def opens_the_sqlite_source(day, history):
    with sqlite3.connect("{sqlite_path}") as connection:
        finishes = pd.read_sql(
            "SELECT race_id, lane, finish_position FROM race_entries", connection
        )
    merged = day.entries.merge(finishes, on=["race_id", "lane"], how="left")
    return pd.DataFrame({{"finish": merged["finish_position"]}})


@per_day(history_days=3, columns={{"finish": "int"}})
def reads_stored_parquet(day, history):
    path = "{storage}/raw_race_entries/race_date=" + day.day + "/data.parquet"
    label = pq.read_table(path).to_pandas()[["race_id", "lane", "finish_position"]]
    merged = day.entries.merge(label, on=["race_id", "lane"], how="left")
    return pd.DataFrame({{"finish": merged["finish_position"]}})


def _odds_of_the_day(day):
    path = os.environ["FEATURE_ASSETS_SOURCE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        odds = pd.read_sql("SELECT race_id, lane, win_odds FROM race_entries", connection)
    merged = day.entries[["race_id", "lane"]].merge(odds, on=["race_id", "lane"], how="left")
    return pd.DataFrame({{"odds": merged["win_odds"]}})


@per_day(history_days=3, columns={{"odds": "float"}})
def card_reads_the_odds(day, history):
    return _odds_of_the_day(day)


@per_day(history_days=3, columns={{"odds": "float"}}, stage="close")
def close_reads_the_odds(day, history):
    return _odds_of_the_day(day)
"""


@pytest.fixture(scope="module")
def lake(mysql_server, tmp_path_factory):
    """Twelve days in the embedded SQLite source, the same rows in a MariaDB database (the
    URL a leaky set holds), the leaky and example sets stored for every day."""
    folder = tmp_path_factory.mktemp("leakage")
    sqlite_path, storage = folder / "source.sqlite", str(folder / "parquet")
    data = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=4, seed=8)
    synthetic.load(f"sqlite:///{sqlite_path}", data)
    with fresh_mysql_database(mysql_server) as mysql_url:
        synthetic.load(mysql_url, data)
        package = folder / "users_sets"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "leaky.py").write_text(
            LEAKY_SETS.format(
                host=mysql_server.host,
                port=mysql_server.port,
                user=mysql_server.user,
                database=mysql_url.rsplit("/", 1)[1],
                sqlite_path=sqlite_path,
                storage=storage,
            )
        )
        sys.path.insert(0, str(folder))
        try:
            leaky = importlib.import_module("users_sets.leaky")
            sets = [leaky.holds_a_url, leaky.opens_the_sqlite_source, leaky.reads_stored_parquet]
            odds_readers = [leaky.card_reads_the_odds, leaky.close_reads_the_odds]
            examples = [racer_form, race_context, race_features]
            home = folder / "dagster_home"
            home.mkdir()
            with instance_for_test(temp_dir=str(home)) as instance:
                last = (FIRST_DAY + dt.timedelta(days=DAYS - 1)).isoformat()
                source, first = f"sqlite:///{sqlite_path}", FIRST_DAY.isoformat()
                sets_and_examples = [*sets, *odds_readers, *examples]
                # the odds readers read the source the run is given, as the cut gives theirs
                os.environ["FEATURE_ASSETS_SOURCE_URL"] = source
                # the raw days first: the Parquet one set reads must be there before it runs
                assert materialize_days(source, storage, instance, [], first, last).success
                run = materialize_days(
                    source, storage, instance, sets_and_examples, first, last, raw=False
                )
                assert run.success
            yield (
                {s.name: s for s in [*sets, *odds_readers]},
                examples,
                storage,
                sqlite_path,
                folder,
                home,
            )
        finally:
            os.environ.pop("FEATURE_ASSETS_SOURCE_URL", None)
            sys.path.remove(str(folder))
            sys.modules.pop("users_sets.leaky", None)
            sys.modules.pop("users_sets", None)


def _reaches(found) -> list[Reach]:
    return [f for f in found if isinstance(f, Reach)]


@pytest.mark.parametrize(
    "name, kind, target",
    [
        ("holds_a_url", "network address", r"127\.0\.0\.1:3306"),
        ("opens_the_sqlite_source", "SQLite database", r".*/source\.sqlite"),
        ("reads_stored_parquet", "file", r".*/raw_race_entries/race_date=.*/data\.parquet"),
    ],
)
def test_a_set_reaching_around_history_is_caught_naming_what_and_where(lake, name, kind, target):
    sets, _, storage, sqlite_path, folder, _ = lake
    found = check_stored_days(sets[name], CHECKED, storage, f"sqlite:///{sqlite_path}")
    reaches = _reaches(found)
    assert {r.day for r in reaches} == set(CHECKED), found
    for reach in reaches:
        assert reach.feature_set == name and reach.access.kind == kind
        assert re.fullmatch(target, reach.access.target), reach.access
        assert reach.access.where.startswith(f"{folder}/users_sets/leaky.py:"), reach.access
        assert f"({name})" in reach.access.where
        assert name in reach.describe() and reach.day in reach.describe()


def test_a_card_set_that_reads_the_odds_of_its_day_is_flagged_and_a_close_one_is_not(lake):
    """Both read D's odds through the source URL they are given (the cut copy while
    checked): at `card` the cut holds no odds of D, so every value differs."""
    sets, _, storage, sqlite_path, _, _ = lake
    source = f"sqlite:///{sqlite_path}"
    found = check_stored_days(sets["card_reads_the_odds"], CHECKED, storage, source)
    assert found and not _reaches(found), found
    assert {(f.day, f.column) for f in found} == {(day, "odds") for day in CHECKED}
    assert all(f.stored is not None and f.recomputed is None for f in found), found[:3]
    assert check_stored_days(sets["close_reads_the_odds"], CHECKED, storage, source) == []


def test_the_example_sets_and_a_clean_set_pass(lake):
    _, examples, storage, sqlite_path, _, _ = lake
    for feature_set in examples:
        assert check_stored_days(feature_set, CHECKED, storage, f"sqlite:///{sqlite_path}") == []


@pytest.mark.e2e
def test_the_command_fails_naming_the_set_day_file_and_line(lake, tmp_path):
    _, _, storage, sqlite_path, folder, home = lake
    env = command_env(
        tmp_path,
        DAGSTER_HOME=str(home),
        FEATURE_ASSETS_SOURCE_URL=f"sqlite:///{sqlite_path}",
        FEATURE_ASSETS_STORAGE_URL=storage,
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_FEATURE_SETS="users_sets.leaky",
        PYTHONPATH=f"{folder}:{REPO}",
    )
    leak = subprocess.run(
        ["feature-assets", "check-leakage", "reads_stored_parquet", "--sample", "2"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert leak.returncode == 1, leak.stdout + leak.stderr[-3000:]
    assert "feature set reads_stored_parquet opened file" in leak.stdout
    assert re.search(r"^  \d{4}-\d\d-\d\d: \d+ finding\(s\) \(\d+\.\d s\)$", leak.stdout, re.M)
    assert f"{folder}/users_sets/leaky.py:" in leak.stdout and "No leak" not in leak.stdout
