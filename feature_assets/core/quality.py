"""The contract's invalid-race rules, checked for many days at once.

Finish positions may repeat within a race: a dead heat (two boats sharing a place) is a real
result, and each boat of a dead heat for 1st is a winner."""

from __future__ import annotations

import pandas as pd

RACER_CLASSES = ("A1", "A2", "B1", "B2")

VENUE_RULE = "venue_code must be in 1..24"
RACE_NO_RULE = "race_no must be in 1..12"
LANE_RULE = "lane must be in 1..6"
FINISH_RULE = "finish_position must be NULL or in 1..6"
CLASS_RULE = "racer_class must be one of A1, A2, B1, B2"
ODDS_RULE = "win_odds must be NULL or > 0"
UNIQUE_LANE_RULE = "lanes must be unique within a race"
UNIQUE_RACER_RULE = "racers must be unique within a race"

RULES = (
    VENUE_RULE,
    RACE_NO_RULE,
    LANE_RULE,
    FINISH_RULE,
    CLASS_RULE,
    ODDS_RULE,
    UNIQUE_LANE_RULE,
    UNIQUE_RACER_RULE,
)


class InvalidRacesError(ValueError):
    """Raised for days whose races break the contract; names every day, race_id and rule."""

    def __init__(self, violations: pd.DataFrame):
        self.violations = violations
        super().__init__(describe_violations(violations))

    @property
    def invalid_days(self) -> list[str]:
        return sorted(self.violations["race_date"].dt.strftime("%Y-%m-%d").unique())


def _outside(values: pd.Series, low: int, high: int) -> pd.Series:
    # A NULL where the schema forbids one breaks the rule as well.
    return ~values.between(low, high).fillna(False).astype(bool)


def _duplicated_within_race(entries: pd.DataFrame, column: str) -> pd.Series:
    present = entries[column].notna()
    return present & entries.duplicated(["race_id", column], keep=False)


def find_invalid_races(races: pd.DataFrame, entries: pd.DataFrame) -> pd.DataFrame:
    """One row per (race, broken rule): columns race_id, race_date, rule.

    `entries` of races absent from `races` are ignored: they belong to no day.
    """
    race_checks = {
        VENUE_RULE: _outside(races["venue_code"], 1, 24),
        RACE_NO_RULE: _outside(races["race_no"], 1, 12),
    }
    entry_checks = {
        LANE_RULE: _outside(entries["lane"], 1, 6),
        FINISH_RULE: entries["finish_position"].notna()
        & _outside(entries["finish_position"], 1, 6),
        CLASS_RULE: ~entries["racer_class"].isin(RACER_CLASSES).fillna(False).astype(bool),
        ODDS_RULE: entries["win_odds"].notna() & ~(entries["win_odds"] > 0),
        UNIQUE_LANE_RULE: _duplicated_within_race(entries, "lane"),
        UNIQUE_RACER_RULE: _duplicated_within_race(entries, "racer_id"),
    }
    found = [
        pd.DataFrame({"race_id": races.loc[failed, "race_id"], "rule": rule})
        for rule, failed in race_checks.items()
    ] + [
        pd.DataFrame({"race_id": entries.loc[failed, "race_id"], "rule": rule})
        for rule, failed in entry_checks.items()
    ]
    violations = pd.concat(found, ignore_index=True).drop_duplicates()
    violations = violations.merge(races[["race_id", "race_date"]], on="race_id", how="inner")
    violations["rule_order"] = violations["rule"].map({rule: i for i, rule in enumerate(RULES)})
    violations = violations.sort_values(["race_date", "race_id", "rule_order"])
    return violations[["race_id", "race_date", "rule"]].reset_index(drop=True)


def describe_violations(violations: pd.DataFrame) -> str:
    """A message naming every invalid day, race_id and the rules each race broke."""
    days = violations["race_date"].dt.strftime("%Y-%m-%d")
    day_list = ", ".join(sorted(days.unique()))
    lines = [
        f"invalid races on {days.nunique()} day(s): {day_list}"
        f" ({violations['race_id'].nunique()} race(s)); no features are written for them:"
    ]
    for day, of_day in violations.groupby(days, sort=True):
        lines.append(f"  {day}:")
        for race_id, of_race in of_day.groupby("race_id", sort=True):
            lines.append(f"    race_id {race_id}: {'; '.join(of_race['rule'])}")
    return "\n".join(lines)
