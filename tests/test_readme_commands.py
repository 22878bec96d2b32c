"""Every `feature-assets` and `dagster asset materialize` command line of the README and docs/,
run as written, in their order, as a newcomer walks through them: the demo first, the README's
example set saved where the README says, no daemon running."""

import re
import subprocess

import pytest

from tests.helpers import REPO, command_env

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# placeholders a reader fills in, and what this walk fills in
PLACEHOLDERS = {
    "[--sample N]": "--sample 2",
    "<your CPUS quota>": "48",
    "check-leakage NAME": "check-leakage racer_form",
    "plan --set NAME": "plan --set racer_form",
    "--study NAME": "--study first",
    "--trials N": "--trials 4",
    "--trials 40": "--trials 4",  # not a placeholder: the walk stays short
    "--parallel K": "--parallel 2",
}
# commands a walk without a daemon or a finished search cannot end well, and why
NOT_RUN = {
    "feature-assets plan --trials": "needs a finished study: tests/test_plan.py plans one",
}
# (pattern of the command, exit codes, text the output must hold); the first match counts
EXPECTED = [
    (r"feature-assets status", (0, 1), "materialized"),  # 1: a day is not materialised
    (r"feature-assets tune .*--wait", (0,), "best validation log loss"),  # run here, no daemon
    (r"feature-assets tune", (0,), "queued for 2 worker run(s)"),
    (r"feature-assets predict", (0,), "races, card"),
    (r"feature-assets demo --results", (0,), "Wrote the results of 4 races"),
    (r"", (0,), ""),
]


def _code_lines(text: str) -> list[str]:
    """Command lines of the fenced shell blocks (continuations joined, `&&` chains split,
    comments and prompts dropped) and of inline code spans, in document order; blocks that
    export variables for the user's own MySQL are left out."""
    found: list[tuple[int, str]] = []
    for start, language, body in _fenced_blocks(text):
        if language not in ("bash", "") or "export FEATURE_ASSETS_SOURCE_URL" in body:
            continue  # the user's own MySQL: tests/test_source.py reads a real MariaDB
        for line in re.sub(r"\\\n\s*", "", body).splitlines():
            for part in line.split(" && "):
                part = re.sub(r"\s+#.*$", "", part.strip().removeprefix("$ "))
                found.append((start, part))
    prose = re.sub(r"^ *```.*?^ *```", lambda m: " " * len(m.group()), text, flags=re.M | re.S)
    # inline: `feature-assets SUBCOMMAND --option ...`, or a whole `dagster asset materialize -m`
    spans = r"`(feature-assets [a-z-]+ [^`|]*|dagster asset materialize -m [^`]*)`"
    for span in re.finditer(spans, prose):
        found.append((span.start(), re.sub(r"\s*\n\s*", " ", span.group(1))))
    return [line for _, line in sorted(found, key=lambda item: item[0]) if _is_command(line)]


def _fenced_blocks(text: str):
    """(offset, language, body) of each fenced block."""
    offset, opened = 0, None
    for line in text.splitlines(keepends=True):
        fence = re.match(r"^ *```(\w*)", line)
        if fence and opened is None:
            opened, body = (offset, fence.group(1)), []
        elif fence:
            yield opened[0], opened[1], "".join(body)
            opened = None
        elif opened is not None:
            body.append(line.strip() + "\n")
        offset += len(line)


def _is_command(line: str) -> bool:
    return line.startswith(("feature-assets ", "dagster asset materialize", "python -c "))


def _filled(line: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        line = line.replace(placeholder, value)
    return line


def _commands() -> list[str]:
    lines = [_filled(line) for doc in DOCUMENTS for line in _code_lines(doc.read_text())]
    return list(dict.fromkeys(lines))  # each once, first mention first


def _expectation(command: str) -> tuple[tuple[int, ...], str]:
    for pattern, codes, text in EXPECTED:
        if re.match(pattern, command):
            return codes, text
    raise AssertionError(command)


def _example_set() -> str:
    """The README's example feature set, as the reader saves it."""
    readme = (REPO / "README.md").read_text()
    [code] = re.findall(
        r"```python\n(# feature_assets/feature_sets/racer_wins\.py\n.*?)```", readme, re.S
    )
    return code


def test_the_readme_lists_the_commands_this_walk_runs():
    commands = _commands()
    assert any(c.startswith("feature-assets demo") for c in commands)
    assert any("--select racer_wins" in c for c in commands)  # the example set's own
    assert all(any(c.startswith(p) for c in commands) for p in NOT_RUN), "NOT_RUN is stale"
    assert not [c for c in commands if re.search(r"\b(NAME|N|K)\b|<|\[", c)], "placeholders"


@pytest.mark.e2e
def test_every_command_line_of_the_readme_runs_as_written(tmp_path):
    user_code = tmp_path / "user_code"
    user_code.mkdir()
    (user_code / "racer_wins.py").write_text(_example_set())
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_START_DATE="2024-01-01",
        FEATURE_ASSETS_FEATURE_SETS="racer_wins",  # the README's file, in the user's package
        PYTHONPATH=str(user_code),
    )
    ran = []
    for command in _commands():
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            continue
        if command.startswith("feature-assets demo"):
            command += " --races-per-day 4"  # a documented option: the walk stays short
        done = subprocess.run(
            command, shell=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=900
        )
        codes, text = _expectation(command)
        output = done.stdout + done.stderr
        assert done.returncode in codes, f"{command}\n{output[-3000:]}"
        assert text in output, f"{command}\n{output[-3000:]}"
        assert "Usage:" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"
        ran.append(command)
    assert len(ran) >= 15, ran


@pytest.mark.parametrize(
    "text, expected",
    [
        ("```bash\nfeature-assets status  # note\n```\n", ["feature-assets status"]),
        (
            "```bash\ndagster asset materialize -m x \\\n  --select a\n```\n",
            ["dagster asset materialize -m x --select a"],
        ),
        ("see `feature-assets backfill --failed` and `feature-assets backfill`", [
            "feature-assets backfill --failed"
        ]),
        ("```bash\nexport FEATURE_ASSETS_SOURCE_URL=x\nfeature-assets status\n```\n", []),
    ],
)  # fmt: skip
def test_command_lines_are_found_as_a_reader_sees_them(text, expected):
    assert _code_lines(text) == expected
