"""Start a console script the moment a file appears, its imports already done, so that two
processes started this way reach their first real work within a millisecond of each other
however the machine schedules their start-up.

    python tests/pipelines/at_once.py GO SCRIPT [ARG...]

Writes `GO.<pid>.ready` once the script's module is imported, then waits for the file GO and
runs SCRIPT (a console script of this environment, e.g. `dagster-webserver`) with the ARGs.
"""

import os
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

go, name, *args = sys.argv[1:]
(script,) = entry_points(group="console_scripts", name=name)
main = script.load()
Path(f"{go}.{os.getpid()}.ready").touch()
while not Path(go).exists():
    time.sleep(0.001)
sys.argv = [name, *args]
sys.exit(main())
