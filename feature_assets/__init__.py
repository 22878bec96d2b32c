"""feature_assets: point-in-time race features as daily-partitioned Dagster assets."""

import pyarrow as _pyarrow

# Arrow allocates from the C library's malloc, as numpy and pandas do, so that memory one
# frees the other reuses, and `release_unused_memory()` hands it back to the system after a
# big step: ten years of raw days read back took 500 MB of RSS for 170 MB of frames with
# Arrow's own mimalloc pool, 190 MB this way.
_pyarrow.set_memory_pool(_pyarrow.system_memory_pool())


def release_unused_memory() -> None:
    """malloc_trim: freed memory back to the system. Memory freed in another thread's malloc
    arena (the Parquet writer threads) is otherwise not reused by this one: a ten-year
    feature step peaked 70 MB higher for it."""
    _pyarrow.default_memory_pool().release_unused()


# what a feature set's author imports: `from feature_assets import per_race, per_day`
from feature_assets.core.feature_set import per_day, per_race  # noqa: E402
from feature_assets.io.read import read_features  # noqa: E402

__all__ = ["per_day", "per_race", "read_features", "release_unused_memory"]
