"""Per-day metadata: content hashes that see corrections, and feature facts for people."""

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, instance_for_test

from feature_assets.core.summaries import content_hash_by_day
from feature_assets.feature_sets.race_features import race_features as built_in_set
from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY
from tests.helpers import CONTRACT_ASSETS, materialize_range, nth_day, swap_first_two_finishers

DAYS = 40


def _latest_metadata(instance, asset: str, day: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    assert records, f"{asset} {day} was never materialised"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_content_hash_ignores_row_order_and_sees_one_changed_value():
    data = synthetic.generate(FIRST_DAY, days=5, races_per_day=6, seed=4)
    days = [nth_day(i) for i in range(5)]
    hashes = content_hash_by_day(data.races, data.entries, days)
    shuffled = content_hash_by_day(
        data.races.sample(frac=1, random_state=1), data.entries.sample(frac=1, random_state=2), days
    )
    assert shuffled == hashes and len(set(hashes.values())) == 5
    entries = data.entries.copy()
    row = entries.index[entries["race_date"] == pd.Timestamp(days[2])][0]
    entries.loc[row, "win_odds"] = entries.loc[row, "win_odds"] + 0.1
    changed = content_hash_by_day(data.races, entries, days)
    assert [d for d in days if changed[d] != hashes[d]] == [days[2]]


def test_each_day_records_its_facts_and_whether_its_content_changed(mysql_url, tmp_path):
    data = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=10, invalid_races=2, seed=5)
    synthetic.load(mysql_url, data)
    storage = str(tmp_path / "parquet")
    last = nth_day(DAYS - 1)
    with instance_for_test() as instance:
        first_run = materialize_range(
            mysql_url, storage, instance, CONTRACT_ASSETS, nth_day(0), last
        )
        assert not first_run.success  # the invalid days fail; every other day is written
        bad_days = sorted(
            {pd.Timestamp(str(r)[:8]).strftime("%Y-%m-%d") for r in data.invalid_race_ids}
        )
        window = [nth_day(i) for i in range(DAYS - 5, DAYS)]
        good_day = next(day for day in reversed(window) if day not in bad_days)
        raw = _latest_metadata(instance, "raw_races", good_day)
        assert raw["content"] == "new" and len(raw["content_hash"]) == 64
        day_races = data.races[data.races["race_date"] == pd.Timestamp(good_day)]
        assert raw["rows"] == len(day_races)

        features = _latest_metadata(instance, "race_features", good_day)
        day_entries = data.entries[data.entries["race_id"].isin(day_races["race_id"])]
        assert features["rows"] == len(day_entries) and features["races"] == len(day_races)
        assert features["invalid_races"] == 0
        for column in list(built_in_set.columns):
            assert 0.0 <= features.get(f"null_share.{column}", 0.0) <= 1.0
        assert "null_share.racer_win_rate_90d" in features

        # the same snapshot again: unchanged; then one corrected race: changed, that day only
        materialize_range(mysql_url, storage, instance, CONTRACT_ASSETS, good_day)
        assert _latest_metadata(instance, "raw_races", good_day)["content"] == "unchanged"
        summary = _latest_metadata(instance, "race_features", good_day)["summary"]
        assert [r.data["feature"] for r in summary.records] == list(built_in_set.columns)
        swap_first_two_finishers(mysql_url, int(day_races["race_id"].iloc[0]))
        materialize_range(mysql_url, storage, instance, [CONTRACT_ASSETS[0]], window[0], window[-1])
        contents = {d: _latest_metadata(instance, "raw_races", d)["content"] for d in window}
        assert [day for day, content in contents.items() if content == "changed"] == [good_day]
        changed = _latest_metadata(instance, "raw_race_entries", good_day)
        assert changed["previous_content_hash"] == raw["content_hash"] != changed["content_hash"]
