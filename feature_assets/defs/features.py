"""One daily-partitioned asset per feature set (Dagster wiring only; the engine computes).

Each asset reads the raw days D-history_days .. D, runs its set on the run's worker
processes, writes each day as soon as it is done, and records each written day as
materialised. Its code version is a hash of the set's source, so editing one set makes only
that set's days stale.

A day that fails (an invalid race, an exception in the set's code, rows that do not match
the declaration, a worker that died) has no file afterwards and is named in the failure
with its cause; the other days of the run are written and recorded, so partition status
ends with exactly the bad days failed.
"""

import time
from collections.abc import Sequence

import pandas as pd
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)
from dagster._core.definitions.data_version import CODE_VERSION_TAG
from dagster._core.storage.tags import RETRY_ON_ASSET_OR_OP_FAILURE_TAG

from feature_assets import settings
from feature_assets.core.dates import compact_days
from feature_assets.core.day_errors import ERRORS_BY_DAY, INVALID_RACES_BY_DAY, day_cause
from feature_assets.core.engine import INVALID_RACES, WORKER_DIED, Outcome, run_days
from feature_assets.core.feature_set import FeatureSet, empty_output
from feature_assets.core.summaries import feature_facts_by_day, feature_summary
from feature_assets.defs.checks import check_result, feature_rows_by_day, log_day_evaluations
from feature_assets.defs.day_metadata import add_metadata_by_day
from feature_assets.io.memory import release_unused_memory
from feature_assets.io.storage import ReadInputs, StoredDays
from feature_assets.partitions import backfill_policy, daily_partitions, require_days

DAYS_DESCRIBED = 50  # failed days a failure's description tells one by one
SUPERSEDED = "raw history replaced meanwhile"  # a failure kind beside the engine's
# failures that may not happen again (a preempted node, memory, a concurrent correction);
# invalid data and a set's own exceptions fail the same way every time
TRANSIENT = (WORKER_DIED, SUPERSEDED)


def check_spec(feature_set: FeatureSet) -> AssetCheckSpec:
    return AssetCheckSpec(
        "one_row_per_valid_entry",
        asset=feature_set.name,
        partitions_def=daily_partitions,
        description="The day's rows equal the entries of its valid races.",
    )


def feature_set_asset(feature_set: FeatureSet, workers: int | None = None) -> AssetsDefinition:
    """The set's daily asset. Its runs compute on `workers` processes (default: the
    settings' FEATURE_ASSETS_WORKERS, else the CPUs the loading process may use: in a run
    pod, the pod's), fixed when the code location loads."""
    workers = workers or settings.workers()
    history = TimeWindowPartitionMapping(start_offset=-feature_set.history_days)
    spec = check_spec(feature_set)

    @asset(
        name=feature_set.name,
        partitions_def=daily_partitions,
        backfill_policy=backfill_policy(),
        ins={
            "raw_races": AssetIn(partition_mapping=history),
            "raw_race_entries": AssetIn(partition_mapping=history),
        },
        required_resource_keys={"io_manager"},
        group_name="features",
        code_version=feature_set.code_version,
        description=feature_set.description or f"The {feature_set.name} feature set.",
        check_specs=[spec],
        metadata={
            "history_days": feature_set.history_days,
            "computed": f"per {feature_set.per}",
            "columns": MetadataValue.json(dict(feature_set.columns)),
            "cpus": feature_set.cpus,
            "memory": feature_set.memory,
        },
    )
    def compute(context: AssetExecutionContext, raw_races: pd.DataFrame, raw_race_entries):
        days = require_days(context)
        writer = _DayWriter(context, feature_set, raw_race_entries)
        processes = min(workers, len(days))
        context.log.info(f"{feature_set.name}: {len(days)} day(s) on {processes} worker(s)")
        outcomes = run_days(
            feature_set, raw_races, raw_race_entries, days, processes, writer.on_result, False
        )
        release_unused_memory()  # the run's history, freed, back to the system
        writer.flush()
        failed = [outcome for outcome in outcomes if not outcome.ok] + writer.superseded
        features = writer.features()
        written = sorted(writer.written)
        metadata = day_metadata(feature_set, features, raw_races, raw_race_entries, written, writer)
        outcomes = feature_rows_by_day(features, raw_races, raw_race_entries, written)
        if failed:
            for day in written:
                context.log_event(
                    AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=day,
                        metadata=metadata[day],
                        tags={CODE_VERSION_TAG: feature_set.code_version},  # as Output has
                    )
                )
            log_day_evaluations(context, spec, outcomes)
            report_failed_days(context, failed)
            if any(outcome.failure in TRANSIENT for outcome in failed):
                # the instance retries runs lost to a crash, not runs whose step failed
                # (bad data fails again); a dead worker or a superseded day is the former
                context.instance.add_run_tags(
                    context.run.run_id, {RETRY_ON_ASSET_OR_OP_FAILURE_TAG: "true"}
                )
                context.log.warning("days failed for a cause that may pass: run retries redo them")
            raise _failure(feature_set, failed)
        add_metadata_by_day(context, context.asset_key, metadata)
        yield Output(StoredDays(feature_set.name, tuple(days), len(features)))
        yield check_result(context, spec, outcomes)

    return compute


