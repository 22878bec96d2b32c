"""Synthetic race results that follow the contract, and loading them into SQLite or MySQL.

Deterministic for a seed. About `races_per_day` races a day spread over a few venues, up to
six entries a race (lanes left empty now and then), racers who run two races a day, NULLs in
every nullable column, ties in exhibition times, dead heats (two boats sharing a place), and
optionally invalid races, each breaking one contract rule in turn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feature_assets.core.quality import (
    CLASS_RULE,
    FINISH_RULE,
    LANE_RULE,
    ODDS_RULE,
    RACE_NO_RULE,
    RULES,
    UNIQUE_LANE_RULE,
    UNIQUE_RACER_RULE,
    VENUE_RULE,
)
from feature_assets.core.schema import (
    RACE_ENTRIES_COLUMNS,
    RACES_COLUMNS,
    SOURCE_RACE_ENTRIES_COLUMNS,
    SOURCE_RACES_COLUMNS,
    typed_frame,
)
from feature_assets.io.source import SourceLocation, connect

MYSQL_SCHEMA = (
    """CREATE TABLE races (
  race_id BIGINT PRIMARY KEY, race_date DATE NOT NULL, venue_code TINYINT UNSIGNED NOT NULL,
  race_no TINYINT UNSIGNED NOT NULL, grade VARCHAR(8) NOT NULL, distance_m SMALLINT NOT NULL,
  weather VARCHAR(16) NULL, wind_speed_mps DECIMAL(4,1) NULL, wave_height_cm SMALLINT NULL,
  KEY idx_races_date (race_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE race_entries (
  race_id BIGINT NOT NULL, lane TINYINT UNSIGNED NOT NULL, racer_id INT NOT NULL,
  racer_class CHAR(2) NOT NULL, racer_age TINYINT UNSIGNED NULL, racer_weight_kg DECIMAL(4,1) NULL,
  motor_no SMALLINT NOT NULL, boat_no SMALLINT NOT NULL, exhibition_time DECIMAL(4,2) NULL,
  start_timing DECIMAL(4,2) NULL, finish_position TINYINT UNSIGNED NULL, win_odds DECIMAL(7,1) NULL,
  PRIMARY KEY (race_id, lane)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)
SQLITE_SCHEMA = (
    """CREATE TABLE races (
  race_id INTEGER PRIMARY KEY, race_date TEXT NOT NULL, venue_code INTEGER NOT NULL,
  race_no INTEGER NOT NULL, grade TEXT NOT NULL, distance_m INTEGER NOT NULL, weather TEXT,
  wind_speed_mps REAL, wave_height_cm INTEGER)""",
    "CREATE INDEX idx_races_date ON races (race_date)",
    """CREATE TABLE race_entries (
  race_id INTEGER NOT NULL, lane INTEGER NOT NULL, racer_id INTEGER NOT NULL,
  racer_class TEXT NOT NULL, racer_age INTEGER, racer_weight_kg REAL, motor_no INTEGER NOT NULL,
  boat_no INTEGER NOT NULL, exhibition_time REAL, start_timing REAL, finish_position INTEGER,
  win_odds REAL, PRIMARY KEY (race_id, lane))""",
)

VENUES = 24
RACES_A_VENUE = 12
RACERS = 1600
ROSTER = 48
GRADES = np.array(["IPPAN", "G3", "G2", "G1", "SG"])
WEATHER = np.array(["晴", "曇り", "雨", "雪", "霧"])
CLASSES = np.array(["A1", "A2", "B1", "B2"])
# The source's primary key (race_id, lane) makes a repeated lane impossible to store.
INJECTABLE_RULES = [rule for rule in RULES if rule != UNIQUE_LANE_RULE]


@dataclass(frozen=True)
class SyntheticData:
    races: pd.DataFrame  # contract columns, with race_date
    entries: pd.DataFrame  # contract columns plus race_date
    invalid_race_ids: dict[int, str]  # race_id -> the rule it was made to break


def generate(
    first_day: dt.date,
    days: int,
    races_per_day: int = 40,
    invalid_races: int = 0,
    seed: int = 7,
) -> SyntheticData:
    """`days` days of results from `first_day`, about `races_per_day` races a day."""
    rng = np.random.default_rng(seed)
    races = _races(rng, first_day, days, races_per_day)
    skill = rng.normal(0.0, 1.0, RACERS)
    racer_class = CLASSES[np.digitize(skill, [0.9, 0.3, -0.8])]
    entries = _entries(rng, races, skill, racer_class)
    entries = _dead_heats(np.random.default_rng([seed, 1]), entries)
    races, entries, broken = _break_races(rng, races, entries, invalid_races)
    return SyntheticData(
        typed_frame(races, RACES_COLUMNS), typed_frame(entries, RACE_ENTRIES_COLUMNS), broken
    )


DEAD_HEAT_SHARE = 0.005  # of races (real boat racing: 130 in 168,564); tests need a few


def _dead_heats(rng: np.random.Generator, entries: pd.DataFrame) -> pd.DataFrame:
    """Dead heats: in about DEAD_HEAT_SHARE of the races two boats share a place (1st, or
    another), the next place is skipped, as official results have them (1, 1, 3, ...).
    Their own generator, so the rest of a seed's data stays as it was."""
    finishers = entries.dropna(subset=["finish_position"])
    races = finishers["race_id"].unique()
    chosen = races[rng.random(len(races)) < DEAD_HEAT_SHARE]
    entries = entries.copy()
    for race_id in chosen:
        of_race = finishers[finishers["race_id"] == race_id].sort_values("finish_position")
        places = of_race["finish_position"].to_numpy()
        # a place k whose runner-up k+1 also finished: the two share k
        shared = [i for i in range(len(places) - 1) if places[i + 1] == places[i] + 1]
        if shared:
            i = shared[0] if rng.random() < 0.5 else int(rng.choice(shared))
            entries.loc[of_race.index[i + 1], "finish_position"] = places[i]
    return entries


def _races(rng: np.random.Generator, first_day: dt.date, days: int, per_day: int) -> pd.DataFrame:
    venues_a_day = max(1, -(-per_day // RACES_A_VENUE))
    rows = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        venues = np.sort(rng.choice(VENUES, venues_a_day, replace=False) + 1)
        slots = [(v, n) for v in venues for n in range(1, RACES_A_VENUE + 1)][:per_day]
        for venue, race_no in slots:
            race_id = int(day.strftime("%Y%m%d")) * 10000 + int(venue) * 100 + race_no
            rows.append((race_id, day, int(venue), race_no))
    races = pd.DataFrame(rows, columns=["race_id", "race_date", "venue_code", "race_no"])
    n = len(races)
    races["race_date"] = pd.to_datetime(races["race_date"])
    races["grade"] = GRADES[rng.choice(5, n, p=[0.8, 0.1, 0.05, 0.03, 0.02])]
    races["distance_m"] = np.where(rng.random(n) < 0.97, 1800, 1200)
    races["weather"] = np.where(rng.random(n) < 0.05, None, WEATHER[rng.integers(0, 5, n)])
    races["wind_speed_mps"] = _with_nulls(rng, np.round(rng.gamma(2.0, 1.5, n), 1), 0.05)
    races["wave_height_cm"] = _with_nulls(rng, rng.integers(0, 15, n).astype(float), 0.05)
    return races


def _entries(
    rng: np.random.Generator, races: pd.DataFrame, skill: np.ndarray, racer_class: np.ndarray
) -> pd.DataFrame:
    n_races = len(races)
    # each venue-day has a roster of racers; its 12 races draw six each from it, so most
    # racers run one or two races a day, a few three or more
    venue_day = races.groupby(["race_date", "venue_code"], sort=False).ngroup().to_numpy()
    n_rosters = venue_day.max() + 1 if n_races else 0
    rosters = np.stack([rng.choice(RACERS, ROSTER, replace=False) for _ in range(n_rosters)])
    picks = np.argsort(rng.random((n_races, ROSTER)), axis=1)[:, :6]
    racer = rosters[venue_day][np.arange(n_races)[:, None], picks]
    present = rng.random((n_races, 6)) >= 0.03
    present[:, 0] = True  # a race has at least one entry

    lane = np.tile(np.arange(1, 7), (n_races, 1))
    expected = np.where(present, skill[racer] + (6 - lane) * 0.35, -np.inf)
    strength = expected + rng.normal(0, 1.0, (n_races, 6))  # the race's own luck
    order = np.argsort(-strength, axis=1)
    finish = np.empty_like(order)
    np.put_along_axis(finish, order, np.arange(1, 7), axis=1)
    # the market knows the racers and lanes, not the race's luck: odds computed from the
    # realised strength would tell the result (a favourite winning 19 races in 20)
    with np.errstate(divide="ignore"):  # empty lanes have probability 0
        odds = np.round(np.clip(0.8 / _softmax_rows(expected * 1.2), 1.0, 999.9), 1)

    take = present.ravel()
    size = int(take.sum())
    race_index = np.repeat(np.arange(n_races), 6)[take]
    racer_flat = racer.ravel()[take]
    venue = races["venue_code"].to_numpy()[race_index]
    finish_flat = finish.ravel()[take].astype(float)
    finish_flat[rng.random(size) < 0.02] = np.nan  # did not finish / disqualified
    return pd.DataFrame(
        {
            "race_id": races["race_id"].to_numpy()[race_index],
            "race_date": races["race_date"].to_numpy()[race_index],
            "lane": lane.ravel()[take],
            "racer_id": 4000 + racer_flat,
            "racer_class": racer_class[racer_flat],
            "racer_age": _with_nulls(rng, 20 + (racer_flat % 35).astype(float), 0.02),
            "racer_weight_kg": _with_nulls(rng, np.round(rng.normal(52, 3, size), 1), 0.02),
            "motor_no": 1 + (venue * 7 + rng.integers(0, 60, size)) % 60,
            "boat_no": rng.integers(1, 61, size),
            "exhibition_time": _with_nulls(rng, np.round(rng.normal(6.75, 0.06, size), 2), 0.03),
            "start_timing": _with_nulls(rng, np.round(rng.normal(0.15, 0.06, size), 2), 0.02),
            "finish_position": finish_flat,
            "win_odds": _with_nulls(rng, odds.ravel()[take], 0.02),
        }
    )


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    values = values.astype(object)
    values[rng.random(len(values)) < share] = None
    return values


def _break_races(
    rng: np.random.Generator, races: pd.DataFrame, entries: pd.DataFrame, count: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, str]]:
    """Make `count` full-field races after the first tenth of the days break one rule each."""
    if count == 0:
        return races, entries, {}
    full = entries.groupby("race_id")["lane"].count().pipe(lambda n: n[n == 6]).index
    days = races["race_date"].drop_duplicates().sort_values()
    late = races.loc[races["race_date"] >= days.iloc[len(days) // 10], "race_id"]
    candidates = np.intersect1d(full, late)
    chosen = rng.choice(candidates, count, replace=False)
    races, entries = races.copy(), entries.copy()
    broken: dict[int, str] = {}
    for i, race_id in enumerate(sorted(int(r) for r in chosen)):
        rule = INJECTABLE_RULES[i % len(INJECTABLE_RULES)]
        _break_rule(races, entries, race_id, rule)
        broken[race_id] = rule
    return races, entries, broken


def _break_rule(races: pd.DataFrame, entries: pd.DataFrame, race_id: int, rule: str) -> None:
    race = races["race_id"] == race_id
    rows = entries.index[entries["race_id"] == race_id]
    first, second = rows[0], rows[1]
    if rule == VENUE_RULE:
        races.loc[race, "venue_code"] = 25
    elif rule == RACE_NO_RULE:
        races.loc[race, "race_no"] = 13
    elif rule == LANE_RULE:
        entries.loc[first, "lane"] = 7
    elif rule == FINISH_RULE:
        entries.loc[first, "finish_position"] = 7
    elif rule == CLASS_RULE:
        entries.loc[first, "racer_class"] = "C1"
    elif rule == ODDS_RULE:
        entries.loc[first, "win_odds"] = 0.0
    elif rule == UNIQUE_RACER_RULE:
        entries.loc[first, "racer_id"] = entries.loc[second, "racer_id"]
    else:
        raise ValueError(f"no way to break {rule!r}")


def load(url: str, data: SyntheticData) -> None:
    """Replace the `races` and `race_entries` tables at `url` with `data` (bulk inserts).

    A MySQL database that does not exist yet is created.
    """
    location = SourceLocation.from_url(url)
    if location.kind == "sqlite":
        path = Path(location.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        connection, schema, marker = sqlite3.connect(path), SQLITE_SCHEMA, "?"
    else:
        create_mysql_database(location)
        connection, schema, marker = connect(location), MYSQL_SCHEMA, "%s"
    with contextlib.closing(connection):
        cursor = connection.cursor()
        cursor.execute("DROP TABLE IF EXISTS race_entries")
        cursor.execute("DROP TABLE IF EXISTS races")
        for statement in schema:
            cursor.execute(statement)
        _insert(cursor, "races", data.races[SOURCE_RACES_COLUMNS], marker)
        _insert(cursor, "race_entries", data.entries[SOURCE_RACE_ENTRIES_COLUMNS], marker)
        connection.commit()


def append(url: str, data: SyntheticData) -> None:
    """Add the rows of `data` to the tables at `url`, as a new race day arrives."""
    location = SourceLocation.from_url(url)
    if location.kind == "sqlite":
        connection, marker = sqlite3.connect(location.database), "?"
    else:
        connection, marker = connect(location), "%s"
    with contextlib.closing(connection):
        cursor = connection.cursor()
        _insert(cursor, "races", data.races[SOURCE_RACES_COLUMNS], marker)
        _insert(cursor, "race_entries", data.entries[SOURCE_RACE_ENTRIES_COLUMNS], marker)
        connection.commit()


def create_mysql_database(location: SourceLocation) -> None:
    server = dataclasses.replace(location, database="mysql")
    with contextlib.closing(connect(server)) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{location.database}`")


def _insert(cursor, table: str, frame: pd.DataFrame, marker: str, chunk: int = 10_000) -> None:
    frame = frame.copy()
    if "race_date" in frame:
        frame["race_date"] = frame["race_date"].dt.strftime("%Y-%m-%d")
    rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
    statement = (
        f"INSERT INTO {table} ({', '.join(frame.columns)})"
        f" VALUES ({', '.join([marker] * len(frame.columns))})"
    )
    batch = list(itertools.islice(rows, chunk))
    while batch:
        cursor.executemany(statement, batch)
        batch = list(itertools.islice(rows, chunk))
