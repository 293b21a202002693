"""The one resource: mdstudio's store and settings, resolved from the environment exactly as the
CLI resolves them (the SQLite default included). Warehouse sources come from the same settings
(`MDSTUDIO_SOURCE_<NAME>_URL`) when a run needs them. No URL is Dagster config, so none is shown
in the UI."""

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from mdstudio_core import bootstrap
from mdstudio_core.config import Settings
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


class CatalogResource(dg.ConfigurableResource):
    """The mdstudio metadata store (outbox, entities, profiles) and the settings it runs with,
    read from the environment (`mdstudio_core.config.Settings`) when first used."""

    _settings: Settings | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = bootstrap.read_settings()
        return self._settings

    @property
    def engine(self) -> Engine:
        return bootstrap.shared_store_engine(self.settings)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)
