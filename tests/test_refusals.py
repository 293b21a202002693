"""What a caller is told when a service refuses, and what the listings give by default: the
field a refusal names is the interface (exit 2 / HTTP 422 name it), and so is the message.
(Surviving mutants of `make mutation` showed no test read these.)"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from mdstudio_core.domain.approvals import ApprovalListing, check_policy_change
from mdstudio_core.domain.errors import Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.model import ApprovalStatus, Tier
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.tokens import parse_lifetime
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.factories import STEWARD, kpi_request, metadata_request, person

LIFETIME = "must be a positive number followed by s, m, h, d or w (e.g. 30d), or never"


def refusal(call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("text", ["", "0d", "30", "d", "1y", "1000000s", "-3h"])
def test_a_token_lifetime_is_a_positive_duration(text):
    refused = refusal(parse_lifetime, text)
    assert (refused.field, refused.reason) == ("expires_in", LIFETIME)


def test_token_lifetimes_in_every_unit():
    assert parse_lifetime(" Never ") is None
    assert parse_lifetime("45s") == dt.timedelta(seconds=45)
    assert parse_lifetime("90m") == dt.timedelta(minutes=90)
    assert parse_lifetime(" 12 h ") == dt.timedelta(hours=12)
    assert parse_lifetime("30d") == dt.timedelta(days=30)
    assert parse_lifetime("2w") == dt.timedelta(weeks=2)


def test_revoking_names_a_malformed_or_unknown_token(engine):
    refused = refusal(tokens.revoke_token, UnitOfWork(engine), "not-a-token-id")
    assert (refused.field, refused.reason) == ("token_id", "not a valid token id (a UUID)")
    unknown = uuid.uuid4()
    with pytest.raises(NotFound, match=f"token {unknown} not found"):
        tokens.revoke_token(UnitOfWork(engine), str(unknown))


def test_only_a_tenant_admin_changes_the_policy_to_a_plain_role_name():
    tenant = uuid.uuid4()
    with pytest.raises(Forbidden) as caught:
        check_policy_change(person(tenant, "sam", STEWARD), "auditor")
    assert str(caught.value) == "changing the approval policy requires the tenant_admin role"
    admin = person(tenant, "ada", "tenant_admin")
    assert check_policy_change(admin, "  auditor ") == "auditor"
    refused = refusal(check_policy_change, admin, "two words")
    assert (refused.field, refused.reason) == (
        "required_role",
        "must be a role name (letters, digits, _ or -)",
    )


def test_a_rejected_or_cancelled_request_records_when_it_was_decided(engine, tenant):
    alice = person(tenant, "alice")
    rejected = approvals.submit(UnitOfWork(engine), alice, metadata_request())
    cancelled = approvals.submit(UnitOfWork(engine), alice, kpi_request())
    before = dt.datetime.now(dt.UTC)
    bob = person(tenant, "bob", rejected.required_role)
    approvals.reject(UnitOfWork(engine), bob, rejected.id, "wrong table")
    approvals.cancel(UnitOfWork(engine), alice, cancelled.id)
    for approval_id, decider in ((rejected.id, "bob"), (cancelled.id, "alice")):
        stored = approvals.get_approval(UnitOfWork(engine), alice, approval_id)
        decided_at = stored.decided_at
        assert decided_at is not None and stored.decided_by == decider
        utc = decided_at if decided_at.tzinfo else decided_at.replace(tzinfo=dt.UTC)
        assert before <= utc <= dt.datetime.now(dt.UTC)


def test_the_inbox_pages_fifty_without_payloads_by_default(engine, tenant):
    alice = person(tenant, "alice")
    for n in range(51):
        approvals.submit(UnitOfWork(engine), alice, metadata_request(key=f"finance.f{n:02}"))
    approvals.submit(UnitOfWork(engine), alice, kpi_request())

    page = approvals.list_approvals(UnitOfWork(engine), alice)
    assert len(page) == 50
    assert page[0].summary["entity_key"] == "finance.kpi.gross_margin"  # newest first
    assert page[0].payload_json is None and page[0].current_state_json is None
    tier2 = approvals.list_approvals(UnitOfWork(engine), alice, tier=Tier.TIER2)
    assert [listing.summary["entity_key"] for listing in tier2] == ["finance.kpi.gross_margin"]
    pending = approvals.list_approvals(
        UnitOfWork(engine), alice, status=ApprovalStatus.PENDING, limit=1000
    )
    assert len(pending) == 52
    refused = refusal(approvals.list_approvals, UnitOfWork(engine), alice, offset=-1)
    assert refused.field == "offset"


def test_a_listing_without_its_large_fields_embeds_null_for_them():
    listing = ApprovalListing({"id": "a1"})
    assert listing.as_dict(include_payload=False) == {"id": "a1"}
    assert orjson.loads(orjson.dumps(listing.as_dict(include_payload=True))) == {
        "id": "a1",
        "payload": None,
        "current_state": None,
    }
