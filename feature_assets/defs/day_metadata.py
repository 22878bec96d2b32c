"""Per-day metadata of a ranged run's materialisations, recorded in one step.

`context.add_asset_metadata(..., partition_key=day)` lists the run's partition keys and
copies every metadata entry recorded so far on each call (dagster/_core/execution/context/
system.py and metadata_logging.py, 1.13): quadratic in the days of a run, about 50 s for the
three assets of a ten-year run. Here the accumulator that call updates is filled once for
all days; if Dagster's internals change shape, the public call is used instead.
"""

from collections.abc import Mapping

from dagster import AssetExecutionContext, AssetKey
from dagster._core.execution.context.metadata_logging import (
    AssetMetadataHandle,
    OutputMetadataAccumulator,
)


def add_metadata_by_day(
    context: AssetExecutionContext, asset_key: AssetKey, by_day: Mapping[str, Mapping]
) -> None:
    """Adds `by_day[day]` to the materialisation of `asset_key` for each day of the run."""
    unknown = set(by_day) - set(context.partition_keys)
    if unknown:
        raise ValueError(f"metadata for days outside the run: {sorted(unknown)[:5]}")
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not isinstance(accumulator, OutputMetadataAccumulator):
        for day, metadata in by_day.items():
            context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=day)
        return
    recorded = dict(accumulator.per_output_metadata)
    for day, metadata in by_day.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=day)
        recorded[handle] = {**recorded.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=recorded)  # noqa: SLF001
