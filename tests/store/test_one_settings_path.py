"""One settings path (issue 18, item 7): the services take the settings the entry point read
from the environment, and none makes its own, so the console, the HTTP API and the CLI judge
a decision alike."""

from __future__ import annotations

import ast
import datetime as dt
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import Browser
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    kpi_request,
    metadata_request,
    person,
    stored_profile,
)

SERVICE_LAYER = Path(__file__).parents[2] / "mdstudio_core" / "service_layer"
INPUTS = ("finance.revenue.gross_amount", "finance.cost.cost_amount")
KPI = "finance.kpi.gross_margin"


def _service_modules() -> list[tuple[str, ast.Module]]:
    modules = [(path.name, ast.parse(path.read_text())) for path in SERVICE_LAYER.glob("*.py")]
    assert len(modules) > 5  # the package was found
    return modules


def test_nothing_in_the_service_layer_makes_its_own_settings():
    """`Settings(...)`, `Settings.from_env(...)` or any other constructor call."""
    made = [
        f"{name}:{node.lineno}"
        for name, module in _service_modules()
        for node in ast.walk(module)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "Settings")
            or (
                isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Settings"
            )
        )
    ]
    assert made == []


def test_every_service_taking_settings_requires_them():
    optional = []
    for name, module in _service_modules():
        for node in ast.walk(module):
            if not isinstance(node, ast.FunctionDef):
                continue
            arguments = node.args
            positional = arguments.posonlyargs + arguments.args
            with_default = positional[len(positional) - len(arguments.defaults) :] + [
                argument
                for argument, default in zip(
                    arguments.kwonlyargs, arguments.kw_defaults, strict=True
                )
                if default is not None
            ]
            if "settings" in {argument.arg for argument in with_default}:
                optional.append(f"{name}:{node.name}")
    assert optional == []


def _tier1_kpi_pending(engine, tenant: uuid.UUID) -> uuid.UUID:
    """Two live tier1 inputs profiled at 90 an hour ago, and a tier1 KPI on them to approve:
    its first trust, 90, is below a tier1 minimum of 95 and above the default 80."""
    alice, owner = person(tenant, "alice"), person(tenant, "kim", KERNEL_OWNER)
    for key in INPUTS:
        field = approvals.submit(UnitOfWork(engine), alice, metadata_request(key), SETTINGS)
        approvals.approve(UnitOfWork(engine), owner, field.id, None, SETTINGS)
    with UnitOfWork(engine) as uow:
        for key in INPUTS:
            at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            uow.profiles.add(stored_profile(tenant, key, at, 90.0))
        uow.commit()
    return approvals.submit(UnitOfWork(engine), alice, kpi_request(KPI, tier="tier1"), SETTINGS).id


def _token(engine, tenant: uuid.UUID) -> str:
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "bob", KERNEL_OWNER))
    return secret


def _recorded_trust(engine, tenant: uuid.UUID) -> tuple[object, ...]:
    with UnitOfWork(engine) as uow:
        state = uow.lineage.trust_states(tenant, [KPI])[KPI]
    return (state.trust_score, state.weakest_input, state.impacted, state.below_streak)


def test_console_api_and_cli_record_the_same_kpi_trust_under_the_environments_minimum(
    engine, store_url, monkeypatch
):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TIER1_MIN_SCORE", "95")
    app = create_app(engine=engine)  # its settings from the environment, as `mdstudio serve`
    console, api, cli = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    pending = _tier1_kpi_pending(engine, console)
    bob = Browser(TestClient(app), _token(engine, console))
    assert bob.sign_in().status_code == 303
    assert bob.post(f"/ui/approvals/{pending}/approve").status_code == 303

    pending = _tier1_kpi_pending(engine, api)
    headers = {"Authorization": f"Bearer {_token(engine, api)}"}
    with TestClient(app) as client:
        assert client.post(f"/approvals/{pending}/approve", headers=headers).status_code == 200

    pending = _tier1_kpi_pending(engine, cli)
    identity = ("--tenant", str(cli), "--user", "bob", "--role", KERNEL_OWNER)
    result = run_cli(["approvals", "approve", str(pending), *identity])
    assert result.exit_code == 0, result.stderr

    recorded = {
        channel: _recorded_trust(engine, t)
        for channel, t in (("console", console), ("api", api), ("cli", cli))
    }
    assert recorded["console"] == recorded["api"] == recorded["cli"]
    trust_score, _, impacted, streak = recorded["cli"]
    assert trust_score == pytest.approx(90.0)
    assert (impacted, streak) == (True, 1)  # 90 is below the environment's 95
