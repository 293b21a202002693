"""The dependencies: floors above known advisories, and lock files in step with pyproject.toml.

`make install` (and so CI) installs `requirements-dev.lock` with `--require-hashes`; `make lock`
regenerates both lock files. These tests fail when someone edits pyproject.toml and forgets
`make lock`, or when a lock file loses a hash or a floor.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# (first release without the advisories named in pyproject.toml's comments, the release before)
FLOORS = {
    "jinja2": ("3.1.6", "3.1.5"),
    "fastapi": ("0.120.1", "0.120.0"),  # 0.120.1: the first whose range admits Starlette 0.49.1
    "starlette": ("0.49.1", "0.49.0"),
    "h11": ("0.16.0", "0.15.0"),
}
DAGSTER_FAMILY = {
    "dagster": "1.13.27",
    "dagster-webserver": "1.13.27",
    "dagster-postgres": "0.29.27",
    "dagster-docker": "0.29.27",
    "dagster-k8s": "0.29.27",
}


def parse_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """{canonical name: (pinned version, number of hashes)} of a pip-compile lock file."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith(" "):
            requirement = Requirement(stripped.removesuffix("\\").strip())
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {stripped} is not pinned with =="
            name = canonicalize_name(requirement.name)
            assert name not in pins, f"{path.name}: {name} pinned twice"
            pins[name] = (Version(specifier.version), 0)
        elif stripped.startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


RUNTIME_LOCK = parse_lock(ROOT / "requirements.lock")
DEV_LOCK = parse_lock(ROOT / "requirements-dev.lock")


def direct(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in requirements}


RUNTIME = direct(PYPROJECT["dependencies"])
DEV = direct(PYPROJECT["optional-dependencies"]["dev"])


@pytest.mark.parametrize(("name", "releases"), sorted(FLOORS.items()))
def test_pyproject_floors_exclude_the_releases_with_advisories(
    name: str, releases: tuple[str, str]
) -> None:
    floor, before = releases
    specifier = RUNTIME[name].specifier
    assert floor in specifier
    assert before not in specifier, f"pyproject.toml allows {name} {before}"
    assert RUNTIME_LOCK[name][0] >= Version(floor)


def test_the_dagster_family_is_pinned_together() -> None:
    for name, version in DAGSTER_FAMILY.items():
        assert str(RUNTIME[name].specifier) == f"=={version}"
        assert RUNTIME_LOCK[name][0] == Version(version)


@pytest.mark.parametrize(
    ("lock_name", "lock", "requirements"),
    [
        ("requirements.lock", RUNTIME_LOCK, RUNTIME),
        ("requirements-dev.lock", DEV_LOCK, RUNTIME | DEV),
    ],
)
def test_every_direct_dependency_is_pinned_within_pyproject(
    lock_name: str, lock: dict[str, tuple[Version, int]], requirements: dict[str, Requirement]
) -> None:
    for name, requirement in requirements.items():
        assert name in lock, f"{name} is in pyproject.toml but not in {lock_name}: run make lock"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock_name} pins {name}=={version}, outside pyproject's {requirement.specifier}: "
            "run make lock"
        )


def test_the_dev_lock_is_the_runtime_lock_plus_the_dev_extra() -> None:
    for name, (version, _) in RUNTIME_LOCK.items():
        assert DEV_LOCK.get(name, (None, 0))[0] == version, f"{name} differs between the locks"
    assert set(DEV) <= set(DEV_LOCK)
    assert set(DEV) & set(RUNTIME_LOCK) == set(), "a dev-only package in the runtime lock"


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_hashes(lock: dict[str, tuple[Version, int]]) -> None:
    assert [name for name, (_, hashes) in lock.items() if hashes == 0] == []


def test_this_environment_is_the_locked_set() -> None:
    """What `make install` put in .venv is what the lock says, so the suite tests the lock."""
    installed = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }
    differing = {
        name: (str(version), str(installed.get(name)))
        for name, (version, _) in DEV_LOCK.items()
        if installed.get(name) != version
    }
    assert differing == {}
