"""Where the Dagster instance lives, and its `dagster.yaml`, for `make dev`, the demo and tests.

`$DAGSTER_HOME` (default `$MDSTUDIO_HOME/dagster`) gets the project's `dagster.yaml`: with
PostgreSQL storage when `MDSTUDIO_DAGSTER_STORAGE_URL` is set, otherwise without its storage
block, so Dagster keeps SQLite files under `$DAGSTER_HOME` and needs no service.
"""

import os
import sys
from pathlib import Path

import yaml

from mdstudio_core.config import Settings


def dagster_home(settings: Settings) -> Path:
    """`DAGSTER_HOME` (Dagster's own variable), else `$MDSTUDIO_HOME/dagster`."""
    return Path(os.environ.get("DAGSTER_HOME") or settings.home / "dagster").resolve()


def prepare(template: Path, settings: Settings, home: Path | None = None) -> Path:
    """Write `home/dagster.yaml` from `template`; returns the home."""
    home = home or dagster_home(settings)
    instance = yaml.safe_load(template.read_text())
    if not settings.dagster_storage_url:
        instance.pop("storage", None)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
    return home


if __name__ == "__main__":  # python -m mdstudio_pipelines.instance dagster.yaml
    template = Path(sys.argv[1] if len(sys.argv) > 1 else "dagster.yaml")
    print(prepare(template, Settings.from_env()))
