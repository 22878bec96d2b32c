"""The machine types run pods can go to, and how many pods of a size a node holds (GKE's
allocatable CPU and memory). Used by the planner, by the run tags that size a set's pod and by
the check that each set's pod fits a node."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Machine:
    vcpus: int
    memory_gb: int
    on_demand_per_hour: float
    spot_per_hour: float


MACHINES = {
    "e2-standard-2": Machine(2, 8, 0.067, 0.020),
    "e2-standard-4": Machine(4, 16, 0.134, 0.040),
    "e2-standard-8": Machine(8, 32, 0.268, 0.080),
    "n2-standard-4": Machine(4, 16, 0.194, 0.047),
    "n2-standard-8": Machine(8, 32, 0.388, 0.094),
    "c3-standard-4": Machine(4, 16, 0.209, 0.050),
    # compute-heavy feature sets: many vCPUs a node, little memory each
    "e2-highcpu-8": Machine(8, 8, 0.198, 0.059),
    "e2-highcpu-16": Machine(16, 16, 0.396, 0.119),
    "e2-highcpu-32": Machine(32, 32, 0.792, 0.238),
    "n2-highcpu-32": Machine(32, 32, 1.147, 0.279),
    "c2d-highcpu-32": Machine(32, 64, 1.188, 0.287),
}


def pods_per_node(machine: Machine, cpus_per_pod: float, memory_gb: float) -> int:
    """How many pods of these requests a node's allocatable CPU and memory hold."""
    allocatable_cpu, allocatable_gb = largest_pod(machine)
    by_cpu = int(allocatable_cpu // cpus_per_pod)
    by_memory = int(allocatable_gb // memory_gb)
    return max(0, min(by_cpu, by_memory))


def largest_pod(machine: Machine) -> tuple[float, float]:
    """(CPUs, GiB) a node of `machine` can give one pod: its allocatable CPU and memory.
    GKE keeps about 6 % of the first core, 1 % of the others and ~0.3 vCPU for its
    daemons; memory: ~25 % of the first 4 GB, 20 % of the next 4, 10 % beyond."""
    cpus = machine.vcpus - 0.06 - 0.01 * (machine.vcpus - 1) - 0.3
    reserved_gb = 1 + 0.8 * (machine.memory_gb > 4) + 0.1 * max(0, machine.memory_gb - 8)
    return round(cpus, 2), round(machine.memory_gb - reserved_gb, 2)
