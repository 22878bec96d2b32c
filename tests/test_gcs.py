"""The Parquet storage, the IO manager's ranged runs and the compute logs on gs://,
against a local GCS emulator through the client libraries production uses."""

import os
import re
from urllib.parse import urlsplit

import pandas as pd
from dagster import instance_for_test

from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from tests.conftest import FIRST_DAY
from tests.helpers import CONTRACT_ASSETS, REPO, materialize_range, nth_day
from tests.reference import compute_race_features
from tests.tcp_proxy import TcpProxy

DAYS = 30


def test_ranged_run_writes_one_object_per_day_on_gcs(gcs_bucket, mysql_url):
    data = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=8, seed=12)
    synthetic.load(mysql_url, data)
    url = f"gs://{gcs_bucket.name}/features"
    days = [nth_day(i) for i in range(DAYS)]
    with instance_for_test() as instance:
        assert materialize_range(
            mysql_url, url, instance, CONTRACT_ASSETS, days[0], days[-1]
        ).success
        names = sorted(blob.name for blob in gcs_bucket.list_blobs())
        assert names == sorted(
            f"features/{table}/race_date={day}/data.parquet"
            for table in ("raw_races", "raw_race_entries", "race_features")
            for day in days
        )
        before = gcs_bucket.get_blob(f"features/race_features/race_date={days[5]}/data.parquet")

        # a day materialised again replaces its object whole: a new generation, same rows
        assert materialize_range(mysql_url, url, instance, CONTRACT_ASSETS, days[5]).success
        after = gcs_bucket.get_blob(f"features/race_features/race_date={days[5]}/data.parquet")
    assert after.generation != before.generation
    assert sorted(blob.name for blob in gcs_bucket.list_blobs()) == names  # no temporary objects
    stored = DailyParquetStorage(url).read_days("race_features", days)
    pd.testing.assert_frame_equal(stored, compute_race_features(data.races, data.entries, days))


def test_compute_logs_go_to_gcs(gcs_bucket, mysql_url):
    data = synthetic.generate(FIRST_DAY, days=3, races_per_day=4, seed=13)
    synthetic.load(mysql_url, data)
    overrides = {
        "compute_logs": {
            "module": "dagster_gcp.gcs.compute_log_manager",
            "class": "GCSComputeLogManager",
            "config": {"bucket": gcs_bucket.name, "prefix": "compute-logs"},
        }
    }
    storage = f"gs://{gcs_bucket.name}/features"
    with instance_for_test(overrides=overrides) as instance:
        result = materialize_range(
            mysql_url, storage, instance, CONTRACT_ASSETS, nth_day(0), nth_day(2)
        )
        assert result.success
        logs = [b for b in gcs_bucket.list_blobs(prefix="compute-logs/") if b.size]
        assert logs, "no compute log reached the bucket"
        assert any(result.run_id in blob.name for blob in logs)


# The permissions of the roles deploy/gke/create-cluster.sh binds on the bucket (Google
# Cloud's IAM roles reference), and the permission each JSON API call needs.
ROLE_PERMISSIONS = {
    "roles/storage.objectAdmin": {
        *(f"storage.objects.{p}" for p in ("create", "delete", "get", "list", "update")),
        *(f"storage.objects.{p}" for p in ("getIamPolicy", "setIamPolicy", "restore")),
        *(f"storage.multipartUploads.{p}" for p in ("abort", "create", "list", "listParts")),
    },
    "roles/storage.legacyBucketReader": {"storage.buckets.get", "storage.objects.list"},
}
CALLS = [  # (method, path pattern, permission), first match wins
    ("GET", r"/storage/v1/b/[^/]+", "storage.buckets.get"),
    ("GET", r"/storage/v1/b/[^/]+/o", "storage.objects.list"),
    ("GET", r"/(download/)?storage/v1/b/[^/]+/o/.+", "storage.objects.get"),
    ("POST", r"/upload/storage/v1/b/[^/]+/o", "storage.objects.create"),
    ("PUT", r"/upload/storage/v1/b/[^/]+/o", "storage.objects.create"),
    ("DELETE", r"/storage/v1/b/[^/]+/o/.+", "storage.objects.delete"),
    ("PATCH", r"/storage/v1/b/[^/]+/o/.+", "storage.objects.update"),
]


def _permission(method: str, target: str) -> str:
    path = urlsplit(target).path
    for call_method, pattern, permission in CALLS:
        if method == call_method and re.fullmatch(pattern, path):
            return permission
    return f"unknown call {method} {path}"


def test_a_run_on_a_new_prefix_needs_only_the_roles_the_scripts_bind(gcs_bucket, monkeypatch):
    """Every call pyarrow makes to store days under a prefix that does not exist yet, replace
    one, remove one (a failed day) and read them back, recorded between it and the emulator,
    is allowed by the roles create-cluster.sh grants. (Our storage never calls create_dir
    on GCS, the call that asks for the bucket itself, storage.buckets.get; the scripts grant
    that too, through legacyBucketReader, for pyarrow.fs used elsewhere.)"""
    emulator = urlsplit(os.environ["CLOUD_STORAGE_EMULATOR_ENDPOINT"])
    script = (REPO / "deploy" / "gke" / "create-cluster.sh").read_text()
    roles = re.search(r"for role in ([^;]+); do", script).group(1).split()
    granted = set().union(*(ROLE_PERMISSIONS[role] for role in roles))
    data = synthetic.generate(FIRST_DAY, days=3, races_per_day=4, seed=14)
    days = [nth_day(i) for i in range(3)]
    with TcpProxy(emulator.hostname, emulator.port) as proxy:
        monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", f"http://127.0.0.1:{proxy.port}")
        storage = DailyParquetStorage(f"gs://{gcs_bucket.name}/a-prefix-never-used")
        storage.write_days("raw_races", data.races, days)
        first_day = data.races[data.races["race_date"] == days[0]]
        storage.write_days("raw_races", first_day, days[:1])  # a day replaced
        storage.delete_days("raw_races", days[2:])  # as a failed day's file is removed
        assert len(storage.read_days("raw_races", days[:2])) == len(
            data.races[data.races["race_date"] < days[2]]
        )
    requests = [
        (method.decode(), target.decode())
        for sent in proxy.sent
        for method, target in re.findall(
            rb"(?m)^(GET|POST|PUT|DELETE|PATCH|HEAD) (\S+) HTTP/1\.[01]\r$", bytes(sent)
        )
    ]
    needed = {_permission(method, target) for method, target in requests}
    assert {"storage.objects.create", "storage.objects.get", "storage.objects.delete"} <= needed
    assert needed <= granted, sorted(needed - granted)
