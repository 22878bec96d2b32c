"""Stale days in the UI: a check per feature set, `computed_by_current_code`, that warns while
any stored day was computed by other code than the set's current code version.

Dagster 1.13 marks a partitioned asset "Unsynced" per day only, on the day's own page; the
catalog and the asset's page show each day green. The check puts the count and the ranges
of stale days on the asset itself (its Checks tab, the badge in the catalog and the graph).
The `stale_days_check` sensor evaluates it when a set's code version or its stored days
change (no run: the evaluation is reported from the sensor, as Dagster allows for checks
outside runs); the UI's "Execute" on the check evaluates it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    sensor,
)

from feature_assets.core.dates import compact_days
from feature_assets.core.feature_set import FeatureSet
from feature_assets.feature_sets import registered_sets
from feature_assets.ops.status import stale_days

CHECK_NAME = "computed_by_current_code"
FIX = "feature-assets backfill --stale --wait"


def evaluation(instance: DagsterInstance, feature_set: FeatureSet) -> tuple[bool, dict]:
    """(passed, metadata) of the check for `feature_set` now."""
    stale = stale_days(instance, feature_set)
    metadata = {"stale_days": len(stale), "code_version": feature_set.code_version}
    if stale:
        metadata |= {"days": compact_days(stale)[:2000], "to_fix": FIX}
    return not stale, metadata


def stale_days_check(feature_set: FeatureSet):
    @asset_check(
        asset=AssetKey(feature_set.name),
        name=CHECK_NAME,
        blocking=False,
        description=(
            "Warns while stored days of the set were computed by other code than its current"
            f" version; `{FIX}` recomputes them."
        ),
    )
    def check(context) -> AssetCheckResult:
        passed, metadata = evaluation(context.instance, feature_set)
        return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.WARN, metadata=metadata)

    return check


def _state(instance: DagsterInstance, feature_set: FeatureSet) -> list:
    """What the check's outcome depends on: the code version and the latest stored day."""
    latest = instance.get_latest_storage_id_by_partition(
        AssetKey(feature_set.name), DagsterEventType.ASSET_MATERIALIZATION
    )
    return [feature_set.code_version, max(latest.values(), default=0)]


@sensor(
    name="stale_days_check",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,  # reads the instance only: no run, no source
    description=(
        "Evaluates each feature set's `computed_by_current_code` check when its code version"
        " or its stored days change, so that stale days show on the asset in the UI."
    ),
)
def stale_days_sensor(context: SensorEvaluationContext):
    seen = json.loads(context.cursor) if context.cursor else {}
    events, now = check_evaluations(context.instance, registered_sets(), seen)
    if not events:
        return SkipReason("no feature set's code or stored days changed")
    return SensorResult(asset_events=events, cursor=json.dumps(now))


def check_evaluations(
    instance: DagsterInstance, sets: Sequence[FeatureSet], seen: dict
) -> tuple[list[AssetCheckEvaluation], dict]:
    """The check's evaluation for each of `sets` whose state changed since `seen` (a
    sensor's cursor), and the state now."""
    events, now = [], {}
    for feature_set in sets:
        now[feature_set.name] = _state(instance, feature_set)
        if seen.get(feature_set.name) == now[feature_set.name]:
            continue
        passed, metadata = evaluation(instance, feature_set)
        events.append(
            AssetCheckEvaluation(
                asset_key=AssetKey(feature_set.name),
                check_name=CHECK_NAME,
                passed=passed,
                severity=AssetCheckSeverity.WARN,
                metadata=metadata,
            )
        )
    return events, now
