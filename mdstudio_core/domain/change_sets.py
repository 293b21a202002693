"""Change sets: many requests, one review, one atomic decision.

A change set is one approval request (entity type CHANGE_SET, keyed by its title) whose items
are ordinary requests, numbered from 1. It is submitted all or nothing (every item valid, or
every invalid item listed and nothing stored); it is decided as one request, by the role of its
strictest item, with four-eyes and the two-person rule over the whole set; approving it applies
every item or none (a stale item makes the whole decision a conflict naming it). Each item keeps
the rules of a single request: `Approval.submit` judges it and `Approval.approve` writes its
events. Nothing here touches a store.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mdstudio_core.domain.approval_policy import (
    ApprovalCounts,
    Cell,
    PolicyOverrides,
    cell_role,
    required_approvals,
    required_cell,
    strictness,
    touched_tier,
)
from mdstudio_core.domain.approval_requests import check_no_nul
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.diff import diff_entity
from mdstudio_core.domain.errors import Conflict, InvalidInput
from mdstudio_core.domain.events import (
    ApprovalApproved,
    EventType,
    NewEvent,
    read_payload,
    validate_event,
)
from mdstudio_core.domain.model import (
    TERM_PATTERN,
    ApprovalStatus,
    EntityType,
    Identity,
    LiveEntity,
    Tier,
)

MAX_ITEMS = 10_000
# The request fields a CSV row may fill besides `payload.<field>` columns.
CSV_REQUEST_COLUMNS = ("entity_type", "entity_key", "tier", "lane")
CSV_PAYLOAD_PREFIX = "payload."
# Errors shown in a problem's `detail` (its `errors` list holds every one).
DETAIL_ERRORS = 20


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """A line or row of a change-set file that is not a request at all (malformed JSON, a
    blank line, a row with too many cells); reported with the other invalid items."""

    reason: str


@dataclasses.dataclass(frozen=True)
class ItemError:
    """What is wrong with item `item` (numbered from 1), and where."""

    item: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        return (
            f"item {self.item}: {self.field}: {self.reason}"
            if self.field
            else (f"item {self.item}: {self.reason}")
        )

    def as_dict(self) -> dict[str, str]:
        return {"item": str(self.item), "field": self.field or "", "message": self.reason}


class InvalidItems(InvalidInput):
    """Items of a change set are invalid: every one is listed by number and field, one per
    line (`item 2: payload.tier: ...`), and nothing is stored."""

    def __init__(self, errors: Sequence[ItemError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))
        self.field = "requests"

    @property
    def detail(self) -> str:
        """The first errors, for a problem's `detail` (its `errors` list has them all)."""
        shown = [str(error) for error in self.errors[:DETAIL_ERRORS]]
        hidden = len(self.errors) - len(shown)
        return "\n".join([*shown, *([f"... and {hidden} more (see errors)"] if hidden else [])])


def item_error(item: int, error: InvalidInput) -> ItemError:
    return ItemError(item, error.field, error.reason)


def check_title(title: Any) -> str:
    """A title names the set where a request names its entity (the inbox, events, Dagster's
    partition of it): a term of letters, digits, spaces and . _ ' & / ( ) + -."""
    if not isinstance(title, str):
        raise InvalidInput("must be a string", field="title")
    title = title.strip()
    check_no_nul(title, "title")
    if not title or len(title) > 200:
        raise InvalidInput("must be 1 to 200 characters", field="title")
    if not re.fullmatch(TERM_PATTERN, title) or ".." in title:
        raise InvalidInput(
            "letters, digits, spaces and . _ ' & / ( ) + - (starting with a letter or digit, "
            "no '..')",
            field="title",
        )
    return title


def check_size(requests: Any) -> list[Any]:
    """A change set holds 1 to `MAX_ITEMS` requests."""
    if not isinstance(requests, list):
        raise InvalidInput("must be a list of requests", field="requests")
    if not requests:
        raise InvalidInput("a change set holds at least one request", field="requests")
    if len(requests) > MAX_ITEMS:
        raise InvalidInput(
            f"holds {len(requests)} requests; a change set holds at most {MAX_ITEMS}",
            field="requests",
        )
    return requests


