"""The one wiring point: the settings, the store engine and the warehouse engines.

The CLI's runtime, the HTTP app and the Dagster resource build what they work with here, so
the three entry points read the environment and size their pools the same way. The warehouse
engines are the profiling's own default (`source_engines`), so a caller that passes none reads
the same pools."""

from __future__ import annotations

import functools

from sqlalchemy import Engine

from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import StoreTimeouts
from mdstudio_core.service_layer.profiling import EngineFor as WarehouseEngines
from mdstudio_core.service_layer.profiling import source_engines as warehouse_engines

__all__ = [
    "WarehouseEngines",
    "read_settings",
    "shared_store_engine",
    "store_engine",
    "warehouse_engines",
]


def read_settings() -> Settings:
    """Every `MDSTUDIO_*` setting, read from the environment once per process start; a
    malformed value raises a `ConfigurationError` naming the variable."""
    return Settings.from_env()


def store_engine(
    settings: Settings, *, pool_size: int | None = None, max_overflow: int | None = None
) -> Engine:
    """An engine for the metadata store the settings name, bounded by their timeouts; a pool
    size only where the caller runs many threads (the HTTP app)."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    return create_store_engine(
        settings.store_url,
        settings.store_timeouts,
        **{name: value for name, value in pool.items() if value is not None},
    )


def shared_store_engine(settings: Settings) -> Engine:
    """One pooled store engine per store for the life of the process: a Dagster code server
    runs many sensor ticks, each with a fresh resource."""
    return _shared_store_engine(settings.store_url, settings.store_timeouts)


@functools.cache
def _shared_store_engine(url: str, timeouts: StoreTimeouts) -> Engine:
    return create_store_engine(url, timeouts)
