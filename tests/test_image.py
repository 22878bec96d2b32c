"""The image's recipe: pinned to the versions the tests run, non-root, serving our module."""

import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from tests.helpers import REPO

pytestmark = pytest.mark.deploy

DOCKERFILE = (REPO / "Dockerfile").read_text()


LOCK = (REPO / "deploy" / "requirements.lock").read_text()
TEST_LOCK = (REPO / "deploy" / "requirements-test.lock").read_text()
README = (REPO / "README.md").read_text()


def _pins(lock: str = LOCK) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M)
    return {_normalised(name): version for name, version in pins}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_pin_carries_its_hashes_and_the_base_image_its_digest():
    """pip --require-hashes refuses a lock where one requirement lacks a hash; each entry
    here is `name==version \\` followed by its `--hash=sha256:` lines."""
    for lock in (LOCK, TEST_LOCK):
        entries = re.split(r"\n(?=[^#\s])", lock.split("\n#", 3)[-1].split("\n", 1)[1].strip())
        assert len(entries) == len(_pins(lock)) > 10
        for entry in entries:
            assert re.fullmatch(r"\S+==\S+( \\\n    --hash=sha256:[0-9a-f]{64})+", entry), entry
    assert not _pins(LOCK).keys() & _pins(TEST_LOCK).keys()  # one pin per package
    assert "setuptools" in _pins()  # our package builds without fetching a build backend
    assert re.search(
        r"^FROM python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$", DOCKERFILE, re.M
    )
    assert "--require-hashes -r deploy/requirements.lock" in DOCKERFILE
    assert "--no-build-isolation ." in DOCKERFILE


def test_readme_commands_install_the_locks_and_nothing_unpinned():
    """The registry gaining a release cannot change what the README's commands install:
    every package comes from a hashed lock, our own package is built with --no-deps."""
    demo, tests = re.findall(r"^python3\.11 -m venv .*$", README, re.M)[:2]
    runtime = "pip install --no-deps --require-hashes -r deploy/requirements.lock"
    assert runtime + " && pip install --no-deps --no-build-isolation -e . &&" in demo
    assert runtime + " -r deploy/requirements-test.lock && pip install --no-deps" in tests
    for command in (demo, tests):
        installs = re.findall(r"pip install [^&]*", command)
        assert all("--no-deps" in install for install in installs), installs
    assert tests in (REPO / ".ci" / "run").read_text()


def test_every_dependency_is_pinned_at_the_version_under_test():
    runtime, test_only = _pins(), _pins(TEST_LOCK)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for pins, dependencies in (
        (runtime, project["dependencies"]),
        (runtime | test_only, project["optional-dependencies"]["test"]),
    ):
        for dependency in dependencies:
            name = _normalised(Requirement(dependency).name)
            assert name in pins, f"{name} is not pinned in deploy/requirements*.lock"
            assert Requirement(dependency).specifier.contains(pins[name]), (name, pins[name])
    for name, version in (runtime | test_only).items():
        assert importlib.metadata.version(name) == version, f"tests run another {name}"
    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True
    )  # the locks with --no-deps leave no dependency out
    assert check.returncode == 0, check.stdout


def test_image_is_slim_non_root_and_serves_the_code_location_of_the_helm_values():
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", DOCKERFILE, re.M)
    assert re.search(r"^USER (?!0\b|root\b)\S+", DOCKERFILE, re.M)
    assert "--no-deps --require-hashes -r deploy/requirements.lock" in DOCKERFILE
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    module = deployment["dagsterApiGrpcArgs"][-1]
    assert f'"-m", "{module}"]' in DOCKERFILE and f'"{deployment["port"]}"' in DOCKERFILE
    assert "dagster_home" not in DOCKERFILE  # no instance state or data in the image


def _run_steps() -> list[str]:
    """The Dockerfile's RUN commands, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_image_recipe_installs_and_serves_the_code_location(tmp_path):
    """The Dockerfile's own RUN steps in a fresh Python 3.11 venv (no Docker engine here):
    the lock alone (--no-deps) must hold everything, and the gRPC server must come up."""
    app = tmp_path / "app"
    shutil.copytree(REPO, app, ignore=shutil.ignore_patterns(".venv", ".git", "dagster_home"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    env = {**os.environ, "PATH": f"{tmp_path / 'venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for step in (s for s in _run_steps() if s.startswith("pip ")):  # apt needs root
        pip_only = step.split("&&")[0].strip()  # `useradd` needs root and a fresh image
        done = subprocess.run(
            pip_only, shell=True, cwd=app, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{pip_only}\n{done.stderr[-3000:]}"
    check = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "check"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))
    command[command.index("0.0.0.0")] = "127.0.0.1"
    command[command.index("3030")] = str(port)
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            health = subprocess.run(
                ["dagster", "api", "grpc-health-check", "-p", str(port)],
                env=env,
                capture_output=True,
                text=True,
            )
            if health.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, health.stderr
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
