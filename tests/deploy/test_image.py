"""The one image (Dockerfile, `make image`): every role's command, a non-root user, no compiler,
exactly the locked packages, and a health check that follows the API's `/healthz`."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.deploy.conftest import ROOT, docker_run

pytestmark = pytest.mark.docker


def test_every_role_runs_from_the_image_as_a_user_without_compilers(image):
    out = docker_run(
        image,
        "sh",
        "-c",
        "id -u; id -g; for c in gcc cc g++ c++ clang make; do command -v $c; done; "
        "mdstudio --help >/dev/null && echo api; "
        "dagster code-server start --help >/dev/null && echo code-server; "
        "dagster-webserver --version; dagster-daemon --version; "
        "python3 -c 'import dagster_docker, dagster_k8s, dagster_postgres; print(\"launchers\")'",
    )
    assert out.split() == [
        "10001",
        "10001",
        "api",
        "code-server",
        "dagster-webserver,",
        "version",
        "1.13.27",
        "dagster-daemon,",
        "version",
        "1.13.27",
        "launchers",
    ]


def test_the_image_holds_exactly_the_locked_packages(image):
    locked = {
        line.split("==")[0].split("[")[0].lower().replace("_", "-"): line.split("==")[1].split()[0]
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    listing = (
        "import importlib.metadata as m; "
        "print(*sorted(f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions()))"
    )
    frozen = docker_run(image, "python3", "-c", listing)
    installed = {
        name.lower().replace("_", "-"): version
        for name, _, version in (line.partition("==") for line in frozen.split())
    }
    installed.pop("mdstudio")
    assert installed == locked


def test_the_health_check_follows_healthz(image):
    """Healthy once the API serves a migrated store; its command fails on an unmigrated one."""
    name = f"mdstudio-health-{uuid.uuid4().hex[:8]}"
    serve = "mdstudio db upgrade >/dev/null 2>&1 && exec mdstudio serve --host 0.0.0.0"
    subprocess.run(["docker", "run", "-d", "--name", name, image, "sh", "-c", serve], check=True)
    try:
        status = ""
        deadline = time.monotonic() + 300
        while status != "healthy" and time.monotonic() < deadline:
            time.sleep(2)
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
            ).stdout.strip()
        assert status == "healthy"
        probe = subprocess.run(
            ["docker", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "/healthz" in probe
        # The same probe against a store nobody migrated: the check fails.
        unmigrated = (
            "MDSTUDIO_DATABASE_URL=sqlite:////tmp/empty.db mdstudio serve --port 8788 "
            '>/dev/null 2>&1 & sleep 8; python3 -c "import urllib.request; '
            "urllib.request.urlopen('http://127.0.0.1:8788/healthz', timeout=4)\""
        )
        failed = subprocess.run(
            ["docker", "exec", name, "sh", "-c", unmigrated], capture_output=True, text=True
        )
        assert failed.returncode != 0
        assert "503" in failed.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
