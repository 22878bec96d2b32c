"""What a feature set is: a name, the days of history it reads, its columns, one function.

A set is written in one of two shapes (see `per_race` and `per_day`); everything else
(the history window, parallelism, checks, storage, Dagster) belongs to the framework. No
Dagster here: a set is plain Python over pandas and can be called directly in a test.

    from feature_assets.core.feature_set import per_race

    @per_race(history_days=180, columns={"racer_wins_180d": "int"})
    def my_features(race, history):
        return [{"racer_wins_180d": sum(e["finish_position"] == 1
                                         for e in history.racer(entry.racer_id))}
                for entry in race.each_entry()]
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Mapping

import pandas as pd

from feature_assets.core import code_version as versions
from feature_assets.core import schema

# The declared column types a set may use, and the stored (contract) dtype of each.
COLUMN_TYPES: dict[str, object] = {
    "int": schema.INT,
    "float": schema.FLOAT,
    "bool": schema.BOOL,
    "string": schema.TEXT,
}
# Every set's table starts with these (the entry's keys), added by the framework.
KEY_COLUMNS: dict[str, object] = {
    "race_id": schema.INT,
    "lane": schema.INT,
    "racer_id": schema.INT,
    "race_date": schema.DATE,
}
# Columns a set may ask the framework to copy from day D's full rows, after its function
# ran: its function never sees D's results, but a training table needs the label.
PASS_THROUGH_COLUMNS: dict[str, object] = {
    "venue_code": schema.INT,
    "race_no": schema.INT,
    "finish_position": schema.INT,
    "is_win": schema.BOOL,
}
# The stages a set may predict at (schema.STAGES): a set that waited for `result` would
# predict nothing.
PREDICTION_STAGES = ("card", "close")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MEMORY = re.compile(r"^[1-9][0-9]*(Mi|Gi)$")


class FeatureSetDefinitionError(ValueError):
    """A set's declaration is wrong; the message names the set and the field."""


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """A declared feature set. Call it like its function: `my_set(race, history)`."""

    name: str
    per: str  # "race" or "day"
    function: Callable
    history_days: int
    columns: Mapping[str, str]
    pass_through: tuple[str, ...] = ()
    cpus: float = 1.0
    memory: str = "2Gi"
    description: str = ""
    batch_days: bool = False
    version: str | None = None  # declared by hand: the set's days are stale when it changes
    stage: str = "card"  # when it predicts: it sees day D's columns known by then

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append("name must be lower_snake_case (a-z, 0-9, _), at most 63 characters")
        if self.name in ("raw_races", "raw_race_entries"):
            problems.append("name is taken by a raw asset")
        if not isinstance(self.history_days, int) or not 0 <= self.history_days <= 3660:
            problems.append("history_days must be a whole number of days in 0..3660")
        if not self.columns:
            problems.append("columns must name at least one output column")
        for column, kind in self.columns.items():
            if kind not in COLUMN_TYPES:
                problems.append(
                    f"column {column!r}: type {kind!r} is not one of {list(COLUMN_TYPES)}"
                )
            if column in KEY_COLUMNS or column in PASS_THROUGH_COLUMNS:
                problems.append(f"column {column!r} is added by the framework; do not declare it")
        for column in self.pass_through:
            if column not in PASS_THROUGH_COLUMNS:
                problems.append(
                    f"pass_through {column!r} is not one of {list(PASS_THROUGH_COLUMNS)}"
                )
        if self.stage not in PREDICTION_STAGES:
            problems.append(f"stage must be one of {list(PREDICTION_STAGES)}")
        if self.batch_days and self.per != "day":
            problems.append("batch_days is for per-day sets only")
        if not 0.25 <= self.cpus <= 64:
            problems.append("cpus must be between 0.25 and 64")
        if not _MEMORY.match(self.memory):
            problems.append("memory must be a Kubernetes quantity like 2Gi or 512Mi")
        if problems:
            raise FeatureSetDefinitionError(f"feature set {self.name!r}: " + "; ".join(problems))

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    @property
    def output_columns(self) -> dict[str, object]:
        """The stored table's columns and dtypes: keys, pass-through, then the set's own."""
        return {
            **KEY_COLUMNS,
            **{c: PASS_THROUGH_COLUMNS[c] for c in self.pass_through},
            **{c: COLUMN_TYPES[kind] for c, kind in self.columns.items()},
        }

    @functools.cached_property
    def output_dtypes(self) -> dict[str, object]:
        return {c: pd.api.types.pandas_dtype(t) for c, t in self.output_columns.items()}

    @functools.cached_property
    def code_version(self) -> str:
        """The declared `version`, else a hash of the set's parsed code: its function, its
        declaration and the top-level helpers, constants and imports of its module that it
        uses (`code_version.py`); comments, docstrings and formatting do not change it."""
        return self.version or versions.code_version(self.function)

    @functools.cached_property
    def current_versions(self) -> frozenset[str]:
        """Versions whose stored days are current: `code_version`, and the hash of the
        module's text that this project recorded before it parsed the code (while that
        text is unchanged, the days it tagged were computed by this very code)."""
        if self.version:
            return frozenset({self.version})
        return frozenset({self.code_version, versions.text_version(self.function)})


