"""The resources of the code location, chosen from the environment in one place."""

from __future__ import annotations

from dagster import EnvVar

from feature_assets import settings
from feature_assets.source import SourceDatabase
from feature_assets.storage import DailyParquetIOManager


def build_resources() -> dict[str, object]:
    # EnvVar keeps the URL (and its password) out of run config, the UI and the event log.
    source_url = (
        EnvVar("FEATURE_ASSETS_SOURCE_URL")
        if settings.source_url_is_set()
        else settings.default_source_url()
    )
    return {
        "source": SourceDatabase(url=source_url),
        "io_manager": DailyParquetIOManager(base_url=settings.storage_url()),
    }
