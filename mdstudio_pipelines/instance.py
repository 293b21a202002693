"""Where the Dagster instance lives, and its `dagster.yaml`, for `make dev`, the demo and tests.

`$DAGSTER_HOME` (default `$MDSTUDIO_HOME/dagster`) gets the project's `dagster.yaml`: with
PostgreSQL storage when `MDSTUDIO_DAGSTER_STORAGE_URL` is set, otherwise without its storage
block, so Dagster keeps SQLite files under `$DAGSTER_HOME` and needs no service.
"""

import os
import sys
from pathlib import Path

import yaml

from mdstudio_core import config

STORAGE_URL_VARIABLE = "MDSTUDIO_DAGSTER_STORAGE_URL"


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or config.mdstudio_home() / "dagster").resolve()


def prepare(template: Path, home: Path | None = None) -> Path:
    """Write `home/dagster.yaml` from `template`; returns the home."""
    home = home or dagster_home()
    settings = yaml.safe_load(template.read_text())
    storage_url = os.environ.get(STORAGE_URL_VARIABLE, "").strip()
    if not storage_url:
        settings.pop("storage", None)
    elif not storage_url.startswith("postgresql+psycopg2://"):
        raise SystemExit(
            f"{STORAGE_URL_VARIABLE} must use the postgresql+psycopg2:// scheme "
            "(dagster-postgres needs psycopg2)"
        )
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return home


if __name__ == "__main__":  # python -m mdstudio_pipelines.instance dagster.yaml
    print(prepare(Path(sys.argv[1] if len(sys.argv) > 1 else "dagster.yaml")))
