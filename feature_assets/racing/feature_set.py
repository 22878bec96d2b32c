"""Deprecated: `from feature_assets import per_race, per_day` (kept for one release)."""

import warnings

from feature_assets.core.feature_set import FeatureSet, per_day, per_race

warnings.warn(
    "feature_assets.racing.feature_set is deprecated: import per_race and per_day from"
    " feature_assets",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["FeatureSet", "per_day", "per_race"]
