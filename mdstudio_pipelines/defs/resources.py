"""The one resource: mdstudio's store and settings, resolved from the environment exactly as the
CLI resolves them (the SQLite default included). Warehouse sources come from the same settings
(`MDSTUDIO_SOURCE_<NAME>_URL`) when a run needs them. No URL is Dagster config, so none is shown
in the UI."""

import functools

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import StoreTimeouts
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


@functools.cache
def _store_engine(url: str, timeouts: StoreTimeouts) -> Engine:
    """One pooled engine per process (sensor ticks run many times in one code server)."""
    return create_store_engine(url, timeouts)


class CatalogResource(dg.ConfigurableResource):
    """The mdstudio metadata store (outbox, entities, profiles) and the settings it runs with,
    read from the environment (`mdstudio_core.config.Settings`) when first used."""

    _settings: Settings | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def engine(self) -> Engine:
        return _store_engine(self.settings.store_url, self.settings.store_timeouts)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)
