"""The image's recipe: pinned to the versions the tests run, non-root, serving our module."""

import importlib.metadata
import re
import tomllib

import yaml
from packaging.requirements import Requirement

from tests.test_commands import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _pins() -> dict[str, str]:
    lines = (REPO / "deploy" / "requirements.lock").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    return {name.lower().replace("_", "-"): version for name, version in pins.items()}


def test_every_dependency_is_pinned_at_the_version_under_test():
    pins = _pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        name = Requirement(dependency).name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/requirements.lock"
        assert Requirement(dependency).specifier.contains(pins[name]), (name, pins[name])
        assert importlib.metadata.version(name) == pins[name], f"tests run another {name}"


def test_image_is_slim_non_root_and_serves_the_code_location_of_the_helm_values():
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", DOCKERFILE, re.M)
    assert re.search(r"^USER (?!0\b|root\b)\S+", DOCKERFILE, re.M)
    assert "--no-deps -r deploy/requirements.lock" in DOCKERFILE
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    module = deployment["dagsterApiGrpcArgs"][-1]
    assert f'"-m", "{module}"]' in DOCKERFILE and f'"{deployment["port"]}"' in DOCKERFILE
    assert "dagster_home" not in DOCKERFILE  # no instance state or data in the image