class _DayWriter:
    """Stores the days as their outcomes arrive, unless a raw day they read was replaced since
    it was read. Days are committed together at most every FLUSH_SECONDS (each commit
    checks the snapshot times of the raw days its days read), so a slow set writes each day
    as it is done and a fast one does not pay that check per day."""

    FLUSH_SECONDS = 10.0
    FLUSH_DAYS = 366  # days per write at most: its copies (concat, Arrow) stay a year's size

    def __init__(self, context, feature_set: FeatureSet, raw_race_entries: pd.DataFrame):
        self.context = context
        self.feature_set = feature_set
        self.storage = context.resources.io_manager.storage
        self.stamps = raw_race_entries.attrs.get("snapshot_at", {})
        self.frames: list[pd.DataFrame] = []
        self.written: set[str] = set()
        self.superseded: list[Outcome] = []
        self.seconds_per_race: dict[str, float] = {}
        self.buffer: list[Outcome] = []
        self.flushed_at = time.monotonic()

    def on_result(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self.storage.delete_days(self.feature_set.name, outcome.days)  # would read as current
            self.context.log.error(outcome.error)
            return
        self.buffer.append(outcome)
        if time.monotonic() - self.flushed_at >= self.FLUSH_SECONDS:
            self.flush()

    def _inputs(self, days: list[str]) -> ReadInputs:
        width = pd.Timedelta(days=self.feature_set.history_days)
        first, last = pd.Timestamp(min(days)) - width, pd.Timestamp(max(days))
        read = {
            day: stamp for day, stamp in self.stamps.items() if first <= pd.Timestamp(day) <= last
        }

        def readers(raw_day: str) -> list[str]:
            start = pd.Timestamp(raw_day)
            return [d for d in days if pd.Timedelta(0) <= pd.Timestamp(d) - start <= width]

        return ReadInputs("raw_race_entries", read, readers)

    def flush(self) -> None:
        self.flushed_at = time.monotonic()
        outcomes, self.buffer = self.buffer, []
        chunks: list[list[Outcome]] = [[]]
        days_in_chunk = 0
        for outcome in outcomes:
            if chunks[-1] and days_in_chunk + len(outcome.days) > self.FLUSH_DAYS:
                chunks.append([])
                days_in_chunk = 0
            chunks[-1].append(outcome)
            days_in_chunk += len(outcome.days)
        for chunk in chunks:
            if chunk:
                self._write(chunk)

    def _write(self, outcomes: list[Outcome]) -> None:
        name = self.feature_set.name
        days = [day for outcome in outcomes for day in outcome.days]
        rows = pd.concat([outcome.rows for outcome in outcomes], ignore_index=True)
        superseded = set(self.storage.write_tables({name: rows}, days, inputs=self._inputs(days)))
        for day in sorted(superseded):
            self.superseded.append(Outcome.failed(day, _superseded(name, day), SUPERSEDED))
        if superseded:
            rows = rows[~rows["race_date"].isin(pd.to_datetime(sorted(superseded)))]
        self.frames.append(rows)
        for outcome in outcomes:
            kept = [day for day in outcome.days if day not in superseded]
            self.written.update(kept)
            if outcome.races:
                self.seconds_per_race.update(dict.fromkeys(kept, outcome.seconds / outcome.races))

    def features(self) -> pd.DataFrame:
        """The written rows in one frame; the writer lets go of its pieces."""
        frames, self.frames = self.frames, []
        if not frames:
            return empty_output(self.feature_set)
        return pd.concat(frames, ignore_index=True)


ERROR_SHOWN = 4000  # characters of a day's error (a traceback) kept in its observation
FAILED_DAY = "not materialised"  # how a failed day's observation begins


def report_failed_days(context: AssetExecutionContext, failed: Sequence[Outcome]) -> None:
    """An observation of each failed day holding its cause in the words `feature-assets
    status` prints, so that the day's page in the UI says why: under its historical events
    (and beside its metadata when an older materialisation stands), and in the asset's
    Events tab. Dagster 1.13's "failed to materialize" event would fit better, but its own
    event logs do not store one (`can_store_asset_failure_events` is false)."""
    for outcome in failed:
        day = outcome.days[0]
        words = day_cause(outcome.error, day)
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=day,
                description=f"{FAILED_DAY}: {words.example}",
                metadata={
                    "failed": MetadataValue.text(words.example),
                    "cause": MetadataValue.text(words.cause),
                    "kind": MetadataValue.text(outcome.failure or "failed"),
                    "error": MetadataValue.md(f"```\n{outcome.error[:ERROR_SHOWN]}\n```"),
                },
            )
        )


