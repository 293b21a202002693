"""Where the Dagster instance lives, its `dagster.yaml`, and its storage made once, for `make
dev`, the demo, the README's two-process start and tests.

`$DAGSTER_HOME` (default `$MDSTUDIO_HOME/dagster`) gets the project's `dagster.yaml`: with
PostgreSQL storage when `MDSTUDIO_DAGSTER_STORAGE_URL` is set, otherwise without its storage
block, so Dagster keeps SQLite files under `$DAGSTER_HOME` and needs no service.

`python -m mdstudio_pipelines.instance dagster.yaml` writes it and then creates the instance's
storage, before any webserver or daemon starts: each of those creates the storage it finds
missing, and two of them doing so at once on a fresh SQLite home both stamp its schema version,
leaving `alembic_version has more than one head` and a code location that never loads.
"""

import fcntl
import os
import sys
from pathlib import Path

import dagster as dg
import yaml

from mdstudio_core.config import Settings

# Held while the storage is made, so two initialisations at once take turns.
INIT_LOCK = ".mdstudio-init.lock"


def dagster_home(settings: Settings) -> Path:
    """`DAGSTER_HOME` (Dagster's own variable), else `$MDSTUDIO_HOME/dagster`."""
    return Path(os.environ.get("DAGSTER_HOME") or settings.home / "dagster").resolve()


def prepare(template: Path, settings: Settings, home: Path | None = None) -> Path:
    """Write `home/dagster.yaml` from `template` (whole: a process opening the instance
    meanwhile reads the old file or the new one, never half of one); returns the home."""
    home = home or dagster_home(settings)
    instance = yaml.safe_load(template.read_text())
    if not settings.dagster_storage_url:
        instance.pop("storage", None)
    home.mkdir(parents=True, exist_ok=True)
    written = home / f"dagster.yaml.{os.getpid()}"
    written.write_text(yaml.safe_dump(instance, sort_keys=False))
    written.replace(home / "dagster.yaml")
    return home


def initialise(home: Path) -> None:
    """Create the storage of the instance at `home` (its runs, event log index and schedules:
    Dagster makes whatever is missing when an instance opens), under a file lock in `home` so
    that two initialisations at once take turns. An instance already made is only opened."""
    with open(home / INIT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        dg.DagsterInstance.from_config(str(home)).dispose()


if __name__ == "__main__":  # python -m mdstudio_pipelines.instance dagster.yaml
    template = Path(sys.argv[1] if len(sys.argv) > 1 else "dagster.yaml")
    home = prepare(template, Settings.from_env())
    initialise(home)
    print(home)
