"""The race-day assets start where predicting started, in the UI and in `status`."""

import datetime as dt
import json
import subprocess

import pytest

from feature_assets import settings
from feature_assets.partitions import daily_partitions, measured_days, prediction_days
from tests.helpers import REPO, command_env

TOKYO = dt.timezone(dt.timedelta(hours=9))


def test_unset_the_race_day_assets_cover_the_last_30_days(monkeypatch):
    monkeypatch.delenv("FEATURE_ASSETS_PREDICT_START_DATE", raising=False)
    today = dt.datetime.now(TOKYO).date()
    assert settings.predict_start_date() == (today - dt.timedelta(days=30)).isoformat()


def test_a_start_before_the_calendar_is_the_calendars_first_day(monkeypatch):
    monkeypatch.setenv("FEATURE_ASSETS_START_DATE", "2024-01-01")
    monkeypatch.setenv("FEATURE_ASSETS_PREDICT_START_DATE", "2020-05-01")
    assert settings.predict_start_date() == "2024-01-01"


def test_a_bad_start_stops_the_load_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FEATURE_ASSETS_PREDICT_START_DATE", "next monday")
    with pytest.raises(settings.ConfigurationError, match="FEATURE_ASSETS_PREDICT_START_DATE"):
        settings.check_configuration()


def test_the_race_day_partitions_start_at_the_setting_and_keep_one_per_day():
    start = settings.predict_start_date()
    assert prediction_days.get_first_partition_key() == start
    assert measured_days.get_first_partition_key() == start
    # results: the days that have ended, as the raw days; predictions: up to tomorrow
    assert measured_days.get_last_partition_key() == daily_partitions.get_last_partition_key()
    last = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    assert prediction_days.get_last_partition_key() == (last + dt.timedelta(days=2)).isoformat()


@pytest.mark.e2e
def test_status_counts_race_days_from_where_predicting_started(tmp_path):
    """A new deployment: 30 days of each race-day asset missing, not two years."""
    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE="2024-01-01")
    status = subprocess.run(
        ["feature-assets", "status", "--assets", "raw_races,predictions,prediction_results",
         "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    states = {state["asset"]: state for state in json.loads(status.stdout)}
    today = dt.datetime.now(TOKYO).date()
    assert states["prediction_results"]["days"] == 30  # today-30 .. yesterday
    assert states["predictions"]["days"] == 32  # .. and today and tomorrow
    assert states["raw_races"]["days"] == (today - dt.date(2024, 1, 1)).days
    first = (today - dt.timedelta(days=30)).isoformat()
    assert states["predictions"]["missing"][0].startswith(first)
