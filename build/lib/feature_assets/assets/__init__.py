"""Dagster wiring of the three daily assets; the maths lives in `feature_assets.racing`."""
