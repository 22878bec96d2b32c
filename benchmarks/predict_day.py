"""One race day's prediction on the embedded default, as a user runs it.

Sets up what `feature-assets predict` needs in a temporary DAGSTER_HOME: the demo (SQLite
source, every day of a year and more stored, today's card without results) and a small win
model over the stored days; then times `feature-assets predict` end to end (a new card
snapshot, the model's three sets for the day, scoring, storing, printing) and, in this
process, the prediction's own steps. Prints the figures; asserts none.

    python benchmarks/predict_day.py [--days 400] [--races-per-day 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TOKYO = dt.timezone(dt.timedelta(hours=9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=400, help="stored days before today")
    parser.add_argument("--races-per-day", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    today = dt.datetime.now(TOKYO).date()
    first = today - dt.timedelta(days=args.days)
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as home:
        env = {
            **os.environ,
            "DAGSTER_HOME": home,
            "FEATURE_ASSETS_START_DATE": first.isoformat(),
        }
        for name in ("FEATURE_ASSETS_SOURCE_URL", "FEATURE_ASSETS_STORAGE_URL"):
            env.pop(name, None)
        Path(home, "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
        started = time.perf_counter()
        command = ["feature-assets", "demo", "--races-per-day", str(args.races_per_day)]
        subprocess.run(command, env=env, check=True, capture_output=True)
        demo = time.perf_counter() - started
        os.environ.update(env)  # the in-process part reads the same storage
        from feature_assets.io.storage import DailyParquetStorage
        from tests.helpers import train_small_model

        lake = DailyParquetStorage(str(Path(home) / "data" / "parquet"))
        train_small_model(lake, first, today - dt.timedelta(days=1))
        walls = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(["feature-assets", "predict"], env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
        steps = _steps(lake, today.isoformat(), first.isoformat())
    print(f"setup: demo of {args.days} days x {args.races_per_day} races in {demo:.1f} s")
    print(
        f"feature-assets predict, one day of {args.races_per_day} races, wall:"
        f" median {statistics.median(walls):.2f} s (runs: {', '.join(f'{w:.2f}' for w in walls)})"
    )
    for name, seconds in steps.items():
        print(f"  in process, {name}: {seconds:.2f} s")


def _steps(lake, day: str, start: str) -> dict[str, float]:
    """The prediction's own steps, timed in this process (imports already paid)."""
    from feature_assets.defs.resources import SourceDatabase
    from feature_assets.feature_sets import registered_sets
    from feature_assets.io import cards
    from feature_assets.settings import default_source_url
    from feature_assets.training import predict

    times = {}
    started = time.perf_counter()
    model = predict.load_model(lake)
    sets = predict.model_sets(model, registered_sets())
    times["load the model"] = time.perf_counter() - started
    started = time.perf_counter()
    when = dt.date.fromisoformat(day)
    snapshot = SourceDatabase(url=default_source_url()).read_snapshot(when, when)
    card = cards.from_source(snapshot.races, snapshot.entries, day, snapshot.taken_at[day])
    times["take the card"] = time.perf_counter() - started
    started = time.perf_counter()
    history = predict.read_history(lake, predict.history_span(sets, day, start))
    times["read a year of stored history"] = time.perf_counter() - started
    started = time.perf_counter()
    predict.predict(model, sets, card, history)
    times["compute the sets and score"] = time.perf_counter() - started
    return times


if __name__ == "__main__":
    main()
