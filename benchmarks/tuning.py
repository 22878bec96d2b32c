"""Tuning throughput: trials per minute with 1 and with 2 workers, and the model's metrics.

The lake comes from `feature-assets demo` (every asset of the generated days, default ten
years), then `training_data` is materialised. Each configuration runs the same queued trials
(parameters drawn once, the same for all) through `feature_assets.training.search.run_trials`
in worker processes sharing one SQLite study, as the tuning runs do (the Dagster run start,
~5 s a run, is left out). Then `win_model`'s training on the best parameters, and its
validation and test metrics. Results go between the tuning markers of RESULTS.md.

    python benchmarks/tuning.py            # ten years, 8 trials a configuration
"""

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from run import write_results  # noqa: E402

START, END = "<!-- tuning:start -->", "<!-- tuning:end -->"
CONFIGURATIONS = ((1, 1), (2, 1), (1, 2))  # (workers, LightGBM threads each)


def _environment(work: Path, days: int, held_out: int) -> dict:
    first = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=days)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURE_ASSETS_")}
    return {
        **env,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "FEATURE_ASSETS_START_DATE": first.isoformat(),
        "FEATURE_ASSETS_VALIDATION_DAYS": str(held_out),
        "FEATURE_ASSETS_TEST_DAYS": str(held_out),
    }


def _build_lake(env: dict, races_per_day: int) -> float:
    home = Path(env["DAGSTER_HOME"])
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    started = time.monotonic()
    for command in (
        ["feature-assets", "demo", "--races-per-day", str(races_per_day)],
        ["dagster", "asset", "materialize", "-m", "feature_assets.definitions"]
        + ["--select", "training_data"],
    ):
        subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
    return time.monotonic() - started


def _worker(url: str, study: str, storage: str, threads: int) -> None:
    from feature_assets.io.storage import DailyParquetStorage
    from feature_assets.training import data, model, search

    table, lineage = data.load(DailyParquetStorage(storage))
    features = lineage["features"]
    train = model.dataset(table[table["split"] == "train"], features)
    validation = model.dataset(table[table["split"] == "validation"], features, reference=train)
    objective = search.win_objective(train, validation, threads, 7, f"pid-{os.getpid()}")
    search.run_trials(search.open_storage(url, 30), study, objective)


def _parameters(count: int) -> list[dict]:
    """`count` parameter sets of the search space, drawn once with a fixed seed."""
    import optuna

    from feature_assets.training.model import suggest_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    return [suggest_params(study.ask()) for _ in range(count)]


