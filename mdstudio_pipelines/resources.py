"""Resources: the catalog store and the warehouse sources, configured from the environment."""

import functools
import os

import dagster as dg
from sqlalchemy import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.model import Tier


@functools.cache
def _store_engine(url: str) -> Engine:
    return create_store_engine(url)


class CatalogResource(dg.ConfigurableResource):
    """The mdstudio metadata store (`MDSTUDIO_DATABASE_URL`): outbox, entities, profiles."""

    database_url: str

    @property
    def engine(self) -> Engine:
        """One pooled engine per process (sensor ticks run many times in one code server)."""
        return _store_engine(self.database_url)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouses bindings point at. Source NAME connects with the SQLAlchemy URL in
    `MDSTUDIO_SOURCE_<NAME>_URL`, resolved when a run needs it, so credentials never live in
    the catalog or in code."""

    def engine_for(self, source: str) -> Engine:
        return warehouse.get_engine(source)


class QualityThresholds(dg.ConfigurableResource):
    """Minimum quality scores per tier for the `quality_score_threshold` check: below them
    tier1 fails with ERROR severity, tier2 with WARN; tier3 is informational."""

    tier1_min_score: float = 80.0
    tier2_min_score: float = 70.0

    def minimum(self, tier: Tier) -> float | None:
        return {Tier.TIER1: self.tier1_min_score, Tier.TIER2: self.tier2_min_score}.get(tier)


def thresholds_from_env() -> QualityThresholds:
    """`MDSTUDIO_TIER1_MIN_SCORE` / `MDSTUDIO_TIER2_MIN_SCORE`, defaulting to 80 / 70."""
    return QualityThresholds(
        tier1_min_score=float(os.environ.get("MDSTUDIO_TIER1_MIN_SCORE", "80")),
        tier2_min_score=float(os.environ.get("MDSTUDIO_TIER2_MIN_SCORE", "70")),
    )
