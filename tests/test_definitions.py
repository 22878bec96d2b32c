"""The code location as a whole: its objects match a stored snapshot, and the layers keep
their imports (the engine, the I/O and training never import Dagster or the wiring)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SNAPSHOT = Path(__file__).parent / "definitions_snapshot.json"
WITHOUT_DAGSTER = ["core", "io", "training", "feature_sets"]
FORBIDDEN = ("dagster", "dagster_k8s", "dagster_gcp", "click", "feature_assets.defs",
             "feature_assets.ops", "feature_assets.cli", "feature_assets.definitions")  # fmt: skip


def _objects() -> dict[str, list[str]]:
    from feature_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    return {
        "assets": sorted(key.to_user_string() for key in graph.get_all_asset_keys()),
        "checks": sorted(
            f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys
        ),
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs()),
        "schedules": sorted(schedule.name for schedule in defs.schedules or []),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
    }


def test_the_definitions_match_the_snapshot():
    """A renamed asset, a lost check or a broken import shows here in seconds. If the change
    is meant, write the new snapshot: python -c 'from tests.test_definitions import
    write_snapshot; write_snapshot()'"""
    assert _objects() == json.loads(SNAPSHOT.read_text())


def write_snapshot() -> None:
    SNAPSHOT.write_text(json.dumps(_objects(), indent=2) + "\n")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports in functions too
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_engine_io_and_training_never_import_dagster_or_the_wiring():
    offending = {
        str(path.relative_to(REPO)): sorted(
            name for name in _imports(path) if name.startswith(FORBIDDEN)
        )
        for layer in WITHOUT_DAGSTER
        for path in (REPO / "feature_assets" / layer).rglob("*.py")
    }
    assert {path: names for path, names in offending.items() if names} == {}


@pytest.mark.e2e
def test_importing_any_module_changes_nothing_global():
    """Arrow's allocator, event batching and the like are set where runs and commands start
    (definitions.py, the command line), not on import."""
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "feature_assets").rglob("*.py")
        if path.name != "definitions.py" and "racing" not in path.parts  # the deprecated alias
    )
    probe = (
        "import importlib, os, sys, pyarrow\n"
        "OURS = ('FEATURE_ASSETS_', 'DAGSTER_', 'RUST_LOG')\n"  # LightGBM sets KMP_* itself
        "before = dict(os.environ)\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "changed = sorted(k for k in set(before) | set(os.environ)"
        " if before.get(k) != os.environ.get(k) and k.startswith(OURS))\n"
        "print(pyarrow.default_memory_pool().backend_name, changed)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "mimalloc []", done.stdout


@pytest.mark.e2e
def test_loading_the_code_location_warns_nothing(tmp_path):
    """Every command and run loads the definitions: a warning there (Dagster's beta notices,
    a file left open) is printed before each command's own output."""
    load = "import feature_assets.definitions as d; d.defs.get_repository_def()"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", load],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""


def _package_imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports (at any depth of its code)."""
    found = {}
    for path in (REPO / "feature_assets").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feature_"):
                for alias in node.names:
                    nested = f"{node.module}.{alias.name}"
                    is_module = (REPO / (nested.replace(".", "/") + ".py")).exists()
                    targets.add(nested if is_module else node.module)
        found[module] = {t for t in targets if t.startswith("feature_assets")}
    return found


def test_settings_is_a_leaf_ops_stays_below_the_wiring_and_nothing_imports_in_a_circle():
    imports = _package_imports()
    assert imports["feature_assets.settings"] == set()
    wiring = ("feature_assets.defs", "feature_assets.definitions", "feature_assets.cli")
    upward = {
        module: sorted(t for t in targets if t.startswith(wiring))
        for module, targets in imports.items()
        if module.startswith("feature_assets.ops")
    }
    assert {m: t for m, t in upward.items() if t} == {}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for target in imports.get(start, ()):
            if target == goal or (target not in seen and not seen.add(target)
                                  and reaches(target, goal, seen)):  # fmt: skip
                return True
        return False

    circles = sorted(module for module in imports if reaches(module, module, set()))
    assert circles == []
