"""`python -m mdstudio_core.entrypoints.cli`: the core CLI, without the Dagster commands."""

from mdstudio_core.entrypoints.cli import main

if __name__ == "__main__":
    main()
