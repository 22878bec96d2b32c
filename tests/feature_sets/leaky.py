"""A set that reaches around the API: it reads the source itself and looks ahead."""

import contextlib
import os

from feature_assets import settings
from feature_assets.core.feature_set import per_race
from feature_assets.io.source import SourceLocation, connect


@per_race(history_days=30, columns={"racer_wins_from_today": "int"})
def leaky(race, history):
    url = os.environ.get("FEATURE_ASSETS_SOURCE_URL") or settings.default_source_url()
    location = SourceLocation.from_url(url)
    mark = "?" if location.kind == "sqlite" else "%s"
    query = (
        "SELECT COUNT(*) FROM race_entries e JOIN races r ON r.race_id = e.race_id"
        f" WHERE e.racer_id = {mark} AND e.finish_position = 1 AND r.race_date >= {mark}"
    )
    rows = []
    with contextlib.closing(connect(location)) as connection:
        cursor = connection.cursor()
        for entry in race.each_entry():
            cursor.execute(query, (int(entry.racer_id), race.day))
            rows.append({"racer_wins_from_today": cursor.fetchone()[0]})
    return rows
