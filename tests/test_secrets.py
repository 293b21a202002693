"""No secret in any message: a source URL whose password holds `@` and `:` (so it does not even
parse) is named by its variable, never shown, in CLI output, HTTP answers, event payloads and
log records. The Dagster side is in tests/pipelines/test_pipelines.py."""

from __future__ import annotations

import json
import logging
import uuid

from fastapi.testclient import TestClient

from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.cli_helpers import run_cli
from tests.factories import metadata_request, person

SECRET = "Sup3rSecret"
LEAKY_URL = f"postgresql+psycopg://reader:p@ss:{SECRET}@127.0.0.1:5432/wh"
BINDING = {"source": "wh", "table": "orders", "columns": [{"name": "gross_amount"}]}


def test_a_malformed_source_url_is_named_never_shown(store_url, engine, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    tenant = str(uuid.uuid4())
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", tenant)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", LEAKY_URL)
    seen: list[str] = []

    def cli(*args: str, stdin: str = "") -> dict:
        result = run_cli(list(args), stdin)
        seen.extend([result.stdout, result.stderr])
        return {"code": result.exit_code, "out": result.stdout, "err": result.stderr}

    request = json.dumps(metadata_request(binding=BINDING))
    submitted = cli("approvals", "submit", "--file", "-", "--user", "a", "--json", stdin=request)
    approval_id = json.loads(submitted["out"])["id"]
    preview = cli("profiles", "preview", "--approval", approval_id, "--user", "b")
    assert preview["code"] == 1
    assert "MDSTUDIO_SOURCE_WH_URL" in preview["err"]
    cli("approvals", "approve", approval_id, "--user", "b", "--role", "kernel_owner")
    live = cli("profiles", "preview", "finance.revenue.gross_amount", "--user", "b", "--json")
    assert live["code"] == 1
    cli("events", "list", "--json", "--user", "b")
    cli("metadata", "show", "finance.revenue.gross_amount", "--user", "b")

    secret, _ = tokens.create_token(UnitOfWork(engine), person(uuid.UUID(tenant), "c"))
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(engine=engine)) as client:
        for path in ("/approvals?include=payload", "/events", "/metadata", "/openapi.json"):
            seen.append(client.get(path, headers=headers).text)
        seen.append(
            client.post(
                "/approvals", json=metadata_request("k.x", binding=BINDING), headers=headers
            ).text
        )

    assert all(SECRET not in text for text in seen)
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert all(SECRET not in (record.exc_text or "") for record in caplog.records)
