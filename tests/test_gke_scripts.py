"""deploy/gke scripts in dry-run mode, against a stand-in `gcloud` (GCP cannot run here).

The stand-in answers the read-only calls the scripts make (who is logged in, does X exist,
the region's quotas from a recorded `gcloud compute regions describe --format json`) and
records every call, so the tests can assert that a dry run changes nothing.
"""

import datetime as dt
import json
import os
import shlex
import shutil
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
  "compute project-info describe"*) cat "$GCLOUD_PROJECT_JSON" ;;
  "projects describe"*) echo 123456789012 ;;
  "services vpc-peerings list"*)
    [[ "$GCLOUD_EXISTING" == yes ]] && echo servicenetworking.googleapis.com; true ;;
  *maintenancePolicy*) [[ "$GCLOUD_EXISTING" == yes ]] && echo "$GCLOUD_EXCLUSIONS"; true ;;
  "sql instances describe"*"--format json"*)
    [[ "$GCLOUD_EXISTING" == yes ]] && echo "$GCLOUD_SQL_INSTANCE" ;;
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


def _project_quota(tmp_path: Path, cpus: int) -> Path:
    """What `gcloud compute project-info describe --format json` says of CPUS_ALL_REGIONS."""
    path = tmp_path / "project.json"
    quota = {"metric": "CPUS_ALL_REGIONS", "limit": float(cpus), "usage": 0.0}
    path.write_text(json.dumps({"quotas": [quota]}))
    return path


SQL_FLAGS = [{"name": "max_connections", "value": "200"}]


def _script(
    tmp_path,
    name,
    *args,
    cpus=240,
    existing=False,
    logged_in=True,
    exclusions="",
    all_cpus=500,
    sql_flags=SQL_FLAGS,
):
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
        "GCLOUD_PROJECT_JSON": str(_project_quota(tmp_path, all_cpus)),
        # what `gcloud sql instances describe --format json` says of an existing instance
        "GCLOUD_SQL_INSTANCE": json.dumps({"settings": {"databaseFlags": sql_flags}}),
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
    system, default, exclusion = lines[created + 1 : created + 4]
    assert "node-pools create system" in system and "--machine-type e2-standard-2" in system
    assert "node-pools delete default-pool" in default and "--quiet" in default
    assert "clusters update feature-assets" in exclusion
    assert "--add-maintenance-exclusion-scope no_minor_or_node_upgrades" in exclusion
    end = (dt.date.today() + dt.timedelta(days=90)).isoformat()
    assert f"--add-maintenance-exclusion-end {end}T00:00:00Z" in exclusion
    assert f"--add-maintenance-exclusion-name no-minor-or-node-upgrades-until-{end}" in exclusion
    reader = next(line for line in lines if "roles/artifactregistry.reader" in line)
    assert "123456789012-compute@developer.gserviceaccount.com" in reader
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
    reads = ("auth list", "describe", "vpc-peerings list")  # nothing but reads is called
    assert calls and all(any(read in c for read in reads) for c in calls)


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
    until = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    exclusions = f"{{'no-minor-or-node-upgrades-until-{until}': {{...}}}}" if held else ""
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
    assert "vpc-peerings connect" not in result.stdout  # the peering exists too
    assert "node-pools delete default-pool" in result.stdout  # still there: it goes


def test_an_exclusion_ending_within_30_days_is_renewed(tmp_path):
    until = (dt.date.today() + dt.timedelta(days=20)).isoformat()
    exclusions = f"{{'no-minor-or-node-upgrades-until-{until}': {{...}}}}"
    result, _ = _script(
        tmp_path, "create-cluster.sh", "--dry-run", existing=True, exclusions=exclusions
    )
    assert result.returncode == 0, result.stderr
    assert "--add-maintenance-exclusion-scope no_minor_or_node_upgrades" in result.stdout


@pytest.mark.parametrize(
    "flags",
    [[], [{"name": "max_connections", "value": "100"}, {"name": "log_min_duration_statement",
                                                        "value": "500"}]],
)  # fmt: skip
def test_a_rerun_sets_max_connections_on_an_existing_instance_keeping_its_other_flags(
    tmp_path, flags
):
    result, _ = _script(tmp_path, "create-cluster.sh", "--dry-run", existing=True, sql_flags=flags)
    assert result.returncode == 0, result.stderr
    [patch] = [line for line in result.stdout.splitlines() if "sql instances patch" in line]
    merged = {**{flag["name"]: flag["value"] for flag in flags}, "max_connections": "200"}
    expected = ",".join(f"{name}={value}" for name, value in sorted(merged.items()))
    words = shlex.split(patch)  # the dry run prints it shell-quoted, as it would run
    assert words[words.index("--database-flags") + 1] == expected
    assert "(the instance restarts)" in result.stdout


def test_a_rerun_leaves_an_instance_with_the_right_max_connections_alone(tmp_path):
    result, _ = _script(tmp_path, "create-cluster.sh", "--dry-run", existing=True)
    assert result.returncode == 0, result.stderr
    assert "sql instances patch" not in result.stdout


def test_the_project_wide_cpu_quota_is_checked_too(tmp_path):
    result, _ = _script(tmp_path, "create-cluster.sh", "--dry-run", cpus=240, all_cpus=12)
    assert result.returncode == 1
    assert "Request CPUS_ALL_REGIONS >= 22:" in result.stderr


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


REJECTED = ("unrecognized arguments", "invalid choice", "alternate release tracks")


def _command_lines(tmp_path) -> set[tuple[str, ...]]:
    """Every gcloud command line the scripts can run: the changes a dry run prints (fresh
    and existing resources) and the reads they make."""
    lines = set()
    runs = [
        ("create-cluster.sh", {"existing": False}),
        ("create-cluster.sh", {"existing": True}),
        ("create-cluster.sh", {"existing": True, "sql_flags": []}),  # the flag patched
        ("delete-cluster.sh", {"existing": True}),
    ]
    for number, (name, options) in enumerate(runs):
        work = tmp_path / str(number)
        work.mkdir()
        result, calls = _script(
            work, name, "--dry-run", *(["--all"] if "delete" in name else []), **options
        )
        assert result.returncode == 0, result.stderr
        printed = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ gcloud ")]
        lines |= {tuple(shlex.split(line)[1:]) for line in printed}
        lines |= {tuple(shlex.split(call)) for call in calls}
    return lines


def test_every_gcloud_command_line_parses_with_the_real_gcloud(tmp_path):
    """gcloud parses flags before it asks for credentials: with an empty configuration a
    valid command line fails on authentication, an invalid one on its arguments."""
    gcloud = shutil.which("gcloud", path="/usr/bin:/usr/local/bin:/usr/lib/google-cloud-sdk/bin")
    assert gcloud, "the Google Cloud SDK (Debian package google-cloud-cli) is not installed"
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(config),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}  # fmt: skip
    lines = _command_lines(tmp_path)
    assert any(line[:3] == ("container", "clusters", "update") for line in lines)
    assert any(line[:3] == ("sql", "instances", "patch") for line in lines)
    rejected = {}
    for line in sorted(lines):
        done = subprocess.run([gcloud, *line], env=env, capture_output=True, text=True, timeout=120)
        if any(phrase in done.stderr for phrase in REJECTED):
            rejected[" ".join(line)] = done.stderr.strip().splitlines()[-1]
    assert rejected == {}
