"""The Kubernetes Job of a backfill run, as K8sRunLauncher submits it with our Helm values.

The instance is configured the way the chart's instance ConfigMap renders
`runLauncher.config.k8sRunLauncher` (helm/dagster/templates/helpers/instance/
_run-launcher.tpl), so Dagster's own config schema checks those values for the pinned
version. The launcher posts the Job through the real kubernetes client to a stub API server
on 127.0.0.1; the Job is then validated offline and strictly against the Kubernetes OpenAPI
schema (kubernetes-validate).
"""

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate
import pandas as pd
import pytest
import yaml
from dagster import AssetKey, AssetMaterialization, instance_for_test
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test

from feature_assets.ops.planning import MACHINES, Cluster, estimate, pods_per_node
from tests.helpers import REPO, command_env

pytestmark = pytest.mark.deploy

KUBERNETES_VERSION = "1.33"  # GKE's regular channel
VALUES = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
COMMON_SH = REPO / "deploy" / "gke" / "common.sh"
SECRET_URL = "mysql://reader:S3cret-value@10.0.0.5:3306/races"


class _JobsApi(BaseHTTPRequestHandler):
    """Accepts job creation as the API server does and keeps what was posted."""

    posted: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).posted.append((self.path, body))
        reply = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def kube_api(tmp_path):
    _JobsApi.posted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "stub", "user": {}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
        "current-context": "stub",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    yield path, _JobsApi.posted
    server.shutdown()


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def run_launcher_config(kubeconfig) -> dict:
    """`run_launcher.config` as the chart renders it from runLauncher.config.k8sRunLauncher."""
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    return {
        "service_account_name": VALUES["serviceAccount"]["name"],
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "image_pull_policy": "Always",
        "job_namespace": "dagster",
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "env_secrets": [secret["name"] for secret in launcher["envSecrets"]],
        "env_vars": launcher["envVars"],
        "run_k8s_config": {_snake(k): v for k, v in launcher["runK8sConfig"].items()},
    }


def code_location_origin() -> RepositoryPythonOrigin:
    """The origin our user deployment reports, with the container context the chart gives
    it (DAGSTER_CONTAINER_CONTEXT, includeConfigInLaunchedRuns)."""
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    context = {
        "k8s": {
            "env_secrets": [secret["name"] for secret in deployment["envSecrets"]],
            "env_vars": [f"{var['name']}={var['value']}" for var in deployment["env"]],
            "volumes": deployment["volumes"],
            "volume_mounts": deployment["volumeMounts"],
            # the chart's template passes the deployment's resources on: they would override
            # the run pod's (test_backfill_run_becomes_a_valid_spot_job checks the pod's)
            **({"resources": deployment["resources"]} if "resources" in deployment else {}),
            "namespace": "dagster",
            "service_account_name": VALUES["serviceAccount"]["name"],
        }
    }
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    return RepositoryPythonOrigin(
        executable_path="/usr/local/bin/python",
        code_pointer=ModuleCodePointer(module, "defs", working_directory="/app"),
        container_image=image,
        container_context=context,
    )


def _launch(kube_api, tags: dict) -> dict:
    """The Job that K8sRunLauncher posts for a run with these tags, validated strictly."""
    kubeconfig, posted = kube_api
    overrides = {
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": run_launcher_config(kubeconfig),
        }
    }
    with instance_for_test(overrides=overrides) as instance:
        run = create_run_for_test(
            instance,
            job_name="race_features_job",
            job_code_origin=JobPythonOrigin("race_features_job", code_location_origin()),
            tags=tags,
        )
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [(path, job)] = posted
    assert path == "/apis/batch/v1/namespaces/dagster/jobs"
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    return job


