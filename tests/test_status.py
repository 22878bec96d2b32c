"""`feature-assets status` as a person reads it."""

import subprocess

from dagster import instance_for_test

from feature_assets.io import synthetic
from tests.conftest import FIRST_DAY
from tests.feature_sets.faulty import fails_race_two
from tests.helpers import materialize_days
from tests.test_commands import REPO, _environment


def test_days_alike_are_grouped_and_the_first_race_id_and_day_are_shown(tmp_path):
    url, storage = f"sqlite:///{tmp_path}/source.sqlite", str(tmp_path / "parquet")
    data = synthetic.generate(FIRST_DAY, days=5, races_per_day=4, seed=4)
    synthetic.load(url, data)
    env = _environment(
        tmp_path,
        FEATURE_ASSETS_START_DATE=FIRST_DAY.isoformat(),
        FEATURE_ASSETS_FEATURE_SETS="tests.feature_sets.faulty",
        PYTHONPATH=str(REPO),
    )
    with instance_for_test(temp_dir=env["DAGSTER_HOME"]) as instance:
        run = materialize_days(url, storage, instance, [fails_race_two], "2024-01-01", "2024-01-05")
        assert not run.success
    status = subprocess.run(
        ["feature-assets", "status", "--asset", "fails_race_two"],
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
