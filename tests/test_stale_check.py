"""Stale days show on the asset: the `computed_by_current_code` check and its sensor."""

import dataclasses
import json

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.definitions.data_version import CODE_VERSION_TAG

from feature_assets.defs.stale import CHECK_NAME, check_evaluations, stale_days_sensor
from feature_assets.feature_sets.race_context import race_context
from feature_assets.feature_sets.racer_form import racer_form
from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY
from tests.helpers import materialize_days


def _event_log(kind: str, folder) -> dict:
    """Dagster's own SQLite event log, or ours, which indexes each day's code version."""
    if kind == "dagster":
        module, name = "dagster._core.storage.event_log", "SqliteEventLogStorage"
    else:
        module, name = "feature_assets.defs.event_log", "BatchedSqliteEventLogStorage"
    config = {"base_dir": str(folder)}
    return {"event_log_storage": {"module": module, "class": name, "config": config}}


# first the days are stored, then recomputed and checked: also on our event log over a
# history Dagster's stored (an instance switched to it keeps days with unindexed versions)
@pytest.mark.parametrize(
    "first, then", [("dagster", "dagster"), ("ours", "ours"), ("dagster", "ours")]
)
def test_the_check_warns_with_the_stale_days_until_they_are_recomputed(tmp_path, first, then):
    url, storage = f"sqlite:///{tmp_path}/source.sqlite", str(tmp_path / "parquet")
    synthetic.load(url, synthetic.generate(FIRST_DAY, days=8, races_per_day=3, seed=2))
    edited = dataclasses.replace(racer_form, version="edited")  # its code changed
    home, events_folder = tmp_path / "home", tmp_path / "events"
    home.mkdir()
    with instance_for_test(_event_log(first, events_folder), temp_dir=str(home)) as instance:
        sets = [racer_form, race_context]
        assert materialize_days(url, storage, instance, sets, "2024-01-01", "2024-01-08").success
    with instance_for_test(_event_log(then, events_folder), temp_dir=str(home)) as instance:
        events, cursor = check_evaluations(instance, [edited, race_context], {})
        by_asset = {e.asset_key.path[-1]: e for e in events}
        assert not by_asset["racer_form"].passed
        assert by_asset["racer_form"].metadata["stale_days"].value == 8
        assert by_asset["racer_form"].metadata["days"].value == "2024-01-01...2024-01-08"
        assert "backfill --stale" in by_asset["racer_form"].metadata["to_fix"].value
        assert by_asset["race_context"].passed
        assert check_evaluations(instance, [edited, race_context], cursor)[0] == []  # unchanged

        assert materialize_days(
            url, storage, instance, [edited], "2024-01-03", "2024-01-08", raw=False
        ).success
        events, cursor = check_evaluations(instance, [edited, race_context], cursor)
        [event] = events  # only the set whose days changed is evaluated again
        assert not event.passed and event.metadata["days"].value == "2024-01-01...2024-01-02"
        if then == "ours":  # the days our event log stored are read from its index
            indexed = instance.event_log_storage.get_latest_tags_by_partition(
                AssetKey("racer_form"), DagsterEventType.ASSET_MATERIALIZATION, [CODE_VERSION_TAG]
            )
            assert len(indexed) == (8 if first == "ours" else 6)


def test_the_sensor_records_an_evaluation_the_ui_shows(tmp_path):
    url, storage = f"sqlite:///{tmp_path}/source.sqlite", str(tmp_path / "parquet")
    synthetic.load(url, synthetic.generate(FIRST_DAY, days=3, races_per_day=3, seed=2))
    with instance_for_test() as instance:
        assert materialize_days(
            url, storage, instance, [race_context], "2024-01-01", "2024-01-03"
        ).success
        context = build_sensor_context(instance=instance)
        result = stale_days_sensor(context)
        assert json.loads(result.cursor)["race_context"][0] == race_context.code_version
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        key = AssetCheckKey(AssetKey("race_context"), CHECK_NAME)
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert record.status.value == "SUCCEEDED"  # as the asset's Checks tab shows it
