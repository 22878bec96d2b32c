"""The access recorder: a native read is found at full speed, then named by its line; a read
the second run does not repeat stays reported."""

import importlib.util

import pandas as pd
import pytest

from feature_assets.ops.access_recorder import UNLOCATED, AccessRecorder

SET_CODE = """
import pyarrow.parquet as pq

calls = []


def reads_every_time(path):
    return pq.read_table(path).num_rows


def reads_only_once(path):
    calls.append(path)
    return pq.read_table(path).num_rows if len(calls) == 1 else 0
"""


@pytest.fixture
def user_code(tmp_path):
    stored = tmp_path / "stored"
    stored.mkdir()
    pd.DataFrame({"finish_position": [1, 2]}).to_parquet(stored / "day.parquet")
    code = tmp_path / "users_set.py"
    code.write_text(SET_CODE)
    spec = importlib.util.spec_from_file_location("users_set", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, code, stored


def _run(recorder, function, path, locating=False):
    if locating:
        with recorder.locating(), recorder.recording():
            function(path)
    else:
        with recorder.recording():
            function(path)


def test_a_native_read_is_seen_then_named_by_its_line(user_code, tmp_path):
    module, code, stored = user_code
    recorder = AccessRecorder([tmp_path / "cut"], str(code), watched=[stored])
    try:
        _run(recorder, module.reads_every_time, str(stored / "day.parquet"))
        assert recorder.has_unlocated_reads
        _run(recorder, module.reads_every_time, str(stored / "day.parquet"), locating=True)
        [access] = [a for a in recorder.take() if a.target.endswith("day.parquet")]
        assert access.where.startswith(f"{code}:8 (reads_every_time)"), access
    finally:
        recorder.close()


def test_a_read_the_second_run_does_not_repeat_stays_reported(user_code, tmp_path):
    module, code, stored = user_code
    recorder = AccessRecorder([tmp_path / "cut"], str(code), watched=[stored])
    try:
        _run(recorder, module.reads_only_once, str(stored / "day.parquet"))
        _run(recorder, module.reads_only_once, str(stored / "day.parquet"), locating=True)
        reads = [a for a in recorder.take() if a.target.endswith("day.parquet")]
        assert reads and all(a.where.startswith(UNLOCATED) for a in reads), reads
    finally:
        recorder.close()
