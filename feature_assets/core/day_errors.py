"""A failed day's cause in words, the same in `feature-assets status` and on the day's page in
the UI: a `cause` shared by days alike (the rules broken, or the error with race ids and pids
as N) and the day's own `example` (its race ids, or its error's first line)."""

from __future__ import annotations

import dataclasses
import re

# metadata of a run's failure, which `status` reads back: {day: ["race_id R: rule; rule", ...]}
# for invalid races, and {day: "first line of the day's error"} for every failed day
INVALID_RACES_BY_DAY = "invalid_races_by_day"
ERRORS_BY_DAY = "errors_by_day"
RACE_IDS_NAMED = 5  # race ids an example names before "and N more"
_INVALID_LINE = re.compile(r"^\s*race_id (\d+): (.+)$")


@dataclasses.dataclass(frozen=True)
class DayCause:
    cause: str
    example: str


def day_cause(error: str, day: str) -> DayCause:
    """The words for a day's error as the engine wrote it (`Outcome.error`): for invalid
    races, the rules broken as the cause and its race ids beside them; otherwise the first
    line without the set and the day (the status and the UI name those already)."""
    first = error.strip().splitlines()[0] if error.strip() else "failed without a message"
    invalid = invalid_races(error) if "invalid races" in first else {}
    if invalid:
        rules = sorted({rule for broken in invalid.values() for rule in broken})
        cause = f"invalid races: {'; '.join(rules)}"
        ids = [f"race_id {race_id}" for race_id in invalid]
        more = len(ids) - RACE_IDS_NAMED
        named = ", ".join(ids[:RACE_IDS_NAMED]) + (f" and {more} more" if more > 0 else "")
        return DayCause(cause, f"{cause} ({named})")
    own = re.sub(rf"^feature set \S+, day {day}(: |, )", "", first)
    return DayCause(re.sub(r"\b(race_id|pid) \d+", r"\1 N", own), own)


def invalid_races(error: str) -> dict[int, list[str]]:
    """{race_id: [rule, ...]} of an invalid-races error's `race_id R: rule; rule` lines."""
    found = {}
    for line in error.splitlines():
        match = _INVALID_LINE.match(line)
        if match:
            found[int(match.group(1))] = match.group(2).split("; ")
    return found