def parse_body(raw: Any) -> tuple[str, list[Any]]:
    """`{"title": ..., "requests": [...]}` (POST /change-sets)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("must be a JSON object with title and requests", field="body")
    unknown = sorted(set(raw) - {"title", "requests"})
    if unknown:
        raise InvalidInput("unknown field (expected title and requests)", field=unknown[0])
    if "title" not in raw:
        raise InvalidInput("required", field="title")
    if "requests" not in raw:
        raise InvalidInput("required", field="requests")
    return check_title(raw["title"]), check_size(raw["requests"])


def parse_jsonl(text: str) -> list[Any]:
    """One request per line: item n is line n. Trailing blank lines are ignored; a blank line
    before the last request is an unreadable item, so numbers never shift."""
    lines = text.removeprefix("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    requests: list[Any] = []
    for line in lines:
        if not line.strip():
            requests.append(Unreadable("a blank line (one request per line)"))
            continue
        try:
            requests.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            requests.append(Unreadable(f"malformed JSON: {exc}"))
    return requests


def parse_csv(text: str) -> list[Any]:
    """One request per row after the header: item n is row n after it (blank rows skipped).
    Columns: `entity_type`, `tier`, `lane`, optional `entity_key`, and `payload.<field>` for
    each payload field; a cell starting with `[` or `{` is JSON (a list or an object), any
    other is text, and an empty cell leaves its field out."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise InvalidInput(
            "the CSV file is empty: a header row is required", field="file"
        ) from None
    except csv.Error as exc:
        raise InvalidInput(f"the header row is not CSV: {exc}", field="file") from None
    for name in header:
        if name not in CSV_REQUEST_COLUMNS and not (
            name.startswith(CSV_PAYLOAD_PREFIX) and len(name) > len(CSV_PAYLOAD_PREFIX)
        ):
            raise InvalidInput(
                f"unknown column {name!r} in the header (expected "
                f"{', '.join(CSV_REQUEST_COLUMNS)} and payload.<field>)",
                field="file",
            )
    if len(set(header)) != len(header):
        raise InvalidInput("a column is named twice in the header", field="file")
    requests: list[Any] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            requests.append(_csv_request(header, row))
    except csv.Error as exc:  # malformed quoting: the rest of the file cannot be read
        requests.append(Unreadable(f"not CSV: {exc}"))
    return requests


def _csv_request(header: list[str], row: list[str]) -> dict[str, Any] | Unreadable:
    if len(row) > len(header):
        return Unreadable(f"has {len(row)} cells; the header names {len(header)} columns")
    request: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=False):
        if not cell.strip():
            continue
        if name in CSV_REQUEST_COLUMNS:
            request[name] = cell.strip()
            continue
        field = name.removeprefix(CSV_PAYLOAD_PREFIX)
        if cell.lstrip().startswith(("[", "{")):
            try:
                payload[field] = orjson.loads(cell)
            except orjson.JSONDecodeError as exc:
                return Unreadable(f"{name}: malformed JSON: {exc}")
        else:
            payload[field] = cell
    request["payload"] = payload
    return request


def duplicate_errors(keys: Sequence[tuple[EntityType, str] | None]) -> list[ItemError]:
    """Each entity at most once per set: a second change to it would be stale the moment the
    first is applied."""
    first: dict[tuple[EntityType, str], int] = {}
    errors = []
    for item, key in enumerate(keys, 1):
        if key is None:
            continue
        if key in first:
            errors.append(
                ItemError(item, "entity_key", f"{key[1]} is also changed by item {first[key]}")
            )
        else:
            first[key] = item
    return errors


def decisive_cell(item: Approval, breaks_tier1_kpi: bool = False) -> Cell:
    """The policy cell that decides an item, as `Approval.submit` judged it (the lane, the
    requested tier, the live entity's tier, and tier1's when it breaks a tier1 KPI)."""
    live_tier = (item.current_state or {}).get("tier")
    return required_cell(
        item.lane,
        item.tier,
        Tier.TIER1 if breaks_tier1_kpi else Tier(live_tier) if live_tier else None,
    )


