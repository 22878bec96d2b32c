"""A set that asks for a bigger pod: 4 CPUs and 6 GiB for each of its runs."""

from feature_assets.core.feature_set import per_race


@per_race(history_days=30, columns={"racer_starts_30d": "int"}, cpus=4, memory="6Gi")
def heavy(race, history):
    return [{"racer_starts_30d": len(history.racer(r))} for r in race.entries["racer_id"]]
