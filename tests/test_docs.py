"""The README and docs/ agree with the code: every variable the code reads is documented (and
nothing else), every link resolves inside the repository, the README stays short."""

import re

from tests.helpers import REPO

CONFIGURATION = REPO / "docs" / "configuration.md"
VARIABLE = r"\b(FEATURE_ASSETS_[A-Z0-9_]+|SLACK_BOT_TOKEN|DAGSTER_HOME|DAGSTER_EVENT_BATCH_SIZE)\b"


def _read_by_code() -> set[str]:
    """Variables named in string literals of the package and the test fixtures."""
    found = set()
    for path in [*(REPO / "feature_assets").rglob("*.py"), REPO / "tests" / "conftest.py"]:
        for literal in re.findall(r"\"([^\"\n]*)\"|'([^'\n]*)'", path.read_text()):
            found |= set(re.findall(VARIABLE + "$", "".join(literal)))
    return found


def _documented() -> set[str]:
    rows = [line for line in CONFIGURATION.read_text().splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(VARIABLE, row.split("|")[1])}


def test_every_variable_the_code_reads_is_documented_and_nothing_else():
    code, docs = _read_by_code(), _documented()
    assert code - docs == set(), "read by the code, missing from docs/configuration.md"
    assert docs - code == set(), "in docs/configuration.md, read by no code"


def test_links_stay_in_the_repository_and_resolve():
    for document in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        text = document.read_text()
        assert "../shared" not in text, document
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if not target.startswith("http"):
                assert (document.parent / target).exists(), (document.name, target)


def test_the_readme_is_short_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    demo, tests = re.findall(r"^python3\.11 -m venv .*$", readme, re.M)[:2]
    assert demo.endswith("feature-assets demo") and tests.endswith("python -m pytest")
    assert readme.index(demo) < readme.index("## What it stores")
