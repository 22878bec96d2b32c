"""A backfill launched as the UI's "Materialize" dialog launches it, run by the daemon.

Starts `dagster-webserver` and `dagster-daemon` on the repo's workspace.yaml with a
PostgreSQL instance (run, schedule and event storage; events through the batching storage),
sends the dialog's own `launchPartitionBackfill` mutation, and checks the days against both
the UI's partition status and `feature-assets status`.
"""

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from feature_assets.io import synthetic
from feature_assets.ops.status import all_assets
from tests.conftest import fresh_mysql_database
from tests.helpers import (
    REPO,
    command_env,
    dagster_services,
    feature_assets_command,
    graphql,
    wait_for,
)

pytestmark = pytest.mark.e2e

ASSETS = list(all_assets())  # the raw assets and every feature set, as a user selects them
DAYS = 30

# LaunchAssetChoosePartitionsDialog.tsx (dagster-ui), onLaunchAsBackfill: assets of the
# global asset graph (the hidden asset job) are sent as assetSelection + partitionNames.
LAUNCH = """mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
PARTITION_STATUS = """query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}"""


def postgres_instance_yaml(postgres_db: dict) -> str:
    """The repo's dagster.yaml with runs, schedules and events on PostgreSQL."""
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    storage = {"config": {"postgres_db": postgres_db}}
    config["run_storage"] = {
        "module": "dagster_postgres.run_storage",
        "class": "PostgresRunStorage",
        **storage,
    }
    config["schedule_storage"] = {
        "module": "dagster_postgres.schedule_storage",
        "class": "PostgresScheduleStorage",
        **storage,
    }
    config["event_log_storage"] = {
        "module": "feature_assets.defs.event_log",
        "class": "BatchedPostgresEventLogStorage",
        **storage,
    }
    return yaml.safe_dump(config)


def test_ui_backfill_materialises_the_chosen_days(mysql_server, postgres_database, tmp_path):
    yesterday = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=DAYS - 1)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    data = synthetic.generate(first, days=DAYS, races_per_day=6, seed=31)
    with fresh_mysql_database(mysql_server) as url:
        synthetic.load(url, data)
        env = command_env(
            tmp_path,
            FEATURE_ASSETS_SOURCE_URL=url,
            FEATURE_ASSETS_STORAGE_URL=str(tmp_path / "parquet"),
            FEATURE_ASSETS_START_DATE=first.isoformat(),
            DAGSTER_EVENT_BATCH_SIZE="1000",
        )
        Path(env["DAGSTER_HOME"], "dagster.yaml").write_text(
            postgres_instance_yaml(postgres_database)
        )
        with dagster_services(env, tmp_path, "webserver", "daemon") as port:
            params = {
                "tags": [],
                "assetSelection": [{"path": [asset]} for asset in ASSETS],
                "partitionNames": days,
                "fromFailure": False,
            }
            launched = graphql(port, LAUNCH, {"backfillParams": params})
            launched = launched["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched

            def finished():
                status = graphql(port, BACKFILL, {"id": launched["backfillId"]})[
                    "partitionBackfillOrError"
                ]["status"]
                return status if status.startswith("COMPLETED") or status == "FAILED" else None

            assert wait_for(finished, 600, "the backfill", every=2) == "COMPLETED_SUCCESS"
            for asset in ASSETS:
                node = graphql(port, PARTITION_STATUS, {"path": [asset]})["assetNodeOrError"]
                ranges = node["assetPartitionStatuses"]["ranges"]
                assert ranges == [
                    {"status": "MATERIALIZED", "startKey": days[0], "endKey": days[-1]}
                ], asset
            status = feature_assets_command(env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    for entry in json.loads(status.stdout):
        assert entry["materialized"] == DAYS and entry["failed"] == [], entry
