"""A set's code version changes with what can change its values, not with comments."""

import importlib.util
import itertools

import pytest

SET = '''
"""My set."""
import math

from feature_assets import per_day

SCALE = 2  # a constant the set uses
UNUSED = 5


def _helper(values):
    """Doubles."""
    return values * SCALE


def _unused_helper(values):
    return values + UNUSED


@per_day(history_days=7, columns={"odds_x": "float"}{extra})
def my_set(day, history):
    """Odds, scaled."""
    import pandas as pd

    # the scaled odds
    return pd.DataFrame({"odds_x": _helper(day.entries["win_odds"]) + math.pi})
'''
_modules = itertools.count()


def _load(tmp_path, source: str, extra: str = ""):
    path = tmp_path / f"set_{next(_modules)}.py"
    path.write_text(source.replace("{extra}", extra))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.my_set


@pytest.mark.parametrize(
    "edit",
    [
        ('"""Odds, scaled."""', '"""Odds, scaled, as the bookmaker quotes them."""'),
        ("# the scaled odds", "# the odds, scaled by SCALE"),
        ('"""Doubles."""', '"""Doubles the values."""'),
        ('{"odds_x": _helper', '{\n        "odds_x": _helper'),  # formatting
        ("return values + UNUSED", "return values + UNUSED + 1"),  # a helper it does not use
        ("UNUSED = 5", "UNUSED = 6"),
        ('"""My set."""', '"""My set, documented."""'),
    ],
    ids=["docstring", "comment", "helper-docstring", "format", "unused-helper", "unused-const",
         "module-docstring"],
)  # fmt: skip
def test_comments_docstrings_and_unused_code_keep_the_version(tmp_path, edit):
    before = _load(tmp_path, SET)
    after = _load(tmp_path, SET.replace(*edit))
    assert SET.replace(*edit) != SET
    assert after.code_version == before.code_version


@pytest.mark.parametrize(
    "edit",
    [
        ("return values * SCALE", "return values * SCALE * 1.5"),  # a helper it calls
        ("SCALE = 2", "SCALE = 3"),  # a constant a helper uses
        ("history_days=7", "history_days=8"),  # the declaration
        ("+ math.pi", "+ math.e"),  # the function itself
        ("import math", "import cmath as math"),  # an import it uses
    ],
    ids=["helper", "constant", "declaration", "body", "import"],
)
def test_what_can_change_values_changes_the_version(tmp_path, edit):
    before = _load(tmp_path, SET)
    after = _load(tmp_path, SET.replace(*edit))
    assert after.code_version != before.code_version


def test_a_version_declared_by_hand_is_the_version(tmp_path):
    declared = _load(tmp_path, SET, ', version="3"')
    changed = _load(tmp_path, SET.replace("SCALE = 2", "SCALE = 3"), ', version="3"')
    assert declared.code_version == changed.code_version == "3"
    assert declared.current_versions == {"3"}


def test_declaring_the_close_stage_keeps_the_version(tmp_path):
    """Before stages, every set saw what `close` shows: declaring it changes no value."""
    undeclared = _load(tmp_path, SET)
    close = _load(tmp_path, SET, ', stage="close"')
    assert (undeclared.stage, close.stage) == ("card", "close")
    assert close.code_version == undeclared.code_version


def test_days_tagged_by_the_text_hash_stay_current_while_the_text_is_unchanged(tmp_path):
    from feature_assets.core.code_version import text_version

    feature_set = _load(tmp_path, SET)
    assert text_version(feature_set.function) in feature_set.current_versions
    edited = _load(tmp_path, SET.replace("# the scaled odds", "# scaled"))
    assert text_version(feature_set.function) not in edited.current_versions
    assert edited.code_version in feature_set.current_versions