def test_backfill_run_becomes_a_valid_spot_job(kube_api, monkeypatch):
    monkeypatch.setenv("FEATURE_ASSETS_SOURCE_URL", SECRET_URL)  # present where the launcher runs
    tags = {
        "dagster/backfill": "abcdefgh",
        "dagster/asset_partition_range_start": "2016-01-01",
        "dagster/asset_partition_range_end": "2016-01-30",
    }
    job = _launch(kube_api, tags)

    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    deployment = VALUES["dagster-user-deployments"]["deployments"][0]
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert pod["serviceAccountName"] == "dagster"
    assert job["spec"]["backoffLimit"] == 0  # a lost pod fails the run; run retries decide
    # the instance file that `feature-assets` in the code-location pod reads, mounted there
    # by the deployment's values and passed on: at DAGSTER_HOME, once, from the ConfigMap
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert len(mounts) == len(container["volumeMounts"])
    home = next(v["value"] for v in container["env"] if v["name"] == "DAGSTER_HOME")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"])
    assert volumes[mounts[home]]["configMap"]["name"] == "dagster-instance"

    env = {var["name"]: var for var in container["env"]}
    assert {"secretRef": {"name": "feature-assets-source"}} in container["envFrom"]
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "dagster-postgresql-secret"
    )
    assert env["FEATURE_ASSETS_STORAGE_URL"]["value"].startswith("gs://")
    assert env["DAGSTER_EVENT_BATCH_SIZE"]["value"] == "1000"
    assert "FEATURE_ASSETS_SOURCE_URL" not in env and "SLACK_BOT_TOKEN" not in env
    assert "S3cret-value" not in json.dumps(job)


def test_a_feature_sets_runs_ask_their_pod_for_its_cpus_and_memory(kube_api, tmp_path):
    """`feature-assets backfill` of a set declaring cpus=4, memory=6Gi stores the run tag
    that the daemon copies onto each run of the backfill; K8sRunLauncher turns it into the
    pod's resources and the worker count (limit = request: the cgroup gives 4 CPUs)."""
    env = command_env(
        tmp_path, FEATURE_ASSETS_FEATURE_SETS="tests.feature_sets.heavy", PYTHONPATH=str(REPO)
    )
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        for day in pd.date_range("2024-01-31", "2024-03-03").strftime("%Y-%m-%d"):
            for raw in ("raw_races", "raw_race_entries"):  # the set's history is stored
                instance.report_runless_asset_event(
                    AssetMaterialization(asset_key=AssetKey(raw), partition=day)
                )
    stored = subprocess.run(
        ["feature-assets", "backfill", "--range", "2024-03-01...2024-03-03", "--assets", "heavy"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr[-3000:]
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        [backfill] = instance.get_backfills()
        tags = dict(backfill.tags)
    job = _launch(kube_api, {**tags, "dagster/backfill": backfill.backfill_id})
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    wanted = {"cpu": "4", "memory": "6Gi"}
    assert container["resources"] == {"requests": wanted, "limits": wanted}
    env_vars = {var["name"]: var.get("value") for var in container["env"]}
    assert env_vars["FEATURE_ASSETS_WORKERS"] == "4"
    assert env_vars["DAGSTER_EVENT_BATCH_SIZE"] == "1000"  # the chart's settings stay
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}


def _snake_keys(section: dict) -> dict:
    return {_snake(k): v for k, v in section.items()}


def test_instance_values_are_valid_dagster_instance_config(gcs_bucket):
    """computeLogManager, dagsterDaemon.* and concurrency, rendered into dagster.yaml as the
    chart's instance ConfigMap does, pass Dagster's own instance schema and build."""
    logs = VALUES["computeLogManager"]
    daemon = VALUES["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    overrides = {
        "compute_logs": {
            "module": "dagster_gcp.gcs.compute_log_manager",
            "class": logs["type"],
            "config": {
                **_snake_keys(logs["config"]["gcsComputeLogManager"]),
                "bucket": gcs_bucket.name,
            },
        },
        # _run-coordinator.tpl renders only the queue's keys that are set; none may be one of
        # concurrency.runs' (dagster-io/dagster#33225): the instance would refuse to load
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": coordinator["type"],
            "config": _snake_keys(coordinator["config"]["queuedRunCoordinator"]),
        },
        "run_monitoring": _snake_keys(daemon["runMonitoring"]),
        "run_retries": _snake_keys(daemon["runRetries"]),
        "concurrency": {
            "pools": _snake_keys(VALUES["concurrency"]["pools"]),
            "runs": _snake_keys(VALUES["concurrency"]["runs"]),
        },
    }
    with instance_for_test(overrides=overrides) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 15
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert (
            instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
        )
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 8
        assert type(instance.compute_log_manager).__name__ == "GCSComputeLogManager"


