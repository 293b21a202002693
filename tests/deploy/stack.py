"""The Compose deployment the drills break: deploy/compose/compose.yaml as committed, with the
drills' overrides (tests/deploy/compose.drill.yaml: PostgreSQL from Debian's packages), under a
project, network and ports of its own. The tests read what happened from the store and from
Dagster's run records, through PostgreSQL published on the host's loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import person

ROOT = Path(__file__).parents[2]
DRILLS = Path(__file__).parent
POSTGRES_IMAGE = "mdstudio-drill-postgres:15"


def compose_command() -> list[str]:
    """`docker compose` where the plugin exists, else Debian's `docker-compose`."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def docker(*arguments: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(arguments)}: {done.stderr.strip()}")
    return done.stdout


class Stack:
    """One running deployment: its containers, its store and its Dagster instance."""

    def __init__(self, tmp: Path, image: str) -> None:
        self.name = f"mdsdrill{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.ports = {
            "postgres": free_port(),
            "api-1": free_port(),
            "api-2": free_port(),
            "webserver": free_port(),
        }
        settings = tmp / "settings.env"
        settings.write_text(
            "MDSTUDIO_SOURCE_WAREHOUSE_URL=postgresql+psycopg://mdstudio@postgres:5432/warehouse\n"
            "MDSTUDIO_SENSOR_INTERVAL_SECONDS=2\n"
            "MDSTUDIO_MIN_RERUN_HOURS=0\n"
            # Several runs per tick, so a daemon killed mid-tick leaves some unlaunched.
            "MDSTUDIO_TABLES_PER_RUN=2\n"
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MDSTUDIO_")},
            "COMPOSE_PROJECT_NAME": self.name,
            "MDSTUDIO_NETWORK": self.name,
            "MDSTUDIO_IMAGE": image,
            "MDSTUDIO_ENV_FILE": str(settings),
            "MDSTUDIO_API_WORKERS": "1",
            "POSTGRES_PASSWORD": "drill",
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
            "MDSTUDIO_DRILL_DIR": str(DRILLS),
            "MDSTUDIO_DRILL_POSTGRES_PORT": str(self.ports["postgres"]),
            "MDSTUDIO_API_PORT_1": str(self.ports["api-1"]),
            "MDSTUDIO_API_PORT_2": str(self.ports["api-2"]),
            "MDSTUDIO_WEBSERVER_PORT": str(self.ports["webserver"]),
        }
        self.compose_files = [
            "-f",
            str(ROOT / "deploy/compose/compose.yaml"),
            "-f",
            str(DRILLS / "compose.drill.yaml"),
        ]
        host = f"mdstudio@127.0.0.1:{self.ports['postgres']}"
        self.store_url = f"postgresql+psycopg://{host}/mdstudio"
        self.warehouse_url = f"postgresql+psycopg://{host}/warehouse"
        self.storage_url = f"postgresql+psycopg2://{host}/dagster"
        self.store: sa.Engine | None = None
        self.instance: dg.DagsterInstance | None = None

    # -- containers --------------------------------------------------------------------------

    def compose(self, *arguments: str, check: bool = True, timeout: float = 600) -> str:
        done = subprocess.run(
            [*compose_command(), *self.compose_files, *arguments],
            cwd=ROOT / "deploy/compose",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"compose {' '.join(arguments)}: {done.stderr[-3000:]}")
        return done.stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def up(self) -> None:
        self.compose("up", "-d")
        self.store = create_store_engine(self.store_url)
        home = self.tmp / "dagster_home"
        home.mkdir()
        storage = {"postgres": {"postgres_url": self.storage_url}}
        (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage}))
        self.wait_ready()
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.wait_daemon()

    def wait_ready(self, timeout: float = 300) -> None:
        """Both API replicas healthy and the webserver serving its code location."""
        for replica in ("api-1", "api-2"):
            wait_for(lambda r=replica: self.healthz(r) == 200, timeout, f"{replica} healthy")
        wait_for(self.location_loaded, timeout, "the webserver's code location")

    def wait_daemon(self, timeout: float = 300) -> None:
        """Every daemon of the daemon container beating."""
        assert self.instance is not None
        started = time.time()

        def beating() -> bool:
            beats = self.instance.get_daemon_heartbeats()
            required = set(self.instance.get_required_daemon_types())
            return required <= set(beats) and all(beats[d].timestamp > started for d in required)

        wait_for(beating, timeout, "the daemon's heartbeats", every=2)

    def down(self) -> None:
        """Everything, the run containers on the network included."""
        for container in docker("ps", "-aq", "--filter", f"network={self.name}").split():
            docker("rm", "-f", container, check=False)
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        if self.store is not None:
            self.store.dispose()
        if self.instance is not None:
            self.instance.dispose()

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "80", *services, check=False)[-8000:]

    # -- HTTP --------------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def healthz(self, replica: str) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url(replica)}/healthz", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def graphql(self, query: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url('webserver')}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)["data"]  # type: ignore[no-any-return]

    def location_loaded(self) -> bool:
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        try:
            entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
        except (OSError, KeyError, TypeError, ValueError):
            return False
        return any(e["name"] == "mdstudio" and e["loadStatus"] == "LOADED" for e in entries)

    def asset_keys(self) -> list[list[str]]:
        query = "{ assetsOrError { ... on AssetConnection { nodes { key { path } } } } }"
        return [node["key"]["path"] for node in self.graphql(query)["assetsOrError"]["nodes"]]

    def token(self, tenant: uuid.UUID, user: str, *roles: str) -> dict[str, str]:
        secret, _ = tokens.create_token(UnitOfWork(self.store), person(tenant, user, *roles))
        return {"Authorization": f"Bearer {secret}"}

    # -- the warehouse and the outcome ---------------------------------------------------------

    def warehouse(self, statements: list[str]) -> None:
        engine = sa.create_engine(self.warehouse_url)
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
        engine.dispose()

    def profiles(self, tenant: uuid.UUID) -> list[sa.Row[Any]]:
        assert self.store is not None
        with self.store.connect() as connection:
            query = sa.select(tables.profiles).where(tables.profiles.c.tenant_id == tenant)
            return list(connection.execute(query))

    def runs(self, tenant: uuid.UUID) -> list[dg.DagsterRun]:
        assert self.instance is not None
        return list(self.instance.get_runs(dg.RunsFilter(tags={"mdstudio/tenant": str(tenant)})))
