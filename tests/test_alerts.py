"""The Slack alert, posted through dagster-slack to a local server standing in for Slack."""

import pytest
from dagster import DagsterEventType, SkipReason, build_run_status_sensor_context, instance_for_test

from feature_assets.defs.alerts import slack_on_run_failure
from feature_assets.defs.resources import build_resources
from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import CONTRACT_ASSETS, FakeSlack, materialize_range, nth_day


@pytest.fixture
def failed_run(mysql_server, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=20, races_per_day=6, invalid_races=1, seed=9)
    with fresh_mysql_database(mysql_server) as url, instance_for_test() as instance:
        synthetic.load(url, data)
        result = materialize_range(
            url, str(tmp_path), instance, CONTRACT_ASSETS, nth_day(0), nth_day(19)
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.RUN_FAILURE
        ).records[0]

        def context():
            """As the daemon builds it: the resources from this environment."""
            return build_run_status_sensor_context(
                sensor_name="slack_on_run_failure",
                dagster_instance=instance,
                dagster_run=run,
                dagster_event=failure.event_log_entry.dagster_event,
                resources={"alerts": build_resources()["alerts"]},
            ).for_run_failure()

        yield context, data


def test_failed_run_is_posted_to_slack(failed_run, fake_slack, monkeypatch):
    context, data = failed_run
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("FEATURE_ASSETS_SLACK_CHANNEL", "#features")
    monkeypatch.setenv("FEATURE_ASSETS_SLACK_API_URL", fake_slack)
    monkeypatch.setenv("FEATURE_ASSETS_UI_URL", "http://dagster.example")

    slack_on_run_failure(context())

    [(path, authorization, fields)] = FakeSlack.received
    assert path == "/api/chat.postMessage" and authorization == "Bearer xoxb-test-token"
    assert fields["channel"] == "#features"
    text = fields["text"]
    [bad_race] = data.invalid_race_ids
    bad_day = f"{str(bad_race)[:4]}-{str(bad_race)[4:6]}-{str(bad_race)[6:8]}"
    assert "failed: race_features, raw_race_entries, raw_races\n" in text
    assert "days: 2024-01-01...2024-01-20" in text
    assert f"error: invalid races on 1 day(s): {bad_day}" in text
    assert f"http://dagster.example/runs/{context().dagster_run.run_id}" in text


def test_silent_without_a_token(failed_run, fake_slack, monkeypatch):
    context, _ = failed_run
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("FEATURE_ASSETS_SLACK_API_URL", fake_slack)
    assert isinstance(slack_on_run_failure(context()), SkipReason)
    assert FakeSlack.received == []
