"""An independent, per-row implementation of the contract, written to be obviously correct.

Plain Python over dicts: no pandas tricks, no shared code with `feature_assets.core`.
Slow on purpose; the tests compare the vectorised features against it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pandas as pd

CLASS_ORDINAL = {"A1": 4, "A2": 3, "B1": 2, "B2": 1}


def rows_of(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as dicts, None for NULL and datetime.date for race_date."""
    rows = []
    for row in frame.astype(object).to_dict("records"):
        clean = {key: (None if pd.isna(value) else value) for key, value in row.items()}
        if clean.get("race_date") is not None:
            clean["race_date"] = pd.Timestamp(clean["race_date"]).date()
        rows.append(clean)
    return rows


def invalid_races(races: list[dict], entries: list[dict]) -> dict[int, set[str]]:
    """race_id -> the names of the rules it breaks."""
    broken: dict[int, set[str]] = defaultdict(set)
    race_ids = {race["race_id"] for race in races}
    for race in races:
        if race["venue_code"] is None or not 1 <= race["venue_code"] <= 24:
            broken[race["race_id"]].add("venue")
        if race["race_no"] is None or not 1 <= race["race_no"] <= 12:
            broken[race["race_id"]].add("race_no")
    by_race = defaultdict(list)
    for entry in entries:
        if entry["race_id"] in race_ids:
            by_race[entry["race_id"]].append(entry)
    for race_id, field in by_race.items():
        for entry in field:
            if entry["lane"] is None or not 1 <= entry["lane"] <= 6:
                broken[race_id].add("lane")
            finish = entry["finish_position"]
            if finish is not None and not 1 <= finish <= 6:
                broken[race_id].add("finish")
            if entry["racer_class"] not in CLASS_ORDINAL:
                broken[race_id].add("class")
            if entry["win_odds"] is not None and not entry["win_odds"] > 0:
                broken[race_id].add("odds")
        lanes = [e["lane"] for e in field]
        racers = [e["racer_id"] for e in field]
        if len(set(lanes)) != len(lanes):
            broken[race_id].add("unique_lane")
        if len(set(racers)) != len(racers):
            broken[race_id].add("unique_racer")
    return dict(broken)


def _rate(numerator: int, denominator: int):
    return None if denominator == 0 else numerator / denominator


def _mean(values: list):
    return None if not values else sum(values) / len(values)


def features_of_day(races: list[dict], entries: list[dict], day: dt.date) -> list[dict]:
    """The contract's race_features rows of `day`, sorted by (race_id, lane)."""
    race_by_id = {race["race_id"]: race for race in races}
    bad = invalid_races(races, entries)
    history = []
    for entry in entries:
        race = race_by_id.get(entry["race_id"])
        if race is None or entry["race_id"] in bad:
            continue
        history.append({**entry, "race_date": race["race_date"], "venue_code": race["venue_code"]})

    # history grouped by the values of the columns a window matches on, so that each
    # window scans only the rows of its racer, motor or lane
    grouped: dict[tuple, dict[tuple, list[dict]]] = {}

    def window(days: int, **same) -> list[dict]:
        columns = tuple(sorted(same))
        if columns not in grouped:
            groups = defaultdict(list)
            for h in history:
                groups[tuple(h[c] for c in columns)].append(h)
            grouped[columns] = groups
        first, last = day - dt.timedelta(days=days), day - dt.timedelta(days=1)
        candidates = grouped[columns].get(tuple(same[c] for c in columns), [])
        return [h for h in candidates if first <= h["race_date"] <= last]

    todays = sorted(
        (e for e in history if e["race_date"] == day), key=lambda e: (e["race_id"], e["lane"])
    )
    rows = []
    for entry in todays:
        race = race_by_id[entry["race_id"]]
        racer = window(90, racer_id=entry["racer_id"])
        racer_lane = window(365, racer_id=entry["racer_id"], lane=entry["lane"])
        motor = window(180, venue_code=race["venue_code"], motor_no=entry["motor_no"])
        venue_lane = window(365, venue_code=race["venue_code"], lane=entry["lane"])
        racer_year = window(365, racer_id=entry["racer_id"])
        same_race = [e for e in todays if e["race_id"] == entry["race_id"]]

        def wins(rows):
            return sum(1 for r in rows if r["finish_position"] == 1)

        def top2(rows):
            return sum(1 for r in rows if r["finish_position"] in (1, 2))

        rank = None
        if entry["exhibition_time"] is not None:
            faster = [
                e
                for e in same_race
                if e["exhibition_time"] is not None
                and e["exhibition_time"] < entry["exhibition_time"]
            ]
            rank = 1 + len(faster)
        implied = None
        if entry["win_odds"] is not None:
            total = sum(1 / e["win_odds"] for e in same_race if e["win_odds"] is not None)
            implied = (1 / entry["win_odds"]) / total
        rows.append(
            {
                "race_id": entry["race_id"],
                "lane": entry["lane"],
                "racer_id": entry["racer_id"],
                "race_date": day,
                "venue_code": race["venue_code"],
                "race_no": race["race_no"],
                "finish_position": entry["finish_position"],
                "is_win": entry["finish_position"] == 1,
                "racer_starts_90d": len(racer),
                "racer_win_rate_90d": _rate(wins(racer), len(racer)),
                "racer_top2_rate_90d": _rate(top2(racer), len(racer)),
                "racer_avg_finish_90d": _mean(
                    [r["finish_position"] for r in racer if r["finish_position"] is not None]
                ),
                "racer_avg_start_timing_90d": _mean(
                    [r["start_timing"] for r in racer if r["start_timing"] is not None]
                ),
                "racer_lane_win_rate_365d": _rate(wins(racer_lane), len(racer_lane)),
                "motor_top2_rate_180d": _rate(top2(motor), len(motor)),
                "venue_lane_win_rate_365d": _rate(wins(venue_lane), len(venue_lane)),
                "days_since_last_race": (
                    (day - max(r["race_date"] for r in racer_year)).days if racer_year else None
                ),
                "exhibition_time_rank": rank,
                "implied_win_prob": implied,
                "racer_class_ordinal": CLASS_ORDINAL[entry["racer_class"]],
            }
        )
    return rows


def values_match(actual, expected) -> bool:
    """The contract's tolerance: |a - b| <= 1e-9 * max(1, |b|); NULL matches only NULL."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(actual) == bool(expected)
    if isinstance(expected, dt.date):
        return actual == expected
    return abs(float(actual) - float(expected)) <= 1e-9 * max(1.0, abs(float(expected)))


def mismatches(actual: list[dict], expected: list[dict], limit: int = 10) -> list[str]:
    """Human-readable differences between two lists of feature rows (empty when they match)."""
    problems = []
    if len(actual) != len(expected):
        problems.append(f"{len(actual)} rows, expected {len(expected)}")
    for got, want in zip(actual, expected, strict=False):
        for column, value in want.items():
            if not values_match(got.get(column), value):
                problems.append(
                    f"race {want['race_id']} lane {want['lane']} {column}:"
                    f" {got.get(column)!r} != {value!r}"
                )
        if len(problems) >= limit:
            break
    return problems


def compute_race_features(races: pd.DataFrame, entries: pd.DataFrame, days) -> pd.DataFrame:
    """The built-in set through the engine, in this process, as one frame."""
    from feature_assets.core.engine import compute_days
    from feature_assets.feature_sets.race_features import race_features

    return compute_days(race_features, races, entries, days)
