"""deploy/gke scripts in dry-run mode, against a stand-in `gcloud` (GCP cannot run here).

The stand-in answers the read-only calls the scripts make (who is logged in, does X exist,
the region's quotas from a recorded `gcloud compute regions describe --format json`) and
records every call, so the tests can assert that a dry run changes nothing.
"""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.deploy

GKE = REPO / "deploy" / "gke"
REGION_JSON = Path(__file__).parent / "fixtures" / "gcloud-regions-describe.json"
FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$*" >> "$GCLOUD_CALLS"
case "$*" in
  "auth list"*) [[ "$GCLOUD_LOGGED_IN" == yes ]] && echo "deployer@example.com"; true ;;
  "compute regions describe"*) cat "$GCLOUD_REGION_JSON" ;;
  *maintenancePolicy*) [[ "$GCLOUD_EXISTING" == yes ]] && echo "$GCLOUD_EXCLUSIONS"; true ;;
  *describe*) [[ "$GCLOUD_EXISTING" == yes ]] ;;
  *) echo "a dry run must not call: gcloud $*" >&2; exit 99 ;;
esac
"""


def _gcloud_quota(tmp_path: Path, cpus: int) -> Path:
    region = json.loads(REGION_JSON.read_text())
    for quota in region["quotas"]:
        if quota["metric"] == "CPUS":
            quota["limit"] = float(cpus)
    path = tmp_path / "region.json"
    path.write_text(json.dumps(region))
    return path


def _script(tmp_path, name, *args, cpus=240, existing=False, logged_in=True, exclusions=""):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "GCLOUD_LOGGED_IN": "yes" if logged_in else "no",
        "HOME": str(tmp_path),
        "PROJECT_ID": "race-project",
        "GCLOUD_CALLS": str(tmp_path / "calls.log"),
        "GCLOUD_REGION_JSON": str(_gcloud_quota(tmp_path, cpus)),
        "GCLOUD_EXISTING": "yes" if existing else "no",
        "GCLOUD_EXCLUSIONS": exclusions,  # what describe says of the cluster's exclusions
        "FEATURE_ASSETS_SOURCE_URL": "mysql://reader:Top-Secret-1@10.0.0.5/races",
        "DAGSTER_PG_PASSWORD": "Top-Secret-2",
        "FEATURE_ASSETS_OPTUNA_URL": "postgresql://dagster:Top-Secret-3@10.0.0.6/optuna",
    }
    result = subprocess.run(
        ["bash", str(GKE / name), *args], env=env, capture_output=True, text=True, timeout=60
    )
    calls = (tmp_path / "calls.log").read_text().splitlines()
    return result, calls


def test_create_dry_run_prints_the_plan_and_changes_nothing(tmp_path):
    result, calls = _script(tmp_path, "create-cluster.sh", "--dry-run", cpus=240)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "quota CPUS in us-central1: 238 vCPUs free, the plan needs 22" in out
    lines = out.splitlines()
    created = next(i for i, line in enumerate(lines) if "clusters create" in line)
    cluster = lines[created]
    assert "--release-channel stable" in cluster and "--release-channel None" not in cluster
    # a cluster on a channel keeps node auto-upgrade; the exclusion is what holds it off, and
    # gcloud takes exclusions only on update, right after the cluster exists
    assert "--no-enable-autoupgrade" not in out and "maintenance-exclusion" not in cluster
    exclusion = lines[created + 1]
    assert "clusters update feature-assets" in exclusion
    assert "--add-maintenance-exclusion-scope no_minor_or_node_upgrades" in exclusion
    assert "--add-maintenance-exclusion-until-end-of-support" in exclusion
    assert "--workload-pool race-project.svc.id.goog" in cluster
    spot = next(line for line in lines if "node-pools create spot-runs" in line)
    for flag in ("--spot", "--min-nodes 0", "--num-nodes 0", "gke-spot=true:NoSchedule"):
        assert flag in spot
    bindings = [line for line in lines if "buckets add-iam-policy-binding" in line]
    assert [b.split("--role ")[1].split()[0] for b in bindings] == [
        "roles/storage.objectAdmin",  # objects: read, write, replace, list
        "roles/storage.legacyBucketReader",  # storage.buckets.get, which pyarrow asks for
    ]
    assert "roles/iam.workloadIdentityUser" in out
    assert "Top-Secret" not in out + result.stderr
    users = next(line for line in out.splitlines() if "sql users create" in line)
    assert "DAGSTER_PG_PASSWORD" in users  # the secret's name stands in for its value
    assert calls and all(c.startswith("auth list") or "describe" in c for c in calls)


def test_create_stops_when_the_quota_is_short_and_says_what_to_request(tmp_path):
    result, _ = _script(tmp_path, "create-cluster.sh", "--dry-run", cpus=12)
    assert result.returncode == 1
    assert "Request CPUS >= 22 in us-central1" in result.stderr
    assert "could only reach 2 of 5 nodes" in result.stderr
    assert "clusters create" not in result.stdout
    ignored, _ = _script(tmp_path, "create-cluster.sh", "--dry-run", "--ignore-quota", cpus=12)
    assert ignored.returncode == 0 and "clusters create" in ignored.stdout


@pytest.mark.parametrize("held", [False, True])
def test_create_is_idempotent_and_adds_the_upgrade_exclusion_once(tmp_path, held):
    """A re-run creates nothing; it adds the exclusion only when the cluster lacks it (GKE
    removes it at the version's end of support, after the forced upgrade)."""
    exclusions = "{'no-minor-or-node-upgrades': {...}}" if held else ""
    result, _ = _script(
        tmp_path, "create-cluster.sh", "--dry-run", existing=True, exclusions=exclusions
    )
    assert result.returncode == 0, result.stderr
    creations = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("+ gcloud") and " create " in line
    ]
    assert creations == []
    assert ("clusters update feature-assets" in result.stdout) is not held


@pytest.mark.parametrize("everything", [False, True])
def test_delete_keeps_the_results_unless_asked(tmp_path, everything):
    args = ["--dry-run", *(["--all"] if everything else [])]
    result, _ = _script(tmp_path, "delete-cluster.sh", *args, existing=True)
    assert result.returncode == 0, result.stderr
    assert "clusters delete feature-assets" in result.stdout
    assert ("sql instances delete" in result.stdout) is everything
    assert ("storage rm --recursive" in result.stdout) is everything


def test_without_a_gcloud_login_a_dry_run_still_prints_every_step(tmp_path):
    result, calls = _script(tmp_path, "create-cluster.sh", "--dry-run", logged_in=False)
    assert all(call.startswith("auth list") for call in calls)
    assert result.returncode == 0, result.stderr
    assert "quota not checked" in result.stdout and "node-pools create spot-runs" in result.stdout
    assert os.access(GKE / "create-cluster.sh", os.X_OK) and os.access(
        GKE / "delete-cluster.sh", os.X_OK
    )
