"""The Parquet storage, the IO manager's ranged runs and the compute logs on gs://,
against a local GCS emulator through the client libraries production uses."""

import pandas as pd
from dagster import instance_for_test

from feature_assets import demo
from feature_assets.storage import DailyParquetStorage
from tests.conftest import FIRST_DAY
from tests.reference import compute_race_features
from tests.test_pipeline import ALL, _day, _run

DAYS = 30


def test_ranged_run_writes_one_object_per_day_on_gcs(gcs_bucket, mysql_url):
    data = demo.generate(FIRST_DAY, days=DAYS, races_per_day=8, seed=12)
    demo.load(mysql_url, data)
    url = f"gs://{gcs_bucket.name}/features"
    days = [_day(i) for i in range(DAYS)]
    with instance_for_test() as instance:
        assert _run(mysql_url, url, instance, ALL, days[0], days[-1]).success
        names = sorted(blob.name for blob in gcs_bucket.list_blobs())
        assert names == sorted(
            f"features/{table}/race_date={day}/data.parquet"
            for table in ("raw_races", "raw_race_entries", "race_features")
            for day in days
        )
        before = gcs_bucket.get_blob(f"features/race_features/race_date={days[5]}/data.parquet")

        # a day materialised again replaces its object whole: a new generation, same rows
        assert _run(mysql_url, url, instance, ALL, days[5]).success
        after = gcs_bucket.get_blob(f"features/race_features/race_date={days[5]}/data.parquet")
    assert after.generation != before.generation
    assert sorted(blob.name for blob in gcs_bucket.list_blobs()) == names  # no temporary objects
    stored = DailyParquetStorage(url).read_days("race_features", days)
    pd.testing.assert_frame_equal(stored, compute_race_features(data.races, data.entries, days))


def test_compute_logs_go_to_gcs(gcs_bucket, mysql_url):
    data = demo.generate(FIRST_DAY, days=3, races_per_day=4, seed=13)
    demo.load(mysql_url, data)
    overrides = {
        "compute_logs": {
            "module": "dagster_gcp.gcs.compute_log_manager",
            "class": "GCSComputeLogManager",
            "config": {"bucket": gcs_bucket.name, "prefix": "compute-logs"},
        }
    }
    storage = f"gs://{gcs_bucket.name}/features"
    with instance_for_test(overrides=overrides) as instance:
        result = _run(mysql_url, storage, instance, ALL, _day(0), _day(2))
        assert result.success
        logs = [b for b in gcs_bucket.list_blobs(prefix="compute-logs/") if b.size]
        assert logs, "no compute log reached the bucket"
        assert any(result.run_id in blob.name for blob in logs)
