"""The daily schedule's runs, and the correction sensor's decisions, in process."""

import datetime as dt
import json

from dagster import SkipReason, build_schedule_context, build_sensor_context, instance_for_test
from dagster._core.test_utils import create_run_for_test

from feature_assets.definitions import defs, feature_set_assets, raw_snapshot
from feature_assets.defs.automation import (
    CHANGED_DAYS_TAG,
    JOB_NAME,
    daily_race_features,
    recompute_after_corrections,
)
from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY
from tests.helpers import materialize_range as _run_of
from tests.helpers import nth_day, swap_first_two_finishers

DAYS = 40
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


# the raw snapshot, then every registered feature set: the sensor keeps each set current
RAW, SETS = raw_snapshot, feature_set_assets
EVERY = [RAW, *SETS]
SET_NAMES = sorted(a.key.to_user_string() for a in SETS)


def _run(source_url, storage, instance, assets, first, last):
    return _run_of(source_url, storage, instance, assets, first, last, universe=EVERY)


def _tick(instance, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = recompute_after_corrections(context)
    return result, context.cursor


def test_schedule_rechecks_the_days_before_then_runs_the_new_day():
    def tick(when: dt.datetime, instance):
        context = build_schedule_context(instance=instance, scheduled_execution_time=when)
        return daily_race_features(context)

    with instance_for_test() as instance:
        # 05:00 in Tokyo on 2024-03-02 is 20:00 UTC the day before
        when = dt.datetime(2024, 3, 1, 20, 0, tzinfo=dt.UTC)
        recheck, new_day = tick(when, instance)
        assert new_day.partition_key == "2024-03-01" and new_day.asset_selection is None
        assert (recheck.tags[RANGE_START], recheck.tags[RANGE_END]) == ("2024-02-23", "2024-02-29")
        assert [k.to_user_string() for k in recheck.asset_selection] == [
            "raw_races",
            "raw_race_entries",
        ]
        assert int(recheck.tags["dagster/priority"]) > 0  # corrections first, then the new day
        pod = json.loads(new_day.tags["dagster-k8s/config"])["container_config"]["resources"]
        assert pod["requests"] == {"cpu": "1", "memory": "2Gi"}  # what the built-in sets ask
        # once a day's runs exist, another tick that day asks for nothing more
        create_run_for_test(instance, job_name=JOB_NAME, tags=new_day.tags)
        assert isinstance(tick(when + dt.timedelta(minutes=1), instance), SkipReason)
        # the first day has nothing before it to check again; the day before it is no day
        [only] = tick(dt.datetime(2024, 1, 1, 20, 0, tzinfo=dt.UTC), instance)
        assert only.partition_key == "2024-01-01"
        assert isinstance(tick(dt.datetime(2023, 12, 31, 20, tzinfo=dt.UTC), instance), SkipReason)


def test_only_a_changed_day_and_the_days_that_read_it_are_recomputed(mysql_url, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=8, seed=9)
    synthetic.load(mysql_url, data)
    storage = str(tmp_path / "parquet")
    with instance_for_test() as instance:
        assert _run(mysql_url, storage, instance, EVERY, nth_day(0), nth_day(DAYS - 1)).success
        result, cursor = _tick(instance)
        assert isinstance(result, SkipReason)  # the features came in the same run
        assert cursor is not None

        recheck = (nth_day(DAYS - 7), nth_day(DAYS - 1))
        assert _run(mysql_url, storage, instance, [RAW], *recheck).success
        result, cursor = _tick(instance, cursor)
        assert isinstance(result, SkipReason)  # nothing changed: nothing to recompute

        corrected = DAYS - 5
        race_id = int(
            data.races.loc[data.races["race_date"] == nth_day(corrected), "race_id"].iloc[0]
        )
        swap_first_two_finishers(mysql_url, race_id)
        assert _run(mysql_url, storage, instance, [RAW], *recheck).success
        requests, cursor = _tick(instance, cursor)
        # one run per set, each for the corrected day and the days after it that read it
        assert sorted(k.to_user_string() for r in requests for k in r.asset_selection) == (
            SET_NAMES
        )
        for request in requests:
            assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (
                nth_day(corrected),
                nth_day(DAYS - 1),
            )
            assert request.tags[CHANGED_DAYS_TAG] == nth_day(corrected)

        assert _run(
            mysql_url, storage, instance, SETS, nth_day(corrected), nth_day(DAYS - 1)
        ).success
        result, _ = _tick(instance, cursor)
        assert isinstance(result, SkipReason)


def test_raw_days_stored_alone_get_their_features(mysql_url, tmp_path):
    """A raw-only backfill (new days, no features yet): the sensor computes their features."""
    data = synthetic.generate(FIRST_DAY, days=12, races_per_day=6, seed=10)
    synthetic.load(mysql_url, data)
    storage = str(tmp_path / "parquet")
    with instance_for_test() as instance:
        assert _run(mysql_url, storage, instance, [RAW], nth_day(0), nth_day(11)).success
        requests, _ = _tick(instance)
        assert sorted(k.to_user_string() for r in requests for k in r.asset_selection) == (
            SET_NAMES
        )
        for request in requests:
            assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (nth_day(0), nth_day(11))
