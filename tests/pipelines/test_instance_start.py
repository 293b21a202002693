"""A fresh SQLite `DAGSTER_HOME`, initialised once (`python -m mdstudio_pipelines.lib.instance`, as
`make dev` and the README's two-process start do), then `dagster-webserver` and
`dagster-daemon` started at the same moment: both serve, every time.

Without the initialisation each of them (and each one's code server) creates the storage it
finds missing, and two doing so at once stamp the schema version twice (`alembic_version has
more than one head`): the code location then never loads. `tests/pipelines/at_once.py` starts
both with their imports done, so they reach the instance within a millisecond of each other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_pipelines.lib import instance as dagster_instance

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AT_ONCE = Path(__file__).with_name("at_once.py")
ATTEMPTS = 5
# The files Dagster keeps its SQLite storage in, under the home.
STORAGE = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
HEALTH = """{
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
  workspaceOrError {
    ... on Workspace { locationEntries { name locationOrLoadError { __typename } } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(home: Path, port: int) -> dict[str, str]:
    """A fresh SQLite home: no Dagster PostgreSQL storage, whatever the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDSTUDIO_", "DAGSTER_"))}
    return env | {
        "MDSTUDIO_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MDSTUDIO_DATABASE_URL": f"sqlite:///{home / 'mdstudio.db'}",
        "MDSTUDIO_DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(ROOT),
    }


def _initialise(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mdstudio_pipelines.lib.instance", str(ROOT / "dagster.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stamps(home: Path) -> dict[str, int]:
    """How many schema versions each storage file holds (one when made once)."""
    counts = {}
    for name in STORAGE:
        with contextlib.closing(sqlite3.connect(home / name)) as db:
            counts[name] = db.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
    return counts


def test_the_initialisation_makes_the_storage_once_even_twice_at_once(tmp_path):
    """Two initialisations at once on a fresh home (say `make dev` and the demo) both succeed
    and leave the storage made once."""
    env = _environment(tmp_path, _free_port())
    first, second = _initialise(env), _initialise(env)
    for process in (first, second):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip() == str(tmp_path / "dagster")
    assert _stamps(tmp_path / "dagster") == dict.fromkeys(STORAGE, 1)


def test_webserver_and_daemon_started_at_once_both_serve_every_time(tmp_path):
    for attempt in range(ATTEMPTS):
        home = tmp_path / f"attempt{attempt}"
        _start_both_at_once(home)
        assert _stamps(home / "dagster") == dict.fromkeys(STORAGE, 1), f"attempt {attempt}"


def _start_both_at_once(home: Path) -> None:
    """On a fresh home: the store migrated and the instance initialised, as `make dev` does;
    then the webserver and the daemon released at one moment, and stopped once both serve."""
    port = _free_port()
    env = _environment(home, port)
    store = create_store_engine(env["MDSTUDIO_DATABASE_URL"])
    migrations.upgrade(store)
    store.dispose()
    # What `python -m mdstudio_pipelines.lib.instance` does (the test above runs the command).
    dagster_instance.initialise(
        dagster_instance.prepare(ROOT / "dagster.yaml", Settings.from_env(env), home / "dagster")
    )
    go = home / "go"
    logs = {name: home / f"{name}.log" for name in ("webserver", "daemon")}
    commands = {
        "webserver": ["dagster-webserver", "-w", "workspace.yaml", "-p", str(port)],
        "daemon": ["dagster-daemon", "run", "-w", "workspace.yaml"],
    }
    processes = []
    try:
        for name, command in commands.items():
            with open(logs[name], "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(AT_ONCE), str(go), *command],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        _wait(lambda: len(list(home.glob("go.*.ready"))) == 2, processes, logs, 60)
        go.touch()
        _wait(lambda: _both_serve(port), processes, logs, 60)
    finally:  # each with its code server (their process group); nothing of theirs is kept
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            process.wait(timeout=30)


def _both_serve(port: int) -> bool:
    """The webserver answers, its code location has loaded, and every daemon the instance
    requires has a healthy heartbeat."""
    base = f"http://127.0.0.1:{port}"
    try:
        if httpx.get(f"{base}/server_info", timeout=2).status_code != 200:
            return False
        health = httpx.post(f"{base}/graphql", json={"query": HEALTH}, timeout=5).json()["data"]
    except (httpx.TransportError, ValueError):
        return False
    [location] = health["workspaceOrError"]["locationEntries"]
    loaded = location["locationOrLoadError"]
    if loaded and loaded["__typename"] == "PythonError":
        raise AssertionError(f"the code location failed to load: {health}")
    daemons = health["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [d for d in daemons if d["required"]]
    return bool(loaded) and bool(required) and all(d["healthy"] for d in required)


def _wait(condition, processes, logs: dict[str, Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [p.args[3] for p in processes if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            tails = (f"--- {n}\n{p.read_text(errors='replace')[-3000:]}" for n, p in logs.items())
            problem = f"{ended} ended early" if ended else f"timed out after {timeout} s"
            raise AssertionError(problem + ":\n" + "\n".join(tails))
        time.sleep(0.25)


def test_make_dev_initialises_the_instance_before_starting_dagster():
    commands = subprocess.run(
        ["make", "-n", "dev"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    initialise = next(
        i for i, c in enumerate(commands) if "-m mdstudio_pipelines.lib.instance" in c
    )
    start = next(i for i, c in enumerate(commands) if "dagster dev" in c)
    assert initialise < start
