"""Feature sets through the framework: a slow per-race set on 1 and 2 workers, the built-in set.

    python benchmarks/feature_sets.py                  # 60 days x 40 races at 20 ms a race
    python benchmarks/feature_sets.py --days 3 --races-per-day 4 --builtin-days 30 --out /tmp/R.md

Each measurement runs in its own process (data generated there, the same seed each time):
the slow set (`benchmarks/slow_set.py`, a fixed CPU cost per race) over `--days` days with
1 worker and with 2, and the built-in `race_features` over `--builtin-days` days (best of
three). The time is that of `engine.run_days` (history indexed, days computed on the
workers, outputs checked), without Python's start-up or the data generation; the framework's
overhead is that time less the time inside the set's function. Memory is the peak of the
summed PSS of the process and its workers (forked workers share the history: RSS would
count it once per worker). Prints a Markdown table and writes it into `--out` (default
benchmarks/RESULTS.md) between the feature-sets markers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_DAY = dt.date(2015, 1, 1)
START, END = "<!-- feature-sets:start -->", "<!-- feature-sets:end -->"
sys.path.insert(0, str(REPO / "benchmarks"))
from run import Sampler, write_results  # noqa: E402

# race_features before the feature-set framework: the "features" stage of B in RESULTS.md
# (2026-11-28, ten years, 854,008 entries), the figure the built-in set must not exceed
PREVIOUS_BUILTIN_SECONDS = 4.6


# -- one measurement, in its own process ---------------------------------------------------


def measure(which: str, days: int, races_per_day: int, workers: int, repeats: int) -> dict:
    import pandas as pd

    from feature_assets.core import engine
    from feature_assets.io import synthetic

    if which == "slow":
        from slow_set import SECONDS_PER_RACE
        from slow_set import slow_set as feature_set
    else:
        from feature_assets.feature_sets.race_features import race_features as feature_set

        SECONDS_PER_RACE = 0.0
    history = feature_set.history_days if which == "slow" else 0
    data = synthetic.generate(FIRST_DAY, days=history + days, races_per_day=races_per_day, seed=7)
    targets = [
        d.strftime("%Y-%m-%d")
        for d in pd.date_range(FIRST_DAY + dt.timedelta(days=history), periods=days)
    ]
    in_set = multiprocessing.Value("d", 0.0)  # seconds inside the set's function, all workers

    def timed(*args):
        started = time.perf_counter()
        try:
            return feature_set.function(*args)
        finally:
            with in_set.get_lock():
                in_set.value += time.perf_counter() - started

    timed_set = dataclasses.replace(feature_set, function=timed)
    timings = []
    for _ in range(repeats):  # the best of `repeats`: this machine's speed varies
        in_set.value = 0.0
        started = time.perf_counter()
        outcomes = engine.run_days(timed_set, data.races, data.entries, targets, workers)
        timings.append((time.perf_counter() - started, in_set.value))
    seconds, in_set_seconds = min(timings)
    failed = [o.error for o in outcomes if not o.ok]
    rows = pd.concat([o.rows for o in outcomes if o.ok], ignore_index=True)
    digest = int(pd.util.hash_pandas_object(rows, index=False).sum())
    return {
        "seconds": seconds,
        "in_set_seconds": in_set_seconds,
        "races": sum(o.races for o in outcomes),
        "rows": len(rows),
        "failed_days": len(failed),
        "digest": str(digest),
        "seconds_per_race": SECONDS_PER_RACE,
    }


# -- the parent: processes, memory, the table ----------------------------------------------


class PeakPss(Sampler):
    """Samples the summed PSS (MB) of a process and its descendants while it runs."""

    interval = 0.25  # smaps_rollup walks every mapping: not too often

    def __init__(self, pid: int):
        super().__init__()
        self.pid = pid

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(parent, []).append(int(proc.name))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def sample(self):
        total = 0
        for pid in self._tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        self.peak_mb = max(self.peak_mb, total / 1024)


def run_measurement(which: str, days: int, races: int, workers: int, env: dict) -> dict:
    command = [
        sys.executable, __file__, "--measure", which, "--days", str(days),
        "--races-per-day", str(races), "--workers", str(workers),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    with PeakPss(process.pid) as peak:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed with exit code {process.returncode}")
    return {**json.loads(output.strip().splitlines()[-1]), "peak_mb": peak.peak_mb}


def report(args, one: dict, two: dict, builtin: dict) -> str:
    cost = one["seconds_per_race"]
    races = max(one["races"], 1)
    # outside the set's function: history indexed, days prepared, outputs checked and typed
    overhead_ms = (one["seconds"] - one["in_set_seconds"]) / races * 1000
    # inside it beyond the fixed cost: its lookups (history.racer, .motor) and loops
    lookups_ms = (one["in_set_seconds"] - one["races"] * cost) / races * 1000
    speedup = one["seconds"] / two["seconds"]
    memory = two["peak_mb"] / one["peak_mb"]
    same = one["digest"] == two["digest"] and one["rows"] == two["rows"]
    builtin_ok = builtin["seconds"] <= PREVIOUS_BUILTIN_SECONDS

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def figures(run: dict) -> str:
        per_race = run["seconds"] / max(run["races"], 1) * 1000
        return f"{run['seconds']:.1f} | {per_race:.2f} | {run['peak_mb']:.0f} | {run['rows']:,}"

    return "\n".join(
        [
            f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores.",
            "",
            f"Slow per-race set (`benchmarks/slow_set.py`): {args.days} days, {one['races']:,}"
            f" races, {cost * 1000:g} ms of CPU a race; built-in set: {args.builtin_days:,}"
            f" days, {builtin['rows']:,} entries.",
            "",
            "| run | wall s | per race ms | peak PSS MB | output rows | target |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            f"| slow set, 1 worker | {figures(one)} | framework overhead {overhead_ms:.2f} ms a"
            f" race ≤ 1 ms: {verdict(overhead_ms <= 1)} (the set's lookups and loops:"
            f" {lookups_ms:.2f} ms a race more) |",
            f"| slow set, 2 workers | {figures(two)} | speedup {speedup:.2f}× ≥ 1.8:"
            f" {verdict(speedup >= 1.8)}; memory {memory:.2f}× ≤"
            f" 1.5: {verdict(memory <= 1.5)}; output identical: {verdict(same)} |",
            f"| built-in `race_features`, 1 worker | {builtin['seconds']:.1f} | |"
            f" {builtin['peak_mb']:.0f} | {builtin['rows']:,} | ≤ {PREVIOUS_BUILTIN_SECONDS} s"
            f" (before the framework): {verdict(builtin_ok)} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--races-per-day", type=int, default=40)
    parser.add_argument("--builtin-days", type=int, default=3650)
    parser.add_argument("--seconds-per-race", type=float, default=0.02)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--measure", choices=["slow", "builtin"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        repeats = 3 if args.measure == "builtin" else 1  # the slow set's run is a minute
        print(
            json.dumps(measure(args.measure, args.days, args.races_per_day, args.workers, repeats))
        )
        return
    env = {**os.environ, "FEATURE_ASSETS_BENCH_SECONDS_PER_RACE": str(args.seconds_per_race)}
    one, two = (
        run_measurement("slow", args.days, args.races_per_day, workers, env) for workers in (1, 2)
    )
    builtin = run_measurement("builtin", args.builtin_days, args.races_per_day, 1, env)
    table = report(args, one, two, builtin)
    print(table)
    write_results(args.out, table, START, END, section="## Feature sets\n\n")


if __name__ == "__main__":
    main()
