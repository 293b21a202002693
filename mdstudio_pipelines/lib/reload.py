"""A structural change reaches the UI's asset graph without a restart.

The code location builds its assets from a snapshot of the catalog when it loads. On each tick
`approval_sensor` compares that snapshot with the store's (a new or changed binding, a new or
changed KPI, a deprecation, a tenant's name); when they differ it asks the Dagster webserver
(`MDSTUDIO_DAGSTER_WEBSERVER_URL`) to reload the code location through its GraphQL mutation
`reloadRepositoryLocation`. The request is debounced: once per new catalog state, at most one
every `DEBOUNCE_SECONDS`, so a burst of approvals costs one reload; a failed request is tried
again on a later tick. Where webserver and daemon share the location's code server (`dagster
dev`, or `dagster code-server start` behind both), the daemon picks the reloaded server up on
its next workspace refresh (every 60 s)."""

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mdstudio_core.service_layer import lineage
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

RELOAD = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { name loadStatus }
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
    ... on UnauthorizedError { message }
    ... on ReloadNotSupported { message }
  }
}
"""
DEBOUNCE_SECONDS = 10.0
TIMEOUT_SECONDS = 60.0


def fingerprint(snapshot_json: str) -> str:
    return hashlib.sha256(snapshot_json.encode()).hexdigest()


def request_reload(webserver_url: str, location: str) -> str | None:
    """Ask the webserver to reload `location`; None when it did, else why not."""
    request = urllib.request.Request(
        f"{webserver_url}/graphql",
        data=json.dumps({"query": RELOAD, "variables": {"name": location}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            result = json.load(response)["data"]["reloadRepositoryLocation"]
    except (OSError, urllib.error.URLError, KeyError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if result.get("__typename") != "WorkspaceLocationEntry":
        return f"{result.get('__typename')}: {result.get('message', '')}"
    return None


@dataclass
class Reloader:
    """What this code server asked for last: the catalog state and when."""

    requested: str | None = None
    at: float = 0.0
    failed: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def due(self, built: str, current: str, now: float) -> bool:
        """A reload is due when the store's catalog is not the one this location was built
        from, was not asked for already (unless that request failed), and the last request
        is at least `DEBOUNCE_SECONDS` old."""
        if current == built or now - self.at < DEBOUNCE_SECONDS:
            return False
        return current != self.requested or self.failed

    def reload(
        self, webserver_url: str, location: str, built: str, current: str
    ) -> tuple[bool, str | None]:
        """(requested, error): request a reload if one is due."""
        with self._lock:
            now = time.monotonic()
            if not self.due(built, current, now):
                return False, None
            self.requested, self.at = current, now
            error = request_reload(webserver_url, location)
            self.failed = error is not None
            return True, error


@dataclass
class CatalogFingerprint:
    """The store's catalog fingerprint, computed again only when its version moved: a tick
    reads three aggregates, not every field and KPI (`bench/soak.py`)."""

    version: tuple[Any, ...] | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def current(self, uow_factory: Callable[[], UnitOfWork]) -> str:
        with self._lock:
            version = lineage.catalog_version(uow_factory())
            if version != self.version or self.fingerprint is None:
                snapshot = lineage.load_snapshot(uow_factory())
                self.version, self.fingerprint = version, fingerprint(snapshot.to_json())
            return self.fingerprint


RELOADER = Reloader()
CATALOG = CatalogFingerprint()