def _superseded(name: str, day: str) -> str:
    return (
        f"feature set {name}, day {day}: raw days it read were replaced by a newer snapshot"
        " while this run computed it; not written (the run that stored the newer snapshot,"
        f" or the correction sensor, recomputes it; or run feature-assets backfill --days"
        f" {day} --assets {name} --wait)"
    )


def _failure(feature_set: FeatureSet, failed: list[Outcome]) -> Failure:
    """A failure naming each failed day (each failed outcome is one day's) and its cause."""
    errors = {outcome.days[0]: outcome for outcome in failed}
    days = sorted(errors)
    invalid = {
        day: [line.strip() for line in o.error.splitlines() if line.strip().startswith("race_id")]
        for day, o in errors.items()
        if o.failure == INVALID_RACES
    }
    first_lines = {day: errors[day].error.splitlines()[0] for day in days}
    # invalid races in full (day, race_id, rule); other errors by their first line, the
    # traceback is in the run's log
    accounts = [
        errors[day].error if errors[day].failure == INVALID_RACES else first_lines[day]
        for day in days[:DAYS_DESCRIBED]
    ]
    if len(days) > DAYS_DESCRIBED:
        accounts.append(f"... and {len(days) - DAYS_DESCRIBED} more day(s): {compact_days(days)}")
    return Failure(
        description=_headline(feature_set, [errors[day] for day in days])
        + "\n"
        + "\n".join(accounts),
        metadata={
            "failed_days": MetadataValue.text(compact_days(days)),
            "errors": MetadataValue.md(
                "\n\n".join(f"```\n{errors[day].error}\n```" for day in days[:20])
            ),
            INVALID_RACES_BY_DAY: MetadataValue.json(invalid),
            ERRORS_BY_DAY: MetadataValue.json(first_lines),
        },
        allow_retries=any(o.failure in TRANSIENT for o in errors.values()),
    )


def _headline(feature_set: FeatureSet, failed: list[Outcome]) -> str:
    """The failure's first line, which alerts and `status` show: each kind of failure with
    its days, e.g. `invalid races on 1 day(s): 2024-01-16; race_features is not written
    for them`."""
    by_kind: dict[str, list[str]] = {}
    for outcome in failed:
        by_kind.setdefault(outcome.failure, []).extend(outcome.days)
    kinds = "; ".join(
        f"{kind} on {len(days)} day(s): {compact_days(days)}" for kind, days in by_kind.items()
    )
    return f"{kinds}; {feature_set.name} is not written for them"


SUMMARY_SCHEMA = TableSchema(
    columns=[
        TableColumn("feature", "string"),
        TableColumn("null_share", "float"),
        TableColumn("mean", "float"),
        TableColumn("min", "float"),
        TableColumn("max", "float"),
    ]
)


def day_metadata(
    feature_set: FeatureSet,
    features: pd.DataFrame,
    races: pd.DataFrame,
    entries: pd.DataFrame,
    days: list[str],
    writer: _DayWriter,
) -> dict[str, dict]:
    """Each day's materialisation metadata (rows, races, NULL shares, the set's CPU seconds
    per race, averaged over a batch for batch_days sets);
    the run's last day also gets the summary table."""
    if not days:
        return {}
    columns = list(feature_set.columns)
    facts = feature_facts_by_day(features, races, entries, days, columns)
    metadata = {
        day: {name: value for name, value in row.items() if pd.notna(value)}
        for day, row in zip(facts.index, facts.to_dict("records"), strict=True)
    }
    for day, seconds_per_race in writer.seconds_per_race.items():
        metadata[day]["seconds_per_race"] = round(seconds_per_race, 6)
    last = max(days)
    of_last_day = features[features["race_date"] == pd.Timestamp(last)]
    metadata[last]["summary"] = summary_table(feature_summary(of_last_day, columns))
    return metadata


def summary_table(summary: pd.DataFrame) -> MetadataValue:
    records = [
        TableRecord({k: (None if pd.isna(v) else v) for k, v in row.items()})
        for row in summary.to_dict("records")
    ]
    return MetadataValue.table(records, schema=SUMMARY_SCHEMA)
