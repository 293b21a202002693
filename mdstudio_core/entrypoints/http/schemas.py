"""Request bodies and the documented shapes of responses. Records the domain already defines
(an approval, an event, a saved profile) are documented as they are; only the pages that wrap
them and the flat live-entity forms are written here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
import uuid
from typing import Annotated, Any

import orjson
from fastapi import Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.diff import Change
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.incidents import Incident
from mdstudio_core.domain.model import CANONICAL_KEY_PATTERN, EntityStatus, EntityType, Lane, Tier
from mdstudio_core.domain.notifications import Delivery
from mdstudio_core.domain.quality import StoredProfile
from mdstudio_core.service_layer.catalog import MAX_PAGE_SIZE, MAX_POSITION


def json_bytes(content: Any) -> bytes:
    """JSON via orjson, straight from the domain's records (dataclasses, UUIDs, datetimes,
    enums)."""
    return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class JsonResponse(JSONResponse):
    """JSON via orjson, straight from the domain's records (dataclasses, UUIDs, datetimes,
    enums): no model pass (the documented shapes are checked by the schemathesis tests)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Offset = Annotated[int, Query(ge=0, le=MAX_POSITION)]
CanonicalKey = Annotated[str, Path(pattern=CANONICAL_KEY_PATTERN, max_length=200)]


class _Body(BaseModel):
    """A request body: a field it does not know is refused (422), never ignored."""

    model_config = ConfigDict(extra="forbid")


class Decision(_Body):
    reason: str | None = None


class Rejection(_Body):
    reason: str = Field(description="Why the request is turned down (required, not blank).")


class Acknowledgement(_Body):
    note: str | None = None


class Resolution(_Body):
    reason: str = Field(description="Why the incident is closed (required, not blank).")


class NewSubscription(_Body):
    url: str = Field(
        description="http(s) URL that receives the POSTs; refused when its host is or resolves "
        "to a non-public address (unless MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1)."
    )
    events: list[str] | None = Field(
        None, description="Event type patterns (`*` wildcard); default `quality.incident.*`."
    )
    min_tier: Tier | None = Field(None, description="Only events of this tier or stricter.")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    url: str
    host: str
    events: list[str]
    min_tier: Tier | None
    created_at: dt.datetime
    created_by: str
    unsubscribed_at: dt.datetime | None
    secret: str | None = Field(None, description="Only in the answer to subscribing.")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class _Page(BaseModel):
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(items) if len(items) == limit else None,
    }


def _approval_item() -> type[BaseModel]:
    """An approval as the inbox lists it: `payload` and `current_state` only with
    `include=payload` (derived from the domain record, not written again)."""
    hints = typing.get_type_hints(Approval)
    fields: dict[str, Any] = {
        field.name: (hints[field.name], ...) for field in dataclasses.fields(Approval)
    }
    for large in ("payload", "current_state"):
        fields[large] = (hints[large] | None, None)
    fields["endorsements"] = (hints["endorsements"], ())  # on a request's own page
    return create_model("ApprovalItem", **fields)


ApprovalItem = _approval_item()


class KpiImpact(BaseModel):
    key: str
    tier: Tier
    trust_score: float | None


def _approval_out() -> type[BaseModel]:
    """One request in full, with `impact`: the KPIs depending on the field whose binding it
    changes, deprecates or unbinds."""
    hints = typing.get_type_hints(Approval)
    fields: dict[str, Any] = {
        field.name: (hints[field.name], ...) for field in dataclasses.fields(Approval)
    }
    fields["impact"] = (list[KpiImpact], ...)
    return create_model("ApprovalOut", **fields)


ApprovalOut = _approval_out()


class ChangeOut(BaseModel):
    """One changed field of an item (`domain/diff.py`)."""

    field: str
    change: Change
    old: Any = None
    new: Any = None


class ChangeSetItemOut(BaseModel):
    item: int = Field(description="The item's number, from 1.")
    entity_type: EntityType
    entity_key: str
    entity_id: uuid.UUID | None
    tier: Tier
    lane: Lane
    required_role: str = Field(description="The role the item alone would need.")
    stale: bool = Field(description="Pending, and its entity changed since submission.")
    changes: list[ChangeOut]
    payload: dict[str, Any]
    current_state: dict[str, Any] | None


def _change_set_out() -> type[BaseModel]:
    """A change set: its approval request (a request of entity type CHANGE_SET keyed by its
    title), its items with their changes, and `impact`: every KPI any item endangers."""
    hints = typing.get_type_hints(Approval)
    fields: dict[str, Any] = {
        field.name: (hints[field.name], ...) for field in dataclasses.fields(Approval)
    }
    fields["title"] = (str, ...)
    fields["items"] = (list[ChangeSetItemOut], ...)
    fields["impact"] = (list[KpiImpact], ...)
    return create_model("ChangeSetOut", **fields)


ChangeSetOut = _change_set_out()


class ChangeSetIn(_Body):
    """`POST /change-sets`: a title and 1 to 10,000 requests (each as `POST /approvals`)."""

    title: str = Field(description="Letters, digits, spaces and . _ ' & / ( ) + -.")
    requests: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class IncidentPage(_Page):
    items: list[Incident]


class DeliveryPage(_Page):
    items: list[Delivery]


class ApprovalPage(_Page):
    items: list[ApprovalItem]  # type: ignore[valid-type]


class _EntityOut(BaseModel):
    """`LiveEntity.as_dict()`: the entity's governed fields, flat, with its bookkeeping."""

    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    owner: str | None
    status: EntityStatus
    version: int
    updated_at: dt.datetime
    updated_by: str


class MetadataOut(_EntityOut):
    label: str
    description: str
    domain: str
    data_type: str
    binding: dict[str, Any] | None


class MetadataPage(_Page):
    items: list[MetadataOut]


class KpiOut(_EntityOut):
    name: str
    description: str
    expression: str
    depends_on: list[str]


class KpiPage(_Page):
    items: list[KpiOut]


class TrustInput(BaseModel):
    key: str
    tier: Tier | None
    quality_score: float | None
    profiled_at: dt.datetime | None
    stale: bool


class UnscoredInput(BaseModel):
    key: str
    reason: str


class KpiTrustOut(BaseModel):
    """A KPI's trust: the lowest input score (stale inputs discounted), null when an input is
    unbound or never profiled (listed in `unscored_inputs`)."""

    key: str
    entity_type: str
    tier: Tier
    trust_score: float | None
    weakest_input: str | None
    inputs: list[TrustInput]
    unscored_inputs: list[UnscoredInput]


class FieldLineageOut(BaseModel):
    key: str
    entity_type: str
    table: str | None
    columns: list[str]
    kpis: list[KpiImpact]


class ProfileHistory(BaseModel):
    items: list[StoredProfile]


class EventPage(BaseModel):
    items: list[Event]
    next_after: int = Field(description="Pass as `after` to continue after this page.")


class Health(BaseModel):
    status: str
    revision: str
