"""The benchmark command at a tiny size: it runs every scenario and writes its table.

Figures are never asserted here; they live in benchmarks/RESULTS.md.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_smoke(mysql_server, tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept text\n<!-- measured:start -->\nold\n<!-- measured:end -->\n")
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--days",
            "20",
            "--races-per-day",
            "6",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--mysql-url",
            f"mysql://{mysql_server.user}@{mysql_server.host}:{mysql_server.port}",
            "--database",
            "fa_bench_smoke",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    text = out.read_text()
    assert "kept text" in text and "\nold\n" not in text
    for scenario in (
        "B: bare script",
        "one ranged run",
        "PostgreSQL, batched event writes",
        "daemon backfill",
        "one day, three assets",
        "per-row reference",
    ):
        assert scenario in text, scenario


def test_feature_sets_benchmark_smoke(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept text\n")
    run = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "feature_sets.py"), "--days", "3",
            "--races-per-day", "4", "--builtin-days", "20", "--seconds-per-race", "0.001",
            "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    text = out.read_text()
    assert "kept text" in text and "<!-- feature-sets:start -->" in text
    for scenario in ("slow set, 1 worker", "slow set, 2 workers", "built-in `race_features`"):
        assert scenario in text, scenario
    assert "output identical: met" in text  # 1 and 2 workers wrote the same rows


def test_tuning_benchmark_smoke(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept text\n")
    run = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "tuning.py"), "--days", "90",
            "--races-per-day", "6", "--trials", "2", "--held-out-days", "15",
            "--work", str(tmp_path / "work"), "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    text = out.read_text()
    assert "kept text" in text and "<!-- tuning:start -->" in text
    for scenario in ("1 worker(s) x 1 thread(s)", "2 worker(s) x 1 thread(s)", "| auc |"):
        assert scenario in text, scenario


def test_predict_day_benchmark_smoke():
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "predict_day.py"), "--days", "30",
         "--races-per-day", "4", "--repeat", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "feature-assets predict, one day of 4 races, wall: median" in run.stdout
    assert "compute the sets and score" in run.stdout


def test_ui_backfill_benchmark_smoke():
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ui_backfill.py"), "--days", "12",
         "--repeat", "1", "--sizes", "2", "--spread", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "2-day backfill of race_features, 1 launches:" in run.stdout
    for stage in ("runs created", "last run started", "days stored", "backfill completed"):
        assert f"launch -> {stage}" in run.stdout, stage
    assert "floor: one `dagster asset materialize` of the same days" in run.stdout


def test_check_leakage_benchmark_smoke(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept text\n")
    run = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "check_leakage.py"), "--days", "2",
            "--races-per-day", "4", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "FEATURE_ASSETS_BENCH_USER_PASSES": "5"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.count(": 0 finding(s),") == 2, run.stdout
    text = out.read_text()
    assert "kept text" in text and "check / compute" in text
