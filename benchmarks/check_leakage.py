"""check-leakage against the computation it checks, on a set written as a user writes one.

    python benchmarks/check_leakage.py                       # 5 sampled days x 40 races
    python benchmarks/check_leakage.py --days 2 --races-per-day 4 --out /tmp/R.md

The set (`benchmarks/user_set.py`: per race, pure Python, ~15 ms of CPU a race, 120 days
of history) is computed for the sampled days on one worker (what a check recomputes), then
the stored days are checked as `feature-assets check-leakage` checks them: a SQLite source
file and a storage folder that the check watches for native reads, the set's code recorded.
Prints both times, their ratio and the check's fixed cost, and writes the table into `--out`
(default benchmarks/RESULTS.md) between the check-leakage markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from run import write_results  # noqa: E402

FIRST_DAY = dt.date(2015, 1, 1)
START, END = "<!-- check-leakage:start -->", "<!-- check-leakage:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5, help="sampled days checked")
    parser.add_argument("--races-per-day", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()

    import pandas as pd
    from user_set import user_set

    from feature_assets.core.engine import run_days
    from feature_assets.io import synthetic
    from feature_assets.io.storage import DailyParquetStorage
    from feature_assets.ops.leakage import check_leakage

    history = user_set.history_days
    data = synthetic.generate(
        FIRST_DAY, days=history + args.days * 7, races_per_day=args.races_per_day, seed=3
    )
    days = [(FIRST_DAY + dt.timedelta(days=history + 7 * i)).isoformat() for i in range(args.days)]
    with tempfile.TemporaryDirectory(prefix="bench-leakage-") as folder:
        source = Path(folder) / "source.sqlite"
        synthetic.load(f"sqlite:///{source}", data)
        started = time.perf_counter()
        outcomes = run_days(user_set, data.races, data.entries, days, workers=1)
        compute = time.perf_counter() - started
        stored = pd.concat([o.rows for o in outcomes], ignore_index=True)
        storage = DailyParquetStorage(str(Path(folder) / "parquet"))
        storage.write_days(user_set.name, stored, days)
        races = sum(o.races for o in outcomes)

        started = time.perf_counter()
        found = check_leakage(
            user_set,
            days,
            stored,
            data.races,
            data.entries,
            watched=[storage.root, str(source)],
            on_day=lambda day, of_day, seconds: print(
                f"  checked {day}: {len(of_day)} finding(s), {seconds:.2f} s", flush=True
            ),
        )
        check = time.perf_counter() - started
    if found:
        raise SystemExit(f"the benchmark's set should pass: {found[:3]}")
    rows = [
        ("days checked", f"{len(days)} ({races} races)"),
        ("computing them (1 worker)", f"{compute:.2f} s ({1000 * compute / races:.1f} ms a race)"),
        ("checking them", f"{check:.2f} s"),
        ("check / compute", f"{check / compute:.2f}x"),
    ]
    table = "\n".join(
        ["| what | figure |", "| --- | --- |", *(f"| {what} | {figure} |" for what, figure in rows)]
    )
    print(table)
    write_results(
        args.out,
        f"`python benchmarks/check_leakage.py`\n\n{table}\n",
        START,
        END,
        "\n## check-leakage against the computation it checks\n\n",
    )


if __name__ == "__main__":
    main()