def _unknown_keys(values, known, path="") -> list[str]:
    if known == "free":
        return []
    if isinstance(values, list):
        return [k for item in values for k in _unknown_keys(item, known[0], f"{path}[]")]
    if not isinstance(values, dict):
        return []
    unknown = []
    for key, value in values.items():
        if not isinstance(known, dict) or key not in known:
            unknown.append(f"{path}.{key}".lstrip("."))
        elif known[key] is not None:
            unknown += _unknown_keys(value, known[key], f"{path}.{key}")
    return unknown


def test_every_values_key_is_a_key_of_the_chart():
    known = yaml.safe_load((REPO / "tests" / "fixtures" / "dagster-chart-keys.yaml").read_text())
    assert _unknown_keys(VALUES, known) == []
    # the check itself notices a key the chart does not have
    assert _unknown_keys({"runLauncher": {"config": {"k8sRunLauncher": {"podSpec": {}}}}}, known)


def test_runs_at_once_are_what_the_spot_pool_holds():
    """maxConcurrentRuns, the scripts' Spot pool and `feature-assets plan` agree: nodes x the
    run pods a node's allocatable CPU and memory hold."""
    defaults = dict(re.findall(r'^(\w+)="\$\{\1:-([^}]*)\}"', COMMON_SH.read_text(), re.M))
    machine, nodes = defaults["SPOT_MACHINE"], int(defaults["SPOT_MAX_NODES"])
    requests = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"][
        "resources"
    ]["requests"]
    memory_gb = int(requests["memory"].removesuffix("Gi"))
    per_node = pods_per_node(MACHINES[machine], float(requests["cpu"]), memory_gb)
    assert per_node == 3  # 4 vCPU nodes keep ~0.4 vCPU for GKE: three 1-vCPU pods, not four
    runs_at_once = VALUES["concurrency"]["runs"]["maxConcurrentRuns"]
    assert runs_at_once == nodes * per_node
    cluster = Cluster()
    assert (cluster.machine, cluster.max_concurrent_runs) == (machine, runs_at_once)
    assert (cluster.vcpu_per_run, cluster.memory_per_run_gb) == (float(requests["cpu"]), memory_gb)
    plan = estimate(3650, 30, 0.05, Cluster(vcpu_quota=nodes * MACHINES[machine].vcpus))
    assert plan.concurrent_runs == runs_at_once and plan.nodes == nodes


def test_the_run_machine_the_code_location_checks_is_the_spot_pools():
    defaults = dict(re.findall(r'^(\w+)="\$\{\1:-([^}]*)\}"', COMMON_SH.read_text(), re.M))
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["FEATURE_ASSETS_RUN_MACHINE"] == defaults["SPOT_MACHINE"]


def test_the_cloud_sql_connection_budget_adds_up():
    """The worst case of every client of the Cloud SQL instance at once, against the
    max_connections the script sets, with a fifth kept free. NullPool clients (the daemon,
    runs, the code server: dagster_postgres without optimize_for_webserver) hold one
    connection per operation in flight."""
    common = COMMON_SH.read_text()
    max_connections = int(re.search(r"SQL_MAX_CONNECTIONS:-(\d+)", common).group(1))
    assert '--database-flags "max_connections=${SQL_MAX_CONNECTIONS}"' in (
        (REPO / "deploy" / "gke" / "create-cluster.sh").read_text()
    )
    overflow = VALUES["dagsterWebserver"]["dbPoolMaxOverflow"]
    runs = VALUES["concurrency"]["runs"]["maxConcurrentRuns"]
    optuna_pool = 1 + 1  # training.search.open_storage: pool_size 1, max_overflow 1
    budget = {
        "webserver: 3 storages x (1 + dbPoolMaxOverflow)": 3 * (1 + overflow),
        "daemon: 8 daemon threads + 4 backfill workers": 12,
        "code server: sensor and schedule evaluations": 4,
        "runs at once x (event log + run storage)": runs * 2,
        "tuning workers among those runs x their Optuna engine": runs * optuna_pool,
        "tuning_workers sensor's Optuna engine, during a tick": optuna_pool,
        "feature-assets commands in the code-location pod": 2,
        "Cloud SQL's reserved superuser connections": 3,
    }
    assert sum(budget.values()) <= 0.8 * max_connections, budget