def _tune(work: Path, storage: str, training_id: str, workers: int, threads: int, params):
    import optuna

    from feature_assets.training import search

    url = f"sqlite:///{work / f'optuna-{workers}x{threads}.sqlite'}"
    Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    study = search.start_search(search.open_storage(url, 30), "bench", 0, workers, training_id)
    for values in params:
        study.enqueue_trial(values, skip_if_exists=False)
    context = multiprocessing.get_context("spawn")
    started = time.monotonic()
    processes = [
        context.Process(target=_worker, args=(url, "bench", storage, threads))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a worker exited with {process.exitcode}")
    seconds = time.monotonic() - started
    finished = optuna.load_study(study_name="bench", storage=url)
    states = search.counts(finished)
    return seconds, states, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=3650)
    parser.add_argument("--races-per-day", type=int, default=40)
    parser.add_argument("--trials", type=int, default=8, help="trials a configuration")
    parser.add_argument("--held-out-days", type=int, default=365)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "tuning")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument(
        "--keep-lake", action="store_true", help="reuse the lake and training data of --work"
    )
    args = parser.parse_args()

    env = _environment(args.work, args.days, args.held_out_days)
    os.environ.update(env)
    lake_seconds = None if args.keep_lake else _build_lake(env, args.races_per_day)
    from feature_assets import settings
    from feature_assets.io.storage import DailyParquetStorage
    from feature_assets.training import data, model

    storage = settings.storage_url()
    table, lineage = data.load(DailyParquetStorage(storage))
    params = _parameters(args.trials)
    rows, rates, best = [], {}, None
    for workers, threads in CONFIGURATIONS:
        seconds, states, study = _tune(
            args.work, storage, lineage["training_data"], workers, threads, params
        )
        rates[(workers, threads)] = args.trials / seconds * 60
        trial_seconds = sum(
            (t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials
        )
        rows.append(
            f"| {workers} worker(s) x {threads} thread(s) | {seconds:,.1f} s |"
            f" {rates[(workers, threads)]:.2f} | {trial_seconds:,.0f} s |"
            f" {trial_seconds / seconds:.2f} | {states['COMPLETE']} complete,"
            f" {states['PRUNED']} pruned |"
        )
        print(rows[-1], flush=True)
        if (workers, threads) == (2, 1):
            best = study.best_trial
    speedup = rates[(2, 1)] / rates[(1, 1)]
    started = time.monotonic()
    final = model.train_final(table, lineage["features"], best.params, threads=2, seed=7)
    model_seconds = time.monotonic() - started
    splits = table["split"].value_counts()
    metrics = "\n".join(
        f"| {name} | {final.validation[name]:.4f} | {final.test[name]:.4f} |"
        for name in ("log_loss", "auc", "top_pick_hit_rate", "favourite_hit_rate")
        + ("flat_stake_return",)
    )
    walk = _walk_forward(table, lineage["features"], best.params, final.rounds)
    built = f" Lake and training data built in {lake_seconds:,.0f} s." if lake_seconds else ""
    table_text = f"""Generated {args.days:,} days, {args.races_per_day} races a day, every
feature set ({len(lineage["features"])} features); train {splits["train"]:,} / validation
{splits["validation"]:,} / test {splits["test"]:,} entries ({lineage["splits"]["test"]} is the
test period).{built} The same {args.trials}
queued parameter sets for each configuration, one SQLite study, worker processes as the
tuning runs use. Pruning decides on the trials finished so far, so parallel workers prune
later (a trial pruned after 2 s alone may run 40 s beside another): "trial time, summed"
shows that extra work, "trials running at once" how busy the workers kept the cores.

| configuration | wall | trials/min | trial time, summed | trials running at once | outcome |
| --- | ---: | ---: | ---: | ---: | --- |
{chr(10).join(rows)}

2 workers against 1 (one thread each, the pod's shape): **{speedup:.2f}x** (target >= 1.7x:
{"met" if speedup >= 1.7 else "missed"}).

The model (`win_model`'s training: the best trial's parameters, {final.rounds} rounds, seed
7, {model_seconds:.0f} s):

| metric | validation | test |
| --- | ---: | ---: |
{metrics}

{walk}
"""
    write_results(args.out, table_text, START, END, section="## Tuning\n\n")
    print(table_text)


def _walk_forward(table, features, params, rounds) -> str:
    """The walk-forward backtest's cost and figures (`walk_forward_backtest`'s work)."""
    from feature_assets.training import walk_forward as wf

    started = time.monotonic()
    months = wf.walk_forward(table, features, params, rounds, 2, 7, table["split"] == "test")
    seconds = time.monotonic() - started
    import pandas as pd

    bets = wf.betting(pd.concat([m.rows for m in months]))
    slowest = max(m.seconds for m in months)
    return (
        f"Walk-forward over the test period: {len(months)} monthly models (each trained on"
        f" every day before its month, {rounds} rounds, 2 threads) in **{seconds:,.0f} s**"
        f" ({seconds / len(months):,.1f} s a month, the slowest {slowest:,.1f} s). Bets on"
        f" positive expected return at the final odds: {bets['bets']:,} bets, hit rate"
        f" {bets['hit_rate']:.3f}, flat return {bets['flat_return']:+.3f} a unit (maximum"
        f" drawdown {bets['flat_max_drawdown']:,.0f} units), quarter Kelly ends at"
        f" {bets['kelly_bankroll']:.3f} of the bankroll (maximum drawdown"
        f" {bets['kelly_max_drawdown']:.0%}); the odds imply a takeout of"
        f" {bets['implied_takeout']:.1%}."
    )


if __name__ == "__main__":
    main()
