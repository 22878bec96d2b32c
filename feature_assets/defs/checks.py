"""Per-day asset checks, evaluated inside the asset steps.

A run of one day reports an ordinary check result. A ranged run records one evaluation per
day (so the UI shows each day's outcome) and a result summing up the run.
"""

import warnings
from collections.abc import Sequence

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    PreviewWarning,
)

from feature_assets.core.dates import compact_days, day_labels
from feature_assets.core.quality import find_invalid_races
from feature_assets.partitions import daily_partitions

# Partitioned checks are a Dagster preview feature: we rely on it knowingly.
warnings.filterwarnings(
    "ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec"
)

NO_INVALID_RACES = AssetCheckSpec(
    "no_invalid_races",
    asset="raw_races",
    partitions_def=daily_partitions,
    description="The day's races all pass the contract's rules (a warning lists those that don't).",
)


EVERY_DAY_UP_TO = 366  # days of a run whose passing evaluations are recorded one by one


def _by_day(dates: pd.Series) -> pd.Series:
    return pd.Series(day_labels(dates), index=dates.index)


def log_day_evaluations(
    context: AssetExecutionContext,
    spec: AssetCheckSpec,
    outcomes: dict[str, tuple[bool, dict]],
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> None:
    """Records each day's evaluation: every day of a run of up to EVERY_DAY_UP_TO days,
    and only the failing days of a longer run (each evaluation is one more event to store,
    7,300 for a ten-year run: minutes of bookkeeping for days whose check passed)."""
    record_all = len(outcomes) <= EVERY_DAY_UP_TO
    for day, (passed, metadata) in outcomes.items():
        if record_all or not passed:
            context.log_event(
                AssetCheckEvaluation(
                    asset_key=spec.asset_key,
                    check_name=spec.name,
                    passed=passed,
                    severity=severity,
                    metadata=metadata,
                    partition=day,
                )
            )


def check_result(
    context: AssetExecutionContext,
    spec: AssetCheckSpec,
    outcomes: dict[str, tuple[bool, dict]],
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> AssetCheckResult:
    """The check's result for the run; in a ranged run, the days' evaluations are logged too."""
    if len(outcomes) == 1 and not context.has_partition_key_range:
        [(passed, metadata)] = outcomes.values()
        return AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=passed,
            severity=severity,
            metadata=metadata,
        )
    log_day_evaluations(context, spec, outcomes, severity)
    failing = [day for day, (passed, _) in outcomes.items() if not passed]
    return AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=not failing,
        severity=severity,
        metadata={"days": len(outcomes), "failing_days": compact_days(failing)},
    )


def invalid_races_by_day(
    races: pd.DataFrame, entries: pd.DataFrame, days: Sequence[str]
) -> dict[str, tuple[bool, dict]]:
    violations = find_invalid_races(races, entries)
    days_of_violations = _by_day(violations["race_date"])
    outcomes = {}
    for day in days:
        of_day = violations[days_of_violations == day]
        outcomes[day] = (
            of_day.empty,
            {
                "invalid_races": of_day["race_id"].nunique(),
                "races": "; ".join(f"{r.race_id}: {r.rule}" for r in of_day.itertuples()),
            },
        )
    return outcomes


def feature_rows_by_day(
    features: pd.DataFrame, races: pd.DataFrame, entries: pd.DataFrame, days: Sequence[str]
) -> dict[str, tuple[bool, dict]]:
    # masks, not filtered copies of the raw frames (a ten-year run's are 150 MB); the rules
    # are per race, so the invalid races of the whole input are those of the days
    invalid = find_invalid_races(races, entries)["race_id"]
    counted = races.loc[_by_day(races["race_date"]).isin(days) & ~races["race_id"].isin(invalid)]
    expected = _by_day(entries.loc[entries["race_id"].isin(counted["race_id"]), "race_date"])
    expected = expected.value_counts()
    actual = _by_day(features["race_date"]).value_counts()
    outcomes = {}
    for day in days:
        rows, wanted = int(actual.get(day, 0)), int(expected.get(day, 0))
        outcomes[day] = (rows == wanted, {"rows": rows, "valid_entries": wanted})
    return outcomes
