"""`feature-assets status` as a person reads it."""

import subprocess

import pytest
from dagster import instance_for_test

from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY
from tests.feature_sets.faulty import fails_race_two
from tests.helpers import REPO, command_env, materialize_days

pytestmark = pytest.mark.e2e


def test_days_alike_are_grouped_and_the_first_race_id_and_day_are_shown(tmp_path):
    url, storage = f"sqlite:///{tmp_path}/source.sqlite", str(tmp_path / "parquet")
    data = synthetic.generate(FIRST_DAY, days=5, races_per_day=4, seed=4)
    synthetic.load(url, data)
    env = command_env(
        tmp_path,
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_FEATURE_SETS="tests.feature_sets.faulty",
        PYTHONPATH=str(REPO),
    )
    with instance_for_test(temp_dir=env["DAGSTER_HOME"]) as instance:
        run = materialize_days(url, storage, instance, [fails_race_two], "2024-01-01", "2024-01-05")
        assert not run.success
    status = subprocess.run(
        ["feature-assets", "status", "--assets", "fails_race_two"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    races = data.races.sort_values("race_id")
    first = int(races[(races["race_no"] == 2)]["race_id"].iloc[0])
    assert (
        f"2024-01-01...2024-01-05 (5 day(s)), first on 2024-01-01: race_id {first}:"
        " ValueError: bar too high"
    ) in status.stdout
    assert "race_id N" not in status.stdout


@pytest.mark.parametrize(
    "old, new",
    [
        (["status", "--asset", "raw_races"], ["status", "--assets", "raw_races"]),
        (["plan", "--days", "30"], ["plan", "--day-count", "30"]),
    ],
)
def test_old_option_spellings_still_work_with_a_note(tmp_path, old, new):
    env = command_env(tmp_path)
    runs = [
        subprocess.run(["feature-assets", *args], env=env, cwd=REPO, capture_output=True, text=True)
        for args in (old, new)
    ]
    assert runs[0].stdout == runs[1].stdout and runs[0].returncode == runs[1].returncode
    assert f"{old[1]} is deprecated here; write {new[1]}" in runs[0].stderr
    assert "deprecated" not in runs[1].stderr


@pytest.mark.unit
def test_status_lines_group_days_by_cause_and_show_the_first_days_own_race():
    from feature_assets.cli.output import status_lines
    from feature_assets.ops.status import AssetDays, DayError

    cause = "race_id N: ValueError: bar too high"
    errors = {
        day: DayError(cause, f"run abc: {day}", "abc", f"race_id {n}: ValueError: bar too high")
        for n, day in enumerate(["2024-01-02", "2024-01-03", "2024-01-05"], start=7)
    }
    state = AssetDays("my_set", ["2024-01-01"], list(errors), errors=errors)
    lines = status_lines(state, verbose=False)
    assert lines[0] == "my_set: 1 materialized, 3 failed, 0 in progress, 0 missing"
    assert lines[2] == (
        "    2024-01-02...2024-01-03, 2024-01-05 (3 day(s)), first on 2024-01-02:"
        " race_id 7: ValueError: bar too high"
    )
    verbose = status_lines(state, verbose=True)
    assert "    2024-01-05: run abc: 2024-01-05" in verbose
