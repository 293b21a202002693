"""Fuzzing against the app's own OpenAPI document, and injection-shaped input.

Schemathesis generates valid and invalid requests for every operation (with a token holding
every role, over a store with data in it): no response may be a 5xx, have an undocumented status
or content type, or break its documented schema.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mdstudio_core.domain.model import TERM_PATTERN
from mdstudio_core.entrypoints.http import create_app
from tests.http.conftest import is_problem
from tests.support.factories import KERNEL_OWNER, STEWARD, metadata_request, store_snapshot

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
INJECTIONS = [
    "'; DROP TABLE mdm_approval; --",
    "x' OR '1'='1",
    '" OR ""="',
    "../../etc/passwd",
    "..",
    "finance.revenue.gross_amount; DELETE FROM mdm_event",
    "finance/../secrets",
    "a\x00b",
    "<script>alert(1)</script>",
    "finance.revenue.gross_amount\n",
]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(engine, bearer, mode):
    tenant = uuid.uuid4()
    headers = bearer(tenant, "fuzzer", STEWARD, KERNEL_OWNER, "tenant_admin")
    app = create_app(engine=engine)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:  # data to find: a live entity, a pending and a decided request
        alice = bearer(tenant, "alice")
        done = client.post("/approvals", json=metadata_request(), headers=alice).json()
        client.post(f"/approvals/{done['id']}/approve", headers=headers)
        client.post("/approvals", json=metadata_request(label="Next"), headers=alice)

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 28  # every route but /openapi.json and /docs
    generation_mode = schemathesis.GenerationMode(mode)
    for operation in operations:
        if generation_mode is schemathesis.GenerationMode.NEGATIVE and not list(
            operation.iter_parameters()
        ):
            continue  # nothing to make invalid (GET /healthz)

        @given(case=operation.as_strategy(generation_mode=generation_mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        exercise()


def test_injection_shaped_keys_and_ids_are_422_and_change_nothing(client, bearer, engine, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER)
    done = client.post("/approvals", json=metadata_request(), headers=alice).json()
    client.post(f"/approvals/{done['id']}/approve", headers=bob)
    before = store_snapshot(engine)
    for bad in INJECTIONS:
        encoded = quote(bad, safe="")
        for path, field in [
            (f"/metadata/{encoded}", "canonical_key"),
            (f"/kpis/{encoded}", "canonical_key"),
            (f"/profiles?entity={encoded}", "entity"),
            (f"/approvals?entity={encoded}", "entity"),
            (f"/events?entity={encoded}", "entity"),
            (f"/approvals/{encoded}", "approval_id"),
            (f"/approvals?status={encoded}", "status"),
        ]:
            response = client.get(path, headers=bob)
            if (
                field == "entity"
                and path.startswith(("/approvals", "/events"))
                and re.fullmatch(TERM_PATTERN, bad)
            ):
                # A glossary term may hold '/' and '.' ("A/B testing"): a valid filter that,
                # bound as a parameter, matches nothing.
                assert response.json()["items"] == []
                continue
            if response.status_code == 404 and response.json()["detail"] == "Not Found":
                continue  # '/' or '..' made it another path: no route matched, nothing was read
            assert is_problem(response, 422, field), (path, response.text)
        decided = client.post(f"/approvals/{encoded}/approve", headers=bob)
        assert decided.status_code in (404, 422) and decided.headers["content-type"].endswith(
            "problem+json"
        )
        for request, field in [
            ({**metadata_request(bad), "entity_key": None}, "payload.canonical_key"),
            ({**metadata_request(), "entity_key": bad}, "entity_key"),
            (
                metadata_request(binding={"table": bad, "columns": [{"name": "a"}]}),
                "payload.binding.table",
            ),
            (
                metadata_request(binding={"table": "t", "columns": [{"name": bad}]}),
                "payload.binding.columns[0].name",
            ),
        ]:
            response = client.post("/approvals", json=request, headers=alice)
            assert is_problem(response, 422, field), (bad, field, response.text)
    assert store_snapshot(engine) == before
