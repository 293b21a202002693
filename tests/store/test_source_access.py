"""A tenant binds only what the operator gave it: sources open to some tenants, schemas a source
allows, and never a system schema or table. Checked at submission, at preview, and again when
profiling (see tests/pipelines/test_pipelines.py for the run)."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from demo import warehouse as demo_warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import ConfigurationError, InvalidInput
from mdstudio_core.domain.model import Binding, SourceAccess
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals
from tests.http.conftest import is_problem
from tests.support.cli_helpers import run_cli
from tests.support.factories import SETTINGS, metadata_request, person, store_snapshot

ACME, GLOBEX = uuid.UUID(int=1), uuid.UUID(int=2)


def binding(schema: str | None = "sales", table: str = "orders", source: str = "wh") -> dict:
    raw = {"source": source, "table": table, "columns": [{"name": "gross_amount"}]}
    return raw | ({"schema": schema} if schema else {})


@pytest.mark.parametrize(
    ("access", "bound", "tenant", "field"),
    [
        (SourceAccess("wh"), binding(), GLOBEX, None),
        (SourceAccess("wh", tenants=frozenset({ACME})), binding(), ACME, None),
        (
            SourceAccess("wh", tenants=frozenset({ACME})),
            binding(),
            GLOBEX,
            "payload.binding.source",
        ),
        (SourceAccess("wh"), binding("pg_catalog", "pg_authid"), ACME, "payload.binding.schema"),
        (SourceAccess("wh"), binding("PG_TOAST"), ACME, "payload.binding.schema"),
        (SourceAccess("wh"), binding("information_schema"), ACME, "payload.binding.schema"),
        (SourceAccess("wh"), binding(None, "sqlite_master"), ACME, "payload.binding.table"),
        (SourceAccess("wh", schemas=frozenset({"sales"})), binding(), ACME, None),
        (
            SourceAccess("wh", schemas=frozenset({"sales"})),
            binding("hr"),
            ACME,
            "payload.binding.schema",
        ),
        (
            SourceAccess("wh", schemas=frozenset({"sales"})),
            binding(None),
            ACME,
            "payload.binding.schema",
        ),
    ],
)
def test_the_access_rule(access, bound, tenant, field):
    refusal = access.refusal(Binding.model_validate(bound), tenant)
    assert (refusal[0] if refusal else None) == field


def test_operator_settings(monkeypatch):
    settings = Settings.from_env(
        {
            "MDSTUDIO_SOURCE_WH_URL": "postgresql+psycopg://reader@dw/analytics",
            "MDSTUDIO_SOURCE_WH_TENANTS": f" {ACME}, {GLOBEX} ",
            "MDSTUDIO_SOURCE_WH_SCHEMAS": "sales,finance",
        }
    )
    access = settings.source_access("wh")
    assert access.tenants == {ACME, GLOBEX} and access.schemas == {"sales", "finance"}
    assert settings.source_access("other") == SourceAccess("other")
    for variable, value in (
        ("MDSTUDIO_SOURCE_WH_TENANTS", "acme"),
        ("MDSTUDIO_SOURCE_WH_SCHEMAS", "sales; drop"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_env({variable: value})
        assert caught.value.variable == variable


def test_submission_refused_for_another_tenants_source(engine, uow):
    settings = Settings(source_tenants={"WH": frozenset({ACME})})
    request = metadata_request(binding=binding())
    approvals.submit(uow, person(ACME, "alice"), request, settings)
    before = store_snapshot(engine)
    with pytest.raises(InvalidInput) as caught:
        approvals.submit(uow, person(GLOBEX, "mallory"), request, settings)
    assert caught.value.field == "payload.binding.source"
    assert "MDSTUDIO_SOURCE_WH_TENANTS" in str(caught.value)
    assert store_snapshot(engine) == before


def test_system_schemas_are_refused_without_any_setting(engine, uow):
    before = store_snapshot(engine)
    with pytest.raises(InvalidInput) as caught:
        approvals.submit(
            uow,
            person(ACME, "mallory"),
            metadata_request(binding=binding("pg_catalog", "pg_authid")),
            SETTINGS,
        )
    assert caught.value.field == "payload.binding.schema"
    assert store_snapshot(engine) == before


def test_cli_and_http_refuse_and_name_the_field(store_url, engine, uow, monkeypatch, tmp_path):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_SCHEMAS", "sales")
    request = json.dumps(metadata_request(binding=binding("hr")))
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--tenant", str(ACME), "--user", "a"], request
    )
    assert result.exit_code == 2
    assert "payload.binding.schema" in result.stderr and "sales" in result.stderr
    with TestClient(create_app(engine=engine)) as client:  # the server's own settings
        from mdstudio_core.service_layer import tokens

        secret, _ = tokens.create_token(uow, person(ACME, "alice"))
        response = client.post(
            "/approvals",
            json=metadata_request(binding=binding("hr")),
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert is_problem(response, 422, "payload.binding.schema")


def test_preview_checks_the_source_again(store_url, monkeypatch, tmp_path):
    """A request submitted while the source was open; the operator has narrowed it since."""
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", demo_warehouse.build(tmp_path / "wh.db"))
    demo = {"source": "demo", "table": "orders", "columns": [{"name": "gross_amount", "min": 0}]}
    submitted = run_cli(
        ["approvals", "submit", "--file", "-", "--tenant", str(ACME), "--user", "a", "--json"],
        json.dumps(metadata_request(binding=demo)),
    )
    assert submitted.exit_code == 0, submitted.stderr
    approval_id = submitted.json["id"]
    args = [
        "profiles",
        "preview",
        "--approval",
        approval_id,
        "--tenant",
        str(ACME),
        "--user",
        "b",
        "--role",
        "kernel_owner",
    ]
    assert run_cli(args).exit_code == 0
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_TENANTS", str(GLOBEX))
    refused = run_cli(args)
    assert refused.exit_code == 2
    assert "MDSTUDIO_SOURCE_DEMO_TENANTS" in refused.stderr
