"""feature_assets: point-in-time race features as daily-partitioned Dagster assets.

What a feature set's author imports: `from feature_assets import per_race, per_day`, and
`read_features` to read a set's stored days. Importing the package changes nothing global.
"""

from feature_assets.core.feature_set import per_day, per_race
from feature_assets.io.read import read_features

__all__ = ["per_day", "per_race", "read_features"]
