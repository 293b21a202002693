"""What a change request may carry: a submitted request parsed and bounded (size, depth, NUL
characters) into the entity's normalised new state, and decision notes checked, each failing
with an error naming its field before anything is stored."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from mdstudio_core.domain.approval_policy import ALLOWED_LANES
from mdstudio_core.domain.errors import InvalidInput, PayloadTooLarge, field_path
from mdstudio_core.domain.model import (
    KEY_FIELD,
    PAYLOAD_MODELS,
    TERM_PATTERN,
    ApprovalRequest,
    Binding,
    EntityStatus,
    EntityType,
    parse_id,
)

# Bounds on what a request may carry. A real payload nests about six levels deep (request,
# payload, binding, columns, a column, its allowed values).
MAX_JSON_DEPTH = 32
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def validate_request(
    raw: Mapping[str, Any], max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[ApprovalRequest, dict[str, Any]]:
    """Parse a submitted request; return it with the entity's normalised new state.

    Raises `InvalidInput` naming the first offending field (e.g. `payload.binding.columns[0].name`),
    and `PayloadTooLarge` for a payload over `max_payload_bytes` of JSON.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("the request must be a JSON object", field="request")
    check_depth(raw)
    try:
        size = len(orjson.dumps(raw.get("payload"), option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidInput(f"is not storable JSON: {exc}", field="payload") from None
    if size > max_payload_bytes:
        raise PayloadTooLarge(
            f"is {size} bytes of JSON, more than the {max_payload_bytes} allowed "
            "(MDSTUDIO_MAX_PAYLOAD_BYTES)",
            field="payload",
        )
    check_no_nul(raw, "")
    try:
        request = ApprovalRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    if request.lane not in ALLOWED_LANES[request.tier]:
        raise InvalidInput(
            f"{request.tier.value} changes go through the "
            f"{' or '.join(sorted(lane.value for lane in ALLOWED_LANES[request.tier]))} lane",
            field="lane",
        )
    model = PAYLOAD_MODELS[request.entity_type]
    try:
        payload: BaseModel = model.model_validate(request.payload)
    except ValidationError as exc:
        raise _invalid(exc, prefix="payload") from exc

    key_field = KEY_FIELD[request.entity_type]
    payload_key = getattr(payload, key_field)
    if request.entity_type is EntityType.GLOSSARY:
        entity_key = request.entity_key or payload_key
        _check_glossary_key(entity_key)
    else:
        if request.entity_key is not None and request.entity_key != payload_key:
            raise InvalidInput(
                f"does not match payload.{key_field} ({payload_key!r})", field="entity_key"
            )
        entity_key = payload_key
    payload_tier = getattr(payload, "tier", request.tier)
    if payload_tier != request.tier:
        raise InvalidInput(
            f"{payload_tier.value} does not match the request's tier {request.tier.value}",
            field="payload.tier",
        )

    state = payload.model_dump(mode="json", by_alias=True)
    if isinstance(getattr(payload, "binding", None), Binding):
        state["binding"] = payload.binding.to_json()  # type: ignore[attr-defined]
    state["canonical_key"] = entity_key
    state["tier"] = request.tier.value
    return request.model_copy(update={"entity_key": entity_key}), state


def parse_approval_id(value: uuid.UUID | str) -> uuid.UUID:
    return parse_id(value, "approval_id")


def check_reason(reason: str | None, field: str = "reason") -> str | None:
    """A decision note, stripped; bounded and free of NUL (PostgreSQL text cannot hold it)."""
    reason = (reason or "").strip() or None
    if reason is not None:
        if len(reason) > 10_000:
            raise InvalidInput("must be at most 10000 characters", field=field)
        check_no_nul(reason, field)
    return reason


def rejection_reason(reason: str | None) -> str:
    """A rejection needs a reason, so the requester learns why."""
    reason = check_reason(reason)
    if not reason:
        raise InvalidInput("a reason is required to reject a request", field="reason")
    return reason


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit` (checked without recursion, so no depth of input
    can exhaust the stack of what validates it next)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if not isinstance(item, Mapping | list):
            continue
        if depth > limit:
            raise InvalidInput(f"is nested deeper than {limit} levels", field=path or "request")
        children = item.items() if isinstance(item, Mapping) else enumerate(item)
        for key, child in children:
            child_path = (
                f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
            )
            stack.append((child, child_path, depth + 1))


def check_no_nul(value: Any, path: str) -> None:
    """Refuse NUL characters anywhere in a request: PostgreSQL can store them neither in text
    nor in JSONB, so they would fail late, as a database error, instead of as invalid input."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("must not contain NUL characters", field=path or "request")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_no_nul(key, path or "request")
            check_no_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_no_nul(item, f"{path}[{index}]")


def _check_glossary_key(key: str) -> None:
    """A glossary key names the entry everywhere (Dagster partitions too, where `..` would
    read as a range)."""
    if not re.fullmatch(TERM_PATTERN, key) or len(key) > 200 or ".." in key:
        raise InvalidInput(
            "a glossary key is a term: letters, digits, spaces and . _ ' & / ( ) + - (no '..')",
            field="entity_key",
        )


def _invalid(exc: ValidationError, prefix: str | None = None) -> InvalidInput:
    """Turn pydantic's errors into one message naming each field, e.g.
    `payload.binding.columns[0].name: String should match pattern ...`."""
    messages = [(field_path(e["loc"], prefix or "") or "request", e["msg"]) for e in exc.errors()]
    first_field = messages[0][0]
    detail = "; ".join(f"{field}: {message}" for field, message in messages[:5])
    return InvalidInput(detail.removeprefix(f"{first_field}: "), field=first_field)


def field_binding_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """`deprecated`, `unbound` or `rebound` when `new` (a field's state) takes `old`'s
    binding away or changes it; None otherwise."""
    if new.get("status") == EntityStatus.DEPRECATED.value != old.get("status"):
        return "deprecated"
    if not new.get("binding"):
        return "unbound"
    return "rebound" if new.get("binding") != old.get("binding") else None
