"""One partition per race day (Asia/Tokyo calendar), and how backfills split into runs."""

from __future__ import annotations

import warnings

from dagster import (
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
)

from feature_assets import settings

# Backfill policies are a Dagster beta feature that this design is built on.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy")

daily_partitions = DailyPartitionsDefinition(
    start_date=settings.start_date(), timezone="Asia/Tokyo", fmt="%Y-%m-%d"
)
# The race-day assets start where predicting started, so that the UI and `status` do not
# show years never predicted as missing. Predictions: today and tomorrow too, since a race
# card is published the day before; their results: days that have ended.
prediction_days = DailyPartitionsDefinition(
    start_date=settings.predict_start_date(), timezone="Asia/Tokyo", fmt="%Y-%m-%d", end_offset=2
)
measured_days = DailyPartitionsDefinition(
    start_date=settings.predict_start_date(), timezone="Asia/Tokyo", fmt="%Y-%m-%d"
)


def backfill_policy() -> BackfillPolicy:
    """One run for a whole range unless FEATURE_ASSETS_DAYS_PER_RUN asks for smaller runs.

    One run reads the source once and pays Dagster's per-run start-up once; it is also the
    only policy `dagster asset materialize --partition-range` accepts. A cluster that should
    spread a long backfill over many pods sets FEATURE_ASSETS_DAYS_PER_RUN.
    """
    days = settings.days_per_run()
    return BackfillPolicy.single_run() if days is None else BackfillPolicy.multi_run(days)


def require_days(context) -> list[str]:
    """The run's days, sorted; a clear error when there are none (a reversed range)."""
    days = sorted(context.partition_keys)
    if not days:
        range_ = context.partition_key_range if context.has_partition_key_range else None
        raise ValueError(
            "the run covers no days"
            + (f": its range {range_.start}...{range_.end} is reversed" if range_ else "")
            + "; give ranges as FIRST...LAST with FIRST not after LAST"
        )
    return days