def test_runs_at_once_of_each_pod_size_are_what_the_spot_pool_holds(monkeypatch):
    """A set's runs are tagged with how many of its pods a node holds; the values limit each
    tag value to nodes x that, up to maxConcurrentRuns."""
    from feature_assets.core.feature_set import per_race
    from feature_assets.ops.pods import PODS_PER_NODE_TAG, k8s_run_tags

    defaults = dict(re.findall(r'^(\w+)="\$\{\1:-([^}]*)\}"', COMMON_SH.read_text(), re.M))
    nodes = int(defaults["SPOT_MAX_NODES"])
    runs = VALUES["concurrency"]["runs"]
    limits = {item["value"]: item["limit"] for item in runs["tagConcurrencyLimits"]}
    assert {item["key"] for item in runs["tagConcurrencyLimits"]} == {PODS_PER_NODE_TAG}
    per_node_default = runs["maxConcurrentRuns"] // nodes
    assert limits == {str(n): nodes * n for n in range(1, per_node_default)}

    monkeypatch.setenv("FEATURE_ASSETS_RUN_MACHINE", defaults["SPOT_MACHINE"])

    def sized(cpus, memory):
        def sized_set(race, history):
            return []

        return per_race(history_days=1, columns={"x": "int"}, cpus=cpus, memory=memory)(sized_set)

    assert k8s_run_tags([sized(3, "6Gi")])[PODS_PER_NODE_TAG] == "1"
    assert k8s_run_tags([sized(1.5, "4Gi")])[PODS_PER_NODE_TAG] == "2"
    assert k8s_run_tags([sized(1, "2Gi")])[PODS_PER_NODE_TAG] == str(per_node_default)


def test_the_pod_size_table_of_the_docs_is_what_the_code_and_values_give():
    from feature_assets.core.machines import MACHINES, pods_per_node

    defaults = dict(re.findall(r'^(\w+)="\$\{\1:-([^}]*)\}"', COMMON_SH.read_text(), re.M))
    machine, nodes = MACHINES[defaults["SPOT_MACHINE"]], int(defaults["SPOT_MAX_NODES"])
    runs = VALUES["concurrency"]["runs"]
    limits = {int(item["value"]): item["limit"] for item in runs["tagConcurrencyLimits"]}
    # the most pods a node holds (the default pod's) have no tag limit: maxConcurrentRuns
    limits[runs["maxConcurrentRuns"] // nodes] = runs["maxConcurrentRuns"]
    text = (REPO / "docs" / "gke.md").read_text()
    rows = re.findall(r"^   \| ([\d.]+) CPU, (\d+)Gi[^|]*\| (\d+) \| ([^|]+) \|$", text, re.M)
    assert len(rows) == 5, rows
    for cpus, memory, per_node, at_once in rows:
        assert int(per_node) == pods_per_node(machine, float(cpus), float(memory)), cpus
        expected = str(limits[int(per_node)]) if int(per_node) else "none"
        assert at_once.split(":")[0].strip() == expected, (cpus, at_once)


def test_the_values_header_installs_as_the_docs_say():
    """One way to set the release's values: the file edited, the image by --set."""
    header = "".join(
        line[1:] for line in (REPO / "deploy" / "helm" / "values.yaml").read_text().splitlines(True)
        if line.startswith("#")
    )  # fmt: skip
    docs = (REPO / "docs" / "gke.md").read_text()

    def sets(text):
        return set(re.findall(r'--set "?([\w.\[\]-]+)=', text))

    assert (
        sets(header)
        == sets(docs)
        == {
            "dagster-user-deployments.deployments[0].image.repository",
            "dagster-user-deployments.deployments[0].image.tag",
        }
    )
