"""feature_assets: point-in-time race features as daily-partitioned Dagster assets."""

import pyarrow as _pyarrow

# Arrow allocates from the C library's malloc, as numpy and pandas do, so that memory one
# frees the other reuses, and `release_unused()` (malloc_trim) hands it back to the system
# after a big read: ten years of raw days read back took 500 MB of RSS for 170 MB of frames
# with Arrow's own mimalloc pool, 190 MB this way.
_pyarrow.set_memory_pool(_pyarrow.system_memory_pool())
