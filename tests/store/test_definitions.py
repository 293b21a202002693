"""The Dagster code location loads, and the domain never imports dagster."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import dagster as dg


def test_definitions_load(store_url, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    from mdstudio_pipelines.definitions import defs
    from mdstudio_pipelines.lib.dagster_internals import no_defs_state_storage

    with no_defs_state_storage():
        definitions = defs()
        assert isinstance(definitions, dg.Definitions)
        definitions.resolve_all_job_defs()


def test_core_runs_without_dagster():
    """Importing every core module must not pull dagster in."""
    root = pathlib.Path(__file__).parents[2] / "mdstudio_core"
    modules = [
        ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        "assert 'dagster' not in sys.modules, 'mdstudio_core imported dagster'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
