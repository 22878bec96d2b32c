"""Feature sets: one module per set, each declaring one set with `per_race` or `per_day`.

Every module of this package is a set, and so is every module named (comma-separated) by
FEATURE_ASSETS_FEATURE_SETS, so a user can keep theirs in their own package and image.
Each set becomes its own daily-partitioned asset named after it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from feature_assets import settings
from feature_assets.core.feature_set import FeatureSet


class FeatureSetLoadError(ValueError):
    """A module named as a feature set cannot be loaded or declares no set; names it."""


def _sets_of(module_name: str) -> list[FeatureSet]:
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module: say which one failed to import, and why
        raise FeatureSetLoadError(
            f"feature set module {module_name!r} cannot be imported: {type(err).__name__}: {err}"
        ) from err
    found = [value for value in vars(module).values() if isinstance(value, FeatureSet)]
    found = [s for s in found if s.function.__module__ == module.__name__]  # not re-imports
    if not found and hasattr(module, "__path__"):  # a package: each of its modules
        return [
            feature_set
            for info in pkgutil.iter_modules(module.__path__)
            for feature_set in _sets_of(f"{module.__name__}.{info.name}")
        ]
    if not found:
        raise FeatureSetLoadError(
            f"feature set module {module_name!r} declares no set (decorate a function with"
            " @per_race or @per_day from feature_assets.core.feature_set)"
        )
    return found


@functools.cache
def registered_sets() -> tuple[FeatureSet, ...]:
    """Every set, built-in ones first, sorted by name within each; names are unique."""
    builtin = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)]
    sets = [s for name in builtin for s in _sets_of(name)]
    sets.sort(key=lambda s: (s.name != "race_features", s.name))
    sets += sorted(
        (s for name in settings.feature_set_modules() for s in _sets_of(name)),
        key=lambda s: s.name,
    )
    seen: dict[str, str] = {}
    for feature_set in sets:
        module = feature_set.function.__module__
        if feature_set.name in seen and seen[feature_set.name] != module:
            raise FeatureSetLoadError(
                f"two feature sets are named {feature_set.name!r}: in {seen[feature_set.name]}"
                f" and in {module}; rename one"
            )
        seen[feature_set.name] = module
    unique = {s.name: s for s in sets}
    return tuple(unique.values())


def feature_set(name: str) -> FeatureSet:
    for candidate in registered_sets():
        if candidate.name == name:
            return candidate
    known = ", ".join(s.name for s in registered_sets())
    raise KeyError(f"no feature set named {name!r} (known: {known})")
