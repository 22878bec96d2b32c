"""Incremental operation with a running daemon, and no command typed.

The source gains a new day (yesterday in Tokyo) and a correction to a day three days
earlier. With `FEATURE_ASSETS_AUTOMATION=on` the daily schedule (here every minute; its run
keys make it act once a day) and the correction sensor must bring the features up to date:
the new day computed once, the corrected day and the days that read it recomputed once, and
nothing else (counted by materialisations).
"""

import collections
import datetime as dt
import subprocess
import time
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, RunsFilter

from feature_assets.io import synthetic
from feature_assets.io.source import SourceLocation, read_snapshot
from feature_assets.io.storage import DailyParquetStorage
from tests.conftest import fresh_mysql_database
from tests.helpers import REPO, SELECT, command_env, dagster_dev, swap_first_two_finishers, wait_for
from tests.reference import compute_race_features

pytestmark = pytest.mark.e2e

DAYS = 20
RECHECK_DAYS = 7


def _of_days(data: synthetic.SyntheticData, keep) -> synthetic.SyntheticData:
    races = data.races[keep(data.races["race_date"])]
    entries = data.entries[data.entries["race_id"].isin(races["race_id"])]
    return synthetic.SyntheticData(races=races, entries=entries, invalid_race_ids={})


def _materialisations(instance, asset: str) -> collections.Counter:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset)), limit=10_000
    ).records
    return collections.Counter(r.asset_materialization.partition for r in records)


def test_new_day_and_a_correction_flow_in_without_a_command(mysql_server, tmp_path):
    new_day = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)
    first = new_day - dt.timedelta(days=DAYS - 1)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    corrected = days[-4]
    data = synthetic.generate(first, days=DAYS, races_per_day=6, seed=41)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, _of_days(data, lambda d: d < pd.Timestamp(new_day)))
        env = command_env(
            tmp_path,
            FEATURE_ASSETS_SOURCE_URL=url,
            FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
            FEATURE_ASSETS_START_DATE=first.isoformat(),
        )
        materialize = subprocess.run(
            ["dagster", "asset", "materialize", "-m", "feature_assets.definitions"]
            + ["--select", SELECT, "--partition-range", f"{days[0]}...{days[-2]}"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert materialize.returncode == 0, materialize.stderr[-3000:]

        # overnight: the new day's results arrive, and a past result is corrected
        synthetic.append(url, _of_days(data, lambda d: d == pd.Timestamp(new_day)))
        of_corrected = data.races[data.races["race_date"] == pd.Timestamp(corrected)]
        swap_first_two_finishers(url, int(of_corrected["race_id"].iloc[0]))

        env.update(
            FEATURE_ASSETS_AUTOMATION="on",
            FEATURE_ASSETS_DAILY_CRON="* * * * *",
            FEATURE_ASSETS_RECHECK_DAYS=str(RECHECK_DAYS),
        )
        with dagster_dev(env, tmp_path / "dagster_dev.log") as instance:
            recomputed = set(days[-4:])

            def up_to_date():
                features = _materialisations(instance, "race_features")
                return all(features[d] == 2 for d in days[-4:-1]) and features[days[-1]] >= 1

            wait_for(up_to_date, 420, "the new day and the corrected days", every=2)
            # two more sensor intervals and a schedule tick: nothing else may follow
            time.sleep(65)
            busy = instance.get_runs(
                RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED])
            )
            assert busy == []
            runs = instance.get_runs(RunsFilter())
            assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
            raw = _materialisations(instance, "raw_races")
            features = _materialisations(instance, "race_features")

        rechecked = set(days[-1 - RECHECK_DAYS : -1])
        assert raw == {d: 1 + (d in rechecked) for d in days}
        assert features == {d: 1 + (d in recomputed and d != days[-1]) for d in days}

        # what is stored is what the source holds now, corrections included
        snapshot = read_snapshot(SourceLocation.from_url(url), first, new_day)
        races, entries = snapshot.races, snapshot.entries
    stored = DailyParquetStorage(str(tmp_path / "parquet")).read_days("race_features", days)
    pd.testing.assert_frame_equal(stored, compute_race_features(races, entries, days))
