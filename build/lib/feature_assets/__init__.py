"""feature_assets: point-in-time race features as daily-partitioned Dagster assets."""
