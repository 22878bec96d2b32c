"""What a run of feature sets asks of its pod on Kubernetes, from the sets' declarations
(`cpus=`, `memory=`): the run tags every route that creates a run carries, and the check that
each set's pod fits a node of the run machine."""

from __future__ import annotations

import json
from collections.abc import Sequence

from feature_assets import settings
from feature_assets.core.feature_set import FeatureSet
from feature_assets.core.machines import MACHINES, largest_pod, pods_per_node

K8S_CONFIG_TAG = "dagster-k8s/config"
PODS_PER_NODE_TAG = "feature_assets/pods_per_node"  # how many of the run's pods a node holds


def k8s_run_config(feature_sets: Sequence[FeatureSet]) -> dict:
    """What a run of these sets asks of its pod: the most CPUs and memory any of them
    declares. The CPU limit equals the request, so the cgroup-aware worker count equals
    the CPUs granted; FEATURE_ASSETS_WORKERS says so as well."""
    cpus = max(s.cpus for s in feature_sets)
    memory = max((s.memory for s in feature_sets), key=_gibibytes)
    cpu = f"{cpus:g}"
    return {
        "container_config": {
            "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"cpu": cpu, "memory": memory},
            },
            "env": [{"name": "FEATURE_ASSETS_WORKERS", "value": str(max(1, int(cpus)))}],
        }
    }


def k8s_run_tags(feature_sets: Sequence[FeatureSet]) -> dict[str, str]:
    """The run tags that give a run's pod the sets' resources; none for no set. With a run
    machine (FEATURE_ASSETS_RUN_MACHINE), also how many such pods one node holds: the run
    queue limits runs of each pod size by that tag (`tagConcurrencyLimits` in the Helm
    values: nodes x pods per node)."""
    if not feature_sets:
        return {}
    config = k8s_run_config(feature_sets)
    tags = {K8S_CONFIG_TAG: json.dumps(config)}
    machine = settings.run_machine()
    if machine:
        requests = config["container_config"]["resources"]["requests"]
        gibibytes = _gibibytes(requests["memory"])
        per_node = pods_per_node(MACHINES[machine], float(requests["cpu"]), gibibytes)
        tags[PODS_PER_NODE_TAG] = str(per_node)
    return tags


def check_set_pods() -> None:
    """Every registered set's pod fits a node of the run machine (FEATURE_ASSETS_RUN_MACHINE):
    a pod that fits none is never scheduled, and its run would wait out its start timeout.
    Raises ValueError naming each set; a check of `settings.check_configuration`."""
    from feature_assets.feature_sets import registered_sets

    machine = settings.run_machine()
    if machine is None:
        return
    if machine not in MACHINES:
        raise ValueError(
            f"FEATURE_ASSETS_RUN_MACHINE: {machine!r} is not one of {', '.join(sorted(MACHINES))}"
        )
    cpus, memory_gb = largest_pod(MACHINES[machine])
    too_big = [
        f"feature set {s.name} asks {s.cpus:g} CPU and {s.memory}"
        for s in registered_sets()
        if s.cpus > cpus or _gibibytes(s.memory) > memory_gb
    ]
    if too_big:
        raise ValueError(
            f"{'; '.join(too_big)}, but the largest run pod an {machine} node holds"
            f" (FEATURE_ASSETS_RUN_MACHINE) is {cpus:g} CPU and {memory_gb:g}Gi: declare"
            " less, or give the runs a larger machine (SPOT_MACHINE and FEATURE_ASSETS_RUN_MACHINE)"
        )


def _gibibytes(quantity: str) -> float:
    """'512Mi' -> 0.5, '4Gi' -> 4.0 (the units a set's memory= takes)."""
    number, unit = quantity[:-2], quantity[-2:]
    return float(number) / (1024 if unit == "Mi" else 1)
