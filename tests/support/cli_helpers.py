"""Run the real `mdstudio` entry point in-process and capture what a user would see."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from typing import Any

from mdstudio_core.entrypoints import cli


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: list[str], stdin: str = "") -> CliResult:
    """Calls `mdstudio.main` as the console script does, with its exit code; it reads the
    (monkeypatched) environment's settings at each call, as a new process would."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        cli.main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return CliResult(code, out.getvalue(), err.getvalue())