@dataclasses.dataclass(frozen=True)
class ChangeSet:
    """A change set: its approval request and its items (item n is `items[n - 1]`), each an
    ordinary request as submitted, with the role it would need alone."""

    approval: Approval
    items: tuple[Approval, ...]

    @classmethod
    def submit(
        cls,
        title: str,
        items: Sequence[Approval],
        cells: Sequence[Cell],
        requester: Identity,
        overrides: PolicyOverrides,
        counts: ApprovalCounts,
        now: dt.datetime,
    ) -> ChangeSet:
        """A pending set of `items` (each from `Approval.submit`, `cells[i]` the cell that
        decides item i): decided by the role of the strictest cell, by as many approvers as
        any item needs."""
        strictest = min(cells, key=strictness)
        approval = Approval.pending(
            requester,
            now,
            entity_type=EntityType.CHANGE_SET,
            entity_id=None,
            entity_key=title,
            cell=strictest,
            payload={"title": title, "items": len(items)},
            current_state=None,
            required_role=cell_role(strictest, overrides),
            required_approvals=max(required_approvals(cell, counts) for cell in cells),
        )
        return cls(approval, tuple(items))

    @property
    def title(self) -> str:
        return self.approval.entity_key

    def deciding(self, item: Approval) -> Approval:
        """An item as the set's decision judges it: the set's request (its id, status,
        requester, role and endorsements), the item's own change."""
        set_ = self.approval
        return dataclasses.replace(
            item,
            id=set_.id,
            status=set_.status,
            requested_by=set_.requested_by,
            requested_at=set_.requested_at,
            decided_by=set_.decided_by,
            decided_at=set_.decided_at,
            decision_reason=set_.decision_reason,
            required_role=set_.required_role,
            required_approvals=1,
            endorsements=set_.endorsements,
        )

    def judged_again(
        self,
        live: Mapping[tuple[EntityType, str], LiveEntity],
        overrides: PolicyOverrides,
        counts: ApprovalCounts,
        breaks_tier1_kpi: Sequence[bool],
    ) -> ChangeSet:
        """The set with the role its decision needs now: each item's cell judged again against
        its live entity (`breaks_tier1_kpi[i]`: item i would now break an active tier1 KPI), as
        `Approval.judged_again` judges one request; when the strictest of them is stricter
        than the set's, its role (and its approver count, if larger) decide the set."""
        now = min(
            (
                required_cell(
                    item.lane,
                    item.tier,
                    touched_tier(live.get((item.entity_type, item.entity_key)), breaking),
                )
                for item, breaking in zip(self.items, breaks_tier1_kpi, strict=True)
            ),
            key=strictness,
        )
        then = (self.approval.lane, self.approval.tier)
        judged = self.approval.stricter(then, now, overrides, counts)
        return self if judged is self.approval else dataclasses.replace(self, approval=judged)

    def stale_items(self, live: Mapping[tuple[EntityType, str], LiveEntity]) -> list[int]:
        """The numbers of the items whose entity changed since submission (`live`: the live
        entities by type and key; a missing one does not exist)."""
        return [
            number
            for number, item in enumerate(self.items, 1)
            if _version(live.get((item.entity_type, item.entity_key))) != item.base_version
        ]

    def approve(
        self,
        decider: Identity,
        live: Mapping[tuple[EntityType, str], LiveEntity],
        now: dt.datetime,
        reason: str | None,
    ) -> tuple[ChangeSet, list[NewEvent]]:
        """Approve the whole set: the set's rules (pending, four-eyes, role, two-person), then
        every item still exactly as submitted (else a conflict naming each stale item). Short
        of the approvers it needs, the approval is an endorsement of the set (one
        `approval.endorsed`); otherwise every item is approved, and its events follow in item
        order, each `approval.approved` carrying the set's id and the item's number."""
        outcome, set_events = self.approval.approve(decider, None, now, reason)
        stale = self.stale_items(live)
        if stale:
            raise Conflict(
                "\n".join(
                    f"item {number}: {self.deciding(self.items[number - 1]).stale_message()}"
                    for number in stale
                )
            )
        if outcome.status is ApprovalStatus.PENDING:  # an endorsement of the set
            return dataclasses.replace(self, approval=outcome), set_events
        decided_items, events = [], []
        for number, item in enumerate(self.items, 1):
            deciding = self.deciding(item)
            decided, item_events = deciding.approve(
                decider, live.get((item.entity_type, item.entity_key)), now, reason
            )
            decided_items.append(decided)
            events.extend(_numbered(event, number) for event in item_events)
        return ChangeSet(outcome, tuple(decided_items)), events

    def as_dict(
        self, live: Mapping[tuple[EntityType, str], LiveEntity] | None = None
    ) -> dict[str, Any]:
        """The set as `approvals show` and `GET /change-sets/{id}` show it: the request's
        fields, its title, and its items with their changes (against the state each was
        submitted against); with `live`, a pending set's items say whether they are stale."""
        stale = set(self.stale_items(live)) if live is not None and self.pending else set()
        return {
            **{f.name: getattr(self.approval, f.name) for f in dataclasses.fields(Approval)},
            "title": self.title,
            "items": [
                {
                    "item": number,
                    "entity_type": item.entity_type,
                    "entity_key": item.entity_key,
                    "entity_id": item.entity_id,
                    "tier": item.tier,
                    "lane": item.lane,
                    "required_role": item.required_role,
                    "stale": number in stale,
                    "changes": [
                        dataclasses.asdict(row)
                        for row in diff_entity(item.current_state, item.payload).rows
                    ],
                    "payload": item.payload,
                    "current_state": item.current_state,
                }
                for number, item in enumerate(self.items, 1)
            ],
        }

    @property
    def pending(self) -> bool:
        return self.approval.status is ApprovalStatus.PENDING


def _version(entity: LiveEntity | None) -> int | None:
    return entity.version if entity else None


def _numbered(event: NewEvent, number: int) -> NewEvent:
    """An item's `approval.approved`, with its number in the set (the payload was validated
    when the event was made; `item` is the one field its schema leaves to the set)."""
    if event.type != EventType.APPROVAL_APPROVED:
        return event
    approved = read_payload(event, ApprovalApproved).model_copy(update={"item": number})
    return dataclasses.replace(event, payload=validate_event(event.type, approved))