def _declare(
    per,
    name,
    history_days,
    columns,
    pass_through,
    cpus,
    memory,
    version,
    stage,
    batch_days=False,
):
    def decorate(function: Callable) -> FeatureSet:
        return FeatureSet(
            name=name or function.__name__,
            per=per,
            function=function,
            history_days=history_days,
            columns=dict(columns),
            pass_through=tuple(pass_through),
            cpus=float(cpus),
            memory=memory,
            description=inspect.cleandoc(function.__doc__ or ""),
            batch_days=batch_days,
            version=None if version is None else str(version),
            stage=stage,
        )

    return decorate


def per_race(
    *,
    history_days: int,
    columns: Mapping[str, str],
    name: str | None = None,
    pass_through: tuple[str, ...] = (),
    cpus: float = 1,
    memory: str = "2Gi",
    version: str | None = None,
    stage: str = "card",
) -> Callable[[Callable], FeatureSet]:
    """Declares a set computed one race at a time: `function(race, history)`.

    `race` is a `Race` of day D (its row and its entries, with the columns known at the
    set's `stage`) and `history` a `History` of the days D-history_days .. D-1 with lookups
    by racer, motor and venue+lane. It returns one row per entry, in the order of
    `race.entries`: a list of dicts or a DataFrame with the declared `columns` ("int",
    "float", "bool", "string").
    `cpus` and `memory` are what a run of the set asks of a Kubernetes node. `version`, if
    given, replaces the hash of the code (`FeatureSet.code_version`): the set's stored days
    turn stale when you change it, and only then.

    `stage` is when the set predicts (`schema.KNOWN_AT`): at `card` (the default) day D's
    rows hold only the race card (no weather, exhibition times, odds or results); at
    `close` they also hold what is known just before the race (weather, exhibition times,
    `win_odds`). Results are never there. History holds every column.
    """
    return _declare("race", name, history_days, columns, pass_through, cpus, memory, version, stage)


def per_day(
    *,
    history_days: int,
    columns: Mapping[str, str],
    name: str | None = None,
    pass_through: tuple[str, ...] = (),
    cpus: float = 1,
    memory: str = "2Gi",
    batch_days: bool = False,
    version: str | None = None,
    stage: str = "card",
) -> Callable[[Callable], FeatureSet]:
    """Declares a vectorised set computed one day at a time: `function(day, history)`.

    `day` is a `Day` (D's valid races and their entries, at the set's `stage`) and `history` a
    `History` of D-history_days .. D-1 (frames, lookups, `window_sums`). It returns a
    DataFrame with one row per row of `day.entries`, in the same order.

    `batch_days=True` lets the framework hand the function many days at once, which saves
    the per-call cost of pandas (ten years: seconds instead of half a minute). For a set
    whose history comes only from `history.window_sums` and whose other columns are per
    row or per race: `day.entries` then holds the entries of several days, each row's
    window ends the day before its own `race_date`, and the history's frames and lookups
    raise (they have no single day D). The values are the same as one day at a time.
    `stage` as for `per_race`.
    """
    return _declare(
        "day", name, history_days, columns, pass_through, cpus, memory, version, stage, batch_days
    )


def empty_output(feature_set: FeatureSet) -> pd.DataFrame:
    return schema.typed_frame(
        {c: [] for c in feature_set.output_columns}, feature_set.output_columns
    )
