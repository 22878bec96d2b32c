"""Lists of days for people to read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def day_labels(dates: pd.Series) -> np.ndarray:
    """'YYYY-MM-DD' for each date (midnight timestamps), without strftime's per-row cost."""
    return dates.to_numpy(dtype="datetime64[D]").astype("U10")


def day_ranges(days: Sequence[str]) -> list[tuple[str, str]]:
    """Sorted days as (first, last) runs of consecutive days."""
    stamps = sorted(pd.to_datetime(list(set(days))))
    ranges: list[tuple[str, str]] = []
    for stamp in stamps:
        if ranges and stamp - pd.Timestamp(ranges[-1][1]) == pd.Timedelta(days=1):
            ranges[-1] = (ranges[-1][0], stamp.strftime("%Y-%m-%d"))
        else:
            ranges.append((stamp.strftime("%Y-%m-%d"),) * 2)
    return ranges


def compact_days(days: Sequence[str], separator: str = ", ") -> str:
    """'2024-01-01...2024-01-03, 2024-02-10': sorted days, consecutive ones as ranges.

    With `separator=","` it is the form `feature-assets backfill --days` takes.
    """
    if not days:
        return "none"
    return separator.join(
        first if first == last else f"{first}...{last}" for first, last in day_ranges(days)
    )
