"""A failed day says why where a user looks at it: its page in the UI holds an observation
with the cause, in the words `feature-assets status` prints."""

import datetime as dt
import os
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, instance_for_test

from feature_assets.feature_sets.race_features import race_features
from feature_assets.io import synthetic
from feature_assets.ops.status import days_by_state
from tests.conftest import FIRST_DAY
from tests.feature_sets.faulty import raises_on_day
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, dagster_services, materialize_days

pytestmark = pytest.mark.integration
DAYS = [(FIRST_DAY + dt.timedelta(days=offset)).isoformat() for offset in range(6)]
BAD_VENUE_DAYS = (DAYS[1], DAYS[3])  # one race each, another race_id, the same rule


@pytest.fixture(scope="module")
def failed(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("failed_days")
    url, storage = f"sqlite:///{folder}/source.sqlite", str(folder / "parquet")
    data = synthetic.generate(FIRST_DAY, days=len(DAYS), races_per_day=4, seed=5)
    bad = data.races["race_date"].dt.strftime("%Y-%m-%d").isin(BAD_VENUE_DAYS)
    first_of_day = bad & ~data.races.duplicated("race_date")
    data.races.loc[first_of_day, "venue_code"] = 99
    synthetic.load(url, data)
    monkeypatch_module.setenv("FAULTY_DAY", DAYS[4])
    home = folder / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        run = materialize_days(
            url, storage, instance, [race_features, raises_on_day], DAYS[0], DAYS[-1]
        )
        assert not run.success
        yield instance, home, url, storage, sorted(data.races[first_of_day]["race_id"])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _failure_events(instance, asset: str) -> dict[str, object]:
    records = instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey(asset)), limit=100
    ).records
    return {r.partition_key: r.asset_observation for r in records}


def test_each_failed_day_has_an_event_with_the_words_status_prints(failed):
    instance, *_ = failed
    states = {s.asset: s for s in days_by_state(instance, ["race_features", "raises_on_day"])}
    # every set fails on invalid races; raises_on_day also on its own exception
    for asset, days in (
        ("race_features", BAD_VENUE_DAYS),
        ("raises_on_day", (*BAD_VENUE_DAYS, DAYS[4])),
    ):
        events = _failure_events(instance, asset)
        assert sorted(events) == sorted(days) == states[asset].failed
        for day in days:
            error = states[asset].errors[day]
            assert events[day].metadata["failed"].value == error.example
            assert events[day].description == f"not materialised: {error.example}"
            assert events[day].metadata["cause"].value == error.cause
    assert "race_id" in events[DAYS[4]].description
    assert "ZeroDivisionError: the user's code divided by zero" in events[DAYS[4]].description


def test_days_failing_the_same_rule_are_one_cause_naming_each_days_race(failed):
    instance, _, _, _, race_ids = failed
    [state] = days_by_state(instance, ["race_features"])
    [(cause, days)] = state.failures_by_cause()
    assert cause == "invalid races: venue_code must be in 1..24"
    assert days == list(BAD_VENUE_DAYS)
    examples = [state.errors[day].example for day in days]
    assert examples == [f"{cause} (race_id {race_id})" for race_id in race_ids]


@pytest.mark.e2e
def test_the_failed_days_page_in_the_ui_shows_its_cause(failed, tmp_path):
    """Dagster's own UI in Chromium: the day's partition page, its historical events, the
    failure opened: the cause reads as `status` has it. A screenshot is kept beside the logs."""
    from playwright.sync_api import sync_playwright

    instance, home, url, storage, race_ids = failed
    [state] = days_by_state(instance, ["race_features"])
    day = BAD_VENUE_DAYS[0]
    words = state.errors[day].example
    with open(home / "dagster.yaml", "a") as config:
        config.write("nux:\n  enabled: false\n")  # no newsletter dialog over the page
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURE_ASSETS_")}
    env.update(
        DAGSTER_HOME=str(home),
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_SOURCE_URL=url,
        FEATURE_ASSETS_STORAGE_URL=storage,
    )
    with dagster_services(env, tmp_path, "webserver") as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(f"http://127.0.0.1:{port}/assets/race_features?view=partitions&partition={day}")
        page.get_by_text("View all historical events (1)").click(timeout=60_000)
        page.get_by_text("Observation", exact=True).click()
        shown = page.get_by_text(f"not materialised: {words}", exact=True)
        shown.wait_for(timeout=30_000)
        page.screenshot(path=str(Path(tmp_path) / "failed-day.png"))
        assert f"race_id {race_ids[0]}" in shown.inner_text()
        browser.close()
