"""What a caller is told when a service refuses, and what the listings give by default: the
field a refusal names is the interface (exit 2 / HTTP 422 name it), and so is the message.
(Surviving mutants of `make mutation` showed no test read these.)"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest
from pydantic import BaseModel, ValidationError, model_validator

from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approval_requests import _invalid
from mdstudio_core.domain.approvals import (
    MAX_JSON_DEPTH,
    ApprovalListing,
    check_depth,
    check_no_nul,
    check_policy_change,
    check_reason,
    parse_approval_id,
    validate_request,
)
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from mdstudio_core.domain.events import validate_event
from mdstudio_core.domain.model import ApprovalStatus, Binding, ColumnRule, Tier
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.tokens import check_identity, parse_lifetime
from tests.support.factories import (
    SETTINGS,
    STEWARD,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
)

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


def test_revoking_names_a_malformed_or_unknown_token(uow):
    refused = refusal(tokens.revoke_token, uow, "not-a-token-id")
    assert (refused.field, refused.reason) == ("token_id", "not a valid token id (a UUID)")
    unknown = uuid.uuid4()
    with pytest.raises(NotFound, match=f"token {unknown} not found"):
        tokens.revoke_token(uow, str(unknown))


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


def test_a_rejected_or_cancelled_request_records_when_it_was_decided(uow, tenant):
    alice = person(tenant, "alice")
    rejected = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    cancelled = approvals.submit(uow, alice, kpi_request(), SETTINGS)
    before = dt.datetime.now(dt.UTC)
    bob = person(tenant, "bob", rejected.required_role)
    approvals.reject(uow, bob, rejected.id, "wrong table")
    approvals.cancel(uow, alice, cancelled.id)
    for approval_id, decider in ((rejected.id, "bob"), (cancelled.id, "alice")):
        stored = approvals.get_approval(uow, alice, approval_id)
        decided_at = stored.decided_at
        assert decided_at is not None and stored.decided_by == decider
        utc = decided_at if decided_at.tzinfo else decided_at.replace(tzinfo=dt.UTC)
        assert before <= utc <= dt.datetime.now(dt.UTC)


def test_the_inbox_pages_fifty_without_payloads_by_default(uow, tenant):
    alice = person(tenant, "alice")
    for n in range(51):
        approvals.submit(uow, alice, metadata_request(key=f"finance.f{n:02}"), SETTINGS)
    approvals.submit(uow, alice, kpi_request(), SETTINGS)

    page = approvals.list_approvals(uow, alice, ApprovalFilter())
    assert len(page) == 50
    assert page[0].summary["entity_key"] == "finance.kpi.gross_margin"  # newest first
    assert page[0].payload_json is None and page[0].current_state_json is None
    tier2 = approvals.list_approvals(uow, alice, ApprovalFilter(tier=Tier.TIER2))
    assert [listing.summary["entity_key"] for listing in tier2] == ["finance.kpi.gross_margin"]
    pending = approvals.list_approvals(
        uow, alice, ApprovalFilter(status=ApprovalStatus.PENDING, limit=1000)
    )
    assert len(pending) == 52
    refused = refusal(approvals.list_approvals, uow, alice, ApprovalFilter(offset=-1))
    assert refused.field == "offset"


def test_a_listing_without_its_large_fields_embeds_null_for_them():
    listing = ApprovalListing({"id": "a1"})
    assert listing.as_dict(include_payload=False) == {"id": "a1"}
    assert orjson.loads(orjson.dumps(listing.as_dict(include_payload=True))) == {
        "id": "a1",
        "payload": None,
        "current_state": None,
    }


def test_a_glossary_key_with_two_dots_is_refused_and_two_hundred_characters_are_enough():
    refused = refusal(validate_request, glossary_request("Gross..Revenue"))
    assert (refused.field, refused.reason) == (
        "entity_key",
        "a glossary key is a term: letters, digits, spaces and . _ ' & / ( ) + - (no '..')",
    )
    request, _ = validate_request(glossary_request("G" * 200))
    assert request.entity_key == "G" * 200


def test_a_refused_request_names_the_first_field_and_lists_five_problems_at_most():
    request = metadata_request(label=1, description=2, domain=3, owner=4, data_type=5)
    request["payload"]["status"] = 6
    refused = refusal(validate_request, request)
    assert refused.field == "payload.label"
    problems = refused.reason.split("; ")
    assert problems[0] == "Input should be a valid string"
    assert problems[1:] == [
        f"payload.{name}: Input should be a valid string"
        for name in ("description", "domain", "owner", "data_type")
    ]


def test_a_problem_with_the_whole_request_is_named_as_the_request():
    class Whole(BaseModel):
        @model_validator(mode="after")
        def _refuse(self) -> Whole:
            raise ValueError("whole thing bad")

    with pytest.raises(ValidationError) as caught:
        Whole()
    refused = _invalid(caught.value)
    assert (refused.field, refused.reason) == ("request", "Value error, whole thing bad")
    assert str(InvalidInput("plain message")) == "plain message"
    assert str(InvalidInput("is wrong", field="tier")) == "tier: is wrong"


def test_bounds_of_different_kinds_are_named_in_the_refusal():
    with pytest.raises(ValidationError, match="min is a number and max is a date: both must"):
        ColumnRule(name="c", min=1, max=dt.date(2020, 1, 1))
    with pytest.raises(ValidationError, match="min is a date and max is a number"):
        ColumnRule(name="c", min=dt.date(2020, 1, 1), max=5)


def test_an_approval_keeps_its_reason_and_the_entity_keeps_the_requests_id(uow, tenant):
    alice = person(tenant, "alice")
    pending = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    bob = person(tenant, "bob", pending.required_role)
    approvals.approve(uow, bob, pending.id, "  checked with finance ", SETTINGS)
    stored = approvals.get_approval(uow, alice, pending.id)
    assert stored.decision_reason == "checked with finance"
    with uow:
        [event] = [e for e in uow.events.list(tenant_id=tenant) if e.type == "approval.approved"]
        live = uow.entities.get(pending.entity_type, tenant, pending.entity_key)
    assert event.payload["reason"] == "checked with finance"
    assert live.id == pending.entity_id


def test_who_may_not_decide_is_told_why(uow, tenant):
    alice = person(tenant, "alice", "kernel_owner")
    pending = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    with pytest.raises(Forbidden) as caught:
        approvals.approve(uow, alice, pending.id, None, SETTINGS)
    assert str(caught.value) == (
        "four-eyes rule: the requester may not decide their own request (cancel it instead)"
    )
    carl = person(tenant, "carl", "b_role", "a_role")
    with pytest.raises(Forbidden, match=r"\(you have: a_role, b_role\)"):
        approvals.approve(uow, carl, pending.id, None, SETTINGS)
    approvals.reject(uow, person(tenant, "bob", "kernel_owner"), pending.id, "no")
    with pytest.raises(Conflict, match=f"approval {pending.id} is already rejected by bob$"):
        approvals.approve(uow, person(tenant, "dan", "kernel_owner"), pending.id, None, SETTINGS)
    refused = refusal(approvals.reject, uow, carl, pending.id, " ")
    assert (refused.field, refused.reason) == ("reason", "a reason is required to reject a request")


def test_an_event_with_an_unknown_type_or_a_bad_payload_is_a_bug_named_as_such():
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        validate_event("nope", {})
    with pytest.raises(ValueError, match=r"invalid metadata\.profile\.failed payload: "):
        validate_event("metadata.profile.failed", {"canonical_key": "k"})


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("a\x00b", "request"),
        ({"payload": {"label": "x\x00"}}, "payload.label"),
        ({"payload": {"tags": ["ok", "n\x00"]}}, "payload.tags[1]"),
        ({"payload": {"k\x00ey": 1}}, "payload"),
        ({"top\x00": 1}, "request"),
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_where(value, field):
    refused = refusal(check_no_nul, value, "")
    assert (refused.field, refused.reason) == (field, "must not contain NUL characters")


def test_a_malformed_approval_id_is_named():
    refused = refusal(parse_approval_id, "42")
    assert (refused.field, refused.reason) == ("approval_id", "not a valid approval id (a UUID)")
    same = uuid.uuid4()
    assert parse_approval_id(same) is same and parse_approval_id(str(same)) == same


@pytest.mark.parametrize(
    ("user", "roles", "field", "message"),
    [
        ("", (), "user", "must be 1 to 200 characters, without surrounding spaces"),
        ("u" * 201, (), "user", "must be 1 to 200 characters, without surrounding spaces"),
        (" ana", (), "user", "must be 1 to 200 characters, without surrounding spaces"),
        ("a\nb", (), "user", "must not contain control characters"),
        ("a\x00b", (), "user", "must not contain control characters"),
        ("ana", ("a role",), "role", "must be a role name (letters, digits, _ or -)"),
    ],
)
def test_an_identity_is_checked_before_it_is_trusted(user, roles, field, message):
    refused = refusal(check_identity, person(uuid.uuid4(), user, *roles))
    assert (refused.field, refused.reason) == (field, message)


def test_the_longest_plain_identity_is_accepted():
    who = person(uuid.uuid4(), "u" * 200, "steward", "X-1")
    assert check_identity(who) is who
    assert check_identity(person(uuid.uuid4(), "XX")).user == "XX"


def test_a_binding_is_stored_under_its_public_names_without_empty_fields():
    binding = Binding.model_validate(
        {"source": "wh", "schema": "sales", "table": "orders", "columns": [{"name": "id"}]}
    )
    stored = binding.to_json()
    assert stored == {
        "source": "wh",
        "schema": "sales",
        "table": "orders",
        "columns": [{"name": "id", "nullable": False, "unique": False}],
    }
    assert orjson.loads(orjson.dumps(stored)) == stored
    no_schema = Binding.model_validate({"source": "wh", "table": "t", "columns": [{"name": "id"}]})
    assert "schema" not in no_schema.to_json()


# -- the bounds and refusals of request validation, exactly (each was a surviving mutant) ------


def nested(depth: int) -> object:
    """A JSON value `depth` levels deep (a scalar counts no level): lists and objects alternate,
    with a scalar sibling at every level."""
    value: object = 1
    for level in range(depth):
        value = {"x": value, "s": 0} if level % 2 else [value, 0]
    return value


def test_json_is_refused_one_level_past_the_depth_limit_naming_the_deepest_path():
    check_depth(nested(MAX_JSON_DEPTH))
    check_depth(nested(3), limit=3)
    check_depth("a string is no level", limit=0)
    refused = refusal(check_depth, nested(MAX_JSON_DEPTH + 1))
    assert refused.reason == f"is nested deeper than {MAX_JSON_DEPTH} levels"
    assert refused.field == "[0].x" * 16
    assert refusal(check_depth, [[]], limit=1).field == "[0]"
    assert refusal(check_depth, {"a": {"b": {}}}, limit=2).field == "a.b"
    assert refusal(check_depth, {"a": 1}, limit=0).field == "request"


def test_a_request_nested_too_deeply_names_the_payload_path():
    request = metadata_request()
    request["payload"]["binding"] = nested(MAX_JSON_DEPTH - 1)
    refused = refusal(validate_request, request)
    assert refused.field == "payload.binding" + "[0].x" * 15
    assert refused.reason == f"is nested deeper than {MAX_JSON_DEPTH} levels"


def test_a_request_that_is_no_object_is_named_as_the_request():
    refused = refusal(validate_request, ["GLOBAL_METADATA"])
    assert (refused.field, refused.reason) == ("request", "the request must be a JSON object")


def test_a_payload_json_cannot_store_is_refused_as_the_payload():
    refused = refusal(validate_request, metadata_request(label=2**64))
    assert refused.field == "payload"
    assert refused.reason.startswith("is not storable JSON: ")


def test_a_payload_of_exactly_the_allowed_size_passes_and_one_byte_more_is_refused():
    request = metadata_request()
    size = len(orjson.dumps(request["payload"]))
    validate_request(request, max_payload_bytes=size)
    with pytest.raises(PayloadTooLarge) as caught:
        validate_request(request, max_payload_bytes=size - 1)
    assert caught.value.field == "payload"
    assert caught.value.reason == (
        f"is {size} bytes of JSON, more than the {size - 1} allowed (MDSTUDIO_MAX_PAYLOAD_BYTES)"
    )


def test_a_nul_character_in_a_request_is_refused_naming_its_field():
    refused = refusal(validate_request, metadata_request(description="a\x00b"))
    assert (refused.field, refused.reason) == (
        "payload.description",
        "must not contain NUL characters",
    )


def test_a_request_on_a_lane_its_tier_may_not_use_is_told_which_lanes_it_may():
    refused = refusal(validate_request, metadata_request(tier="tier1", lane="governed"))
    assert (refused.field, refused.reason) == (
        "lane",
        "tier1 changes go through the draft or kernel lane",
    )


def test_a_key_or_tier_contradicting_the_payload_is_refused_with_both_values():
    request = metadata_request()
    request["entity_key"] = "finance.revenue.other"
    refused = refusal(validate_request, request)
    assert (refused.field, refused.reason) == (
        "entity_key",
        "does not match payload.canonical_key ('finance.revenue.gross_amount')",
    )
    request = metadata_request(tier="tier2")
    request["payload"]["tier"] = "tier3"
    refused = refusal(validate_request, request)
    assert (refused.field, refused.reason) == (
        "payload.tier",
        "tier3 does not match the request's tier tier2",
    )


def plain_json(value: object) -> bool:
    """Whether `value` is made of JSON's own types only (no enum, date or other subclass)."""
    if type(value) is dict:
        return all(type(k) is str and plain_json(v) for k, v in value.items())
    if type(value) is list:
        return all(plain_json(item) for item in value)
    return value is None or type(value) in (str, int, float, bool)


def test_the_state_of_a_request_and_a_binding_with_date_bounds_are_plain_json():
    binding = {
        "schema": "sales",
        "table": "orders",
        "columns": [{"name": "ordered_on", "min": "2020-01-01", "max": "2030-12-31"}],
    }
    assert Binding.model_validate(binding).to_json() == {
        "source": "warehouse",
        "schema": "sales",
        "table": "orders",
        "columns": [
            {
                "name": "ordered_on",
                "nullable": False,
                "unique": False,
                "min": "2020-01-01",
                "max": "2030-12-31",
            }
        ],
    }
    _, state = validate_request(metadata_request(binding=binding))
    assert plain_json(state)
    assert state["status"] == "active"
    assert state["binding"]["columns"][0]["min"] == "2020-01-01"


def test_a_decision_note_is_stripped_bounded_at_ten_thousand_characters_and_may_be_empty():
    assert check_reason(None) is None
    assert check_reason("   ") is None
    assert check_reason("  looks right ") == "looks right"
    assert check_reason("x" * 10_000) == "x" * 10_000
    refused = refusal(check_reason, "x" * 10_001, field="note")
    assert (refused.field, refused.reason) == ("note", "must be at most 10000 characters")


def test_a_token_is_mds_and_43_characters_and_authenticates_as_its_identity(uow, tenant):
    identity = person(tenant, "alice", "metadata_steward")
    secret, _ = tokens.create_token(uow, identity)
    assert secret.startswith("mds_") and len(secret) == len("mds_") + 43
    assert tokens.authenticate(uow, secret) == identity
