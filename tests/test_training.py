"""Training data and the win model, on features materialised from real MariaDB."""

import datetime as dt
import os
import shutil

import pandas as pd
import pytest
from dagster import AssetKey, instance_for_test

from feature_assets.core.quality import find_invalid_races
from feature_assets.feature_sets import registered_sets
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.training import data, model
from tests.conftest import FIRST_DAY, LAKE_DAYS, materialize_training_data

pytestmark = pytest.mark.usefixtures("held_out_periods")


def _day(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def test_training_data_joins_every_set_with_the_label_split_by_time(feature_lake):
    storage, generated = feature_lake
    with instance_for_test() as instance:
        assert materialize_training_data(storage, instance).success
        [event] = instance.fetch_materializations(AssetKey("training_data"), limit=1).records
        metadata = event.asset_materialization.metadata
    table, lineage = data.load(DailyParquetStorage(storage))

    invalid_days = sorted(
        find_invalid_races(generated.races, generated.entries)["race_date"]
        .dt.strftime("%Y-%m-%d")
        .unique()
    )
    assert invalid_days and lineage["invalid_days_left_out"] == invalid_days
    days_in_table = set(table["race_date"].dt.strftime("%Y-%m-%d"))
    assert not days_in_table & set(invalid_days)
    # every entry of every valid day, each once, with its own result as the label
    expected = generated.entries[
        ~generated.entries["race_date"].dt.strftime("%Y-%m-%d").isin(invalid_days)
    ]
    assert len(table) == len(expected) == table[["race_id", "lane"]].drop_duplicates().shape[0]
    truth = expected.set_index(["race_id", "lane"])["finish_position"].eq(1).fillna(False)
    labels = table.set_index(["race_id", "lane"])["is_win"]
    assert labels.sort_index().equals(truth.sort_index().astype(bool))
    for feature_set in registered_sets():
        assert set(feature_set.columns) <= set(table.columns)
        assert lineage["sets"][feature_set.name] == feature_set.code_version
    assert "finish_position" not in lineage["features"] and "win_odds" not in lineage["features"]

    # the test period is the last 20 days, validation the 20 before, strictly in order
    by_split = table.groupby("split", observed=True)["race_date"].agg(["min", "max"])
    assert by_split.loc["train", "max"] < by_split.loc["validation", "min"]
    assert by_split.loc["validation", "max"] < by_split.loc["test", "min"]
    assert by_split.loc["test", "min"] >= pd.Timestamp(_day(LAKE_DAYS - 20))
    assert by_split.loc["validation", "min"] >= pd.Timestamp(_day(LAKE_DAYS - 40))
    assert metadata["rows"].value == len(table)
    assert metadata["test_period"].value == lineage["splits"]["test"]


def test_a_day_missing_from_a_set_fails_the_training_data_naming_it(feature_lake, tmp_path):
    storage, _ = feature_lake
    copy = tmp_path / "parquet"
    shutil.copytree(storage, copy)
    lake = DailyParquetStorage(str(copy))
    os.unlink(lake.day_path("racer_form", _day(70)))  # a valid day, never stored
    before = _stored_table(copy)
    with instance_for_test() as instance:
        result = materialize_training_data(str(copy), instance)
    assert not result.success
    message = result.failure_data_for_node("training_data").error.message
    assert f"racer_form: {_day(70)}" in message
    assert f"feature-assets backfill --days {_day(70)} --assets racer_form" in message
    assert _stored_table(copy) == before  # nothing half-made replaces what was stored


def _stored_table(lake) -> bytes | None:
    path = f"{lake}/{data.TABLE_PATH}"
    return open(path, "rb").read() if os.path.exists(path) else None


def test_held_out_periods_longer_than_the_window_are_refused_naming_the_settings():
    with pytest.raises(data.TrainingDataError, match="FEATURE_ASSETS_VALIDATION_DAYS"):
        data.window(dt.date(2024, 1, 1), dt.date(2024, 12, 31), 200, 200)
    window = data.window(dt.date(2024, 1, 1), dt.date(2024, 12, 31), 30, 31)
    assert window.split_of("2024-12-01") == "test" and window.split_of("2024-11-30") == "validation"
    assert (
        window.split_of("2024-10-31") == "train" and window.split_of("2024-11-01") == "validation"
    )


def test_the_final_model_is_the_same_bit_for_bit_with_the_same_seed(feature_lake):
    storage, _ = feature_lake
    with instance_for_test() as instance:
        assert materialize_training_data(storage, instance).success
    table, lineage = data.load(DailyParquetStorage(storage))
    params = {"learning_rate": 0.1, "num_leaves": 15, "bagging_fraction": 0.7}
    first = model.train_final(table, lineage["features"], params, threads=2, seed=3)
    again = model.train_final(table, lineage["features"], params, threads=2, seed=3)
    other = model.train_final(table, lineage["features"], params, threads=2, seed=4)
    assert first.booster.model_to_string() == again.booster.model_to_string()
    assert first.booster.model_to_string() != other.booster.model_to_string()
    assert first.test == again.test
    for metrics in (first.validation, first.test):
        assert 0 < metrics["log_loss"] < 1 and 0.5 < metrics["auc"] <= 1
        assert 0 <= metrics["top_pick_hit_rate"] <= 1 and metrics["races"] > 0


def test_a_damaged_training_table_is_named_not_read(feature_lake, tmp_path):
    storage, _ = feature_lake
    copy = tmp_path / "parquet"
    shutil.copytree(storage, copy)
    with instance_for_test() as instance:
        assert materialize_training_data(str(copy), instance).success
    path = copy / data.TABLE_PATH
    content = bytearray(path.read_bytes())
    content[len(content) // 3] ^= 0xFF  # a flipped byte inside a data page
    path.write_bytes(bytes(content))
    with pytest.raises(data.TrainingDataError, match="damaged.*materialise training_data again"):
        data.load(DailyParquetStorage(str(copy)))
    path.write_bytes(bytes(content[: len(content) // 2]))  # cut short, footer gone
    with pytest.raises(data.TrainingDataError, match="damaged"):
        data.lineage_of(DailyParquetStorage(str(copy)))
