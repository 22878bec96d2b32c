"""Deprecated home of the feature-set API, kept for one release: sets written as
`from feature_assets.racing.feature_set import per_race` still load (with a warning).
Write `from feature_assets import per_race, per_day`."""
