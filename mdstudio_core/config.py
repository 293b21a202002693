"""Settings read from the environment, so deployments configure mdstudio without code edits."""

from __future__ import annotations

import os
from pathlib import Path


def mdstudio_home() -> Path:
    """Where the embedded defaults live (SQLite store, Dagster instance): `MDSTUDIO_HOME`."""
    return Path(os.environ.get("MDSTUDIO_HOME", ".mdstudio")).resolve()


def database_url() -> str:
    """The metadata store: `MDSTUDIO_DATABASE_URL`, else a SQLite file under `MDSTUDIO_HOME`.

    A plain `postgres://` or `postgresql://` URL is pinned to psycopg 3, the driver we ship.
    """
    url = os.environ.get("MDSTUDIO_DATABASE_URL", "").strip()
    if not url:
        home = mdstudio_home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'mdstudio.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def trusted_header_auth() -> bool:
    """`MDSTUDIO_TRUSTED_HEADER_AUTH=1`: the HTTP API takes identity from `x-tenant-id`,
    `x-user-id` and `x-role`. Only safe behind a proxy that authenticates callers and sets (and
    strips) those headers itself; anyone could send them otherwise. Off by default."""
    return os.environ.get("MDSTUDIO_TRUSTED_HEADER_AUTH", "").strip() == "1"


def max_body_bytes() -> int:
    """The largest request body the HTTP API reads: `MDSTUDIO_MAX_BODY_BYTES`, default 1 MiB."""
    value = os.environ.get("MDSTUDIO_MAX_BODY_BYTES", "").strip()
    return int(value) if value.isdigit() else 1024 * 1024
