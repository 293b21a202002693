"""The deployment's tests that need Docker (marked `docker`): the image, and the drills that
run the Compose deployment in containers and break it. `make test` deselects them (pytest's
`-m "not docker"` in pyproject.toml); `make drill` runs them. Without a working Docker they are
skipped with the reason, unless MDSTUDIO_REQUIRE_DOCKER=1 (CI), where that is a failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
IMAGE = os.environ.get("MDSTUDIO_DRILL_IMAGE", "mdstudio:latest")


def docker_missing() -> str | None:
    """Why Docker cannot be used here, or None."""
    try:
        found = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker cannot be run: {exc}"
    if found.returncode != 0:
        return f"docker does not answer: {found.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="session")
def docker() -> None:
    reason = docker_missing()
    if reason is None:
        return
    if os.environ.get("MDSTUDIO_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (MDSTUDIO_REQUIRE_DOCKER=1: the Docker tests are mandatory)")
    pytest.skip(f"{reason} (apt-get install docker.io, start dockerd; or `make drill`)")


@pytest.fixture(scope="session")
def image(docker: None) -> Iterator[str]:
    """The image of the working tree, built by `make image` (its layers are cached)."""
    built = subprocess.run(
        ["make", "--no-print-directory", "image", f"IMAGE={IMAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield IMAGE


def docker_run(*arguments: str, check: bool = True, timeout: float = 120) -> str:
    """`docker run --rm ...`'s output."""
    done = subprocess.run(
        ["docker", "run", "--rm", *arguments], capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout
