"""The event catalogue is the one place an event type is named: no other module of the two
packages writes an event name as a string, and every type has exactly one reachable schema."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
import uuid
from pathlib import Path

import pytest

from mdstudio_core.domain import events
from mdstudio_core.domain.events import (
    EVENT_SCHEMAS,
    ApprovalApproved,
    EventPayload,
    EventType,
    LineageChanged,
    ProfileFailed,
    ProfileRequested,
    read_payload,
    validate_event,
)
from mdstudio_core.domain.model import EntityType, Trigger
from tests.support.factories import make_event

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mdstudio_core", "mdstudio_pipelines")
CATALOGUE = ROOT / "mdstudio_core/domain/events.py"
NAMES = {member.value for member in EventType}
NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def event_names_in(source: str) -> list[tuple[int, str]]:
    """Each string constant equal to an event name, and each f-string that can build one."""
    found = []
    formatted: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            formatted.update(id(part) for part in node.values)
            pattern = "".join(
                re.escape(part.value) if isinstance(part, ast.Constant) else ".+"
                for part in node.values
            )
            text = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
            # A name needs words written out: `f"{schema}.{table}"` builds none on its own.
            if re.search("[a-z]", text) and any(re.fullmatch(pattern, name) for name in NAMES):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in formatted:
            found.append((node.lineno, node.value))
    return found


def modules() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and path != CATALOGUE
    ]


def test_no_event_name_is_written_outside_the_catalogue() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in modules()
        for line, text in event_names_in(path.read_text())
    ]
    assert offences == []


@pytest.mark.parametrize(
    "source",
    [
        'kind = "approval.approved"',
        'if event.type == "metadata.profile.due": pass',
        'name = f"{prefix}.approved"',
        'name = f"metadata.{what}"',
    ],
)
def test_the_check_finds_a_literal_event_name(source: str) -> None:
    assert event_names_in(source)


@pytest.mark.parametrize(
    "source",
    [
        "kind = EventType.APPROVAL_APPROVED",
        'template = "approval.html"',
        'qualified = f"{table.schema}.{table.name}"',
        'line = f"handles events again ({event.type} {event.id})"',
    ],
)
def test_the_check_leaves_other_strings(source: str) -> None:
    assert event_names_in(source) == []


def test_every_event_type_has_a_schema_and_every_schema_a_type() -> None:
    assert set(EVENT_SCHEMAS) == set(EventType)
    defined = {
        schema
        for name, schema in inspect.getmembers(events, inspect.isclass)
        if issubclass(schema, EventPayload)
        and schema is not EventPayload
        and not name.startswith("_")
        and schema.__module__ == events.__name__
    }
    assert defined == set(EVENT_SCHEMAS.values())


def test_a_typed_payload_is_stored_as_its_json_and_read_back_typed() -> None:
    requested = ProfileRequested(
        canonical_key="orders.amount", trigger=Trigger.MANUAL, force=True, requested_by="ana"
    )
    stored = validate_event(EventType.PROFILE_REQUESTED, requested)
    assert stored == validate_event(EventType.PROFILE_REQUESTED, requested.model_dump())
    event = make_event(
        EventType.PROFILE_REQUESTED,
        uuid.uuid4(),
        "orders.amount",
        stored,
        actor="ana",
        occurred_at=NOW,
    )
    assert read_payload(event, ProfileRequested) == requested


def test_a_payload_of_another_type_is_refused() -> None:
    failed = ProfileFailed(canonical_key="k", tier="tier1", run_id=None, error="boom")
    with pytest.raises(ValueError, match="is a ProfileCompleted"):
        validate_event(EventType.PROFILE_COMPLETED, failed)
    payload = validate_event(EventType.PROFILE_FAILED, failed)
    event = make_event(
        EventType.PROFILE_FAILED, uuid.uuid4(), "k", payload, actor="system", occurred_at=NOW
    )
    with pytest.raises(ValueError, match="is a ProfileFailed, not ApprovalApproved"):
        read_payload(event, ApprovalApproved)


def test_a_stored_payload_its_schema_refuses_is_named_in_one_line() -> None:
    event = make_event(
        EventType.LINEAGE_CHANGED,
        uuid.uuid4(),
        "k",
        {"canonical_key": "k", "added_inputs": ["a"]},
        actor="bob",
        occurred_at=NOW,
        entity_type=EntityType.KPI,
    )
    with pytest.raises(ValueError) as refused:
        read_payload(event, LineageChanged)
    assert str(refused.value) == ("invalid lineage.changed payload: removed_inputs: Field required")
