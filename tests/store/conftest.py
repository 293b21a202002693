"""Fixtures the store's modules share."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def cli_env(store_url: str, monkeypatch: pytest.MonkeyPatch, tenant: uuid.UUID) -> str:
    """The CLI's environment on the test's store and tenant, with no user or role preset: each
    command names its own."""
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    for name in ("MDSTUDIO_USER", "MDSTUDIO_ROLE"):
        monkeypatch.delenv(name, raising=False)
    return store_url
