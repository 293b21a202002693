"""Webhook notifications: who hears about which events, how one profiling run's incidents
become one message, what a receiver gets (signed and timestamped, with an idempotency key),
which destinations are refused, and when a failed delivery is tried again. Nothing here
touches a store or the network."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
import ipaddress
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import Tier

DEFAULT_EVENTS = ("quality.incident.*",)
EVENT_PATTERN = re.compile(r"^[a-z0-9_.*]{1,100}$")
MAX_BACKOFF = dt.timedelta(hours=1)
SIGNATURE_HEADER = "X-Mdstudio-Signature"
TIMESTAMP_HEADER = "X-Mdstudio-Timestamp"
DELIVERY_HEADER = "X-Mdstudio-Delivery"
DEFAULT_PORTS = {"http": 80, "https": 443}
# A host name as DNS spells it: labels of 1 to 63 letters, digits, `-` or `_` (an international
# name in its xn-- form), at most 253 characters.
HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?$")
# What the C library's inet_aton reads as an IPv4 address: 0x7f000001, 2130706433, 0177.0.0.1.
LEGACY_IPV4 = re.compile(r"^[0-9a-fx.]+$")
DESTINATION_REFUSED = "destination address not allowed"
SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not tried yet, or tried and due again
    DELIVERED = "delivered"
    FAILED = "failed"  # the last attempt failed; it will be tried again
    DEAD = "dead"  # out of attempts; `notifications redeliver` sends it again


@dataclass(frozen=True)
class Subscription:
    """A tenant's webhook. The secret signs each body; it is shown once, at subscription."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    url: str
    events: tuple[str, ...]
    min_tier: Tier | None
    created_at: dt.datetime
    created_by: str
    secret: str = field(repr=False)
    unsubscribed_at: dt.datetime | None = None

    @property
    def host(self) -> str:
        return host_of(self.url)

    def wants(self, event: Event) -> bool:
        """The event's type matches a pattern, and its tier (if it has one) is at least as
        strict as `min_tier` (tier1 is the strictest)."""
        if not any(fnmatch.fnmatchcase(event.type, pattern) for pattern in self.events):
            return False
        tier = event.payload.get("tier")
        return self.min_tier is None or tier is None or Tier(tier) <= self.min_tier

    def public(self) -> dict[str, Any]:
        """What listings show: everything but the secret."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "url": self.url,
            "host": self.host,
            "events": list(self.events),
            "min_tier": self.min_tier,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "unsubscribed_at": self.unsubscribed_at,
        }


@dataclass(frozen=True)
class Delivery:
    """One message to one subscription: the events of one group (a profiling run's, or a
    single event's). Its id is the receiver's idempotency key."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    subscription_id: uuid.UUID
    group_key: str
    events: list[dict[str, Any]]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    last_error: str | None = None
    last_status_code: int | None = None
    delivered_at: dt.datetime | None = None


def check_url(url: str, allowed_hosts: Iterable[str] | None) -> str:
    """An http(s) URL with a plain host whose host and port the operator allows
    (`MDSTUDIO_NOTIFY_ALLOWED_HOSTS`; unset allows any). Where it resolves to is judged apart
    (`addresses_allowed`), at subscription and at every send."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise InvalidInput("not a valid URL", field="url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("must be an http:// or https:// URL with a host", field="url")
    if len(url) > 2000:
        raise InvalidInput("must be at most 2000 characters", field="url")
    host = parts.hostname
    if not (HOST_NAME.match(host) or (":" in host and literal_address(host))):
        raise InvalidInput(
            "the host must be a DNS name (an international one in its xn-- form) or an address",
            field="url",
        )
    port = port or DEFAULT_PORTS[parts.scheme]
    if allowed_hosts is not None and not host_allowed(host, port, allowed_hosts):
        raise InvalidInput(
            f"host {host} port {port} is not allowed (MDSTUDIO_NOTIFY_ALLOWED_HOSTS; an entry "
            "without a port allows 443 and 80)",
            field="url",
        )
    return url


def host_allowed(host: str, port: int, allowed_hosts: Iterable[str]) -> bool:
    """An entry `host` (or a pattern, `*.slack.com`) allows ports 443 and 80; `host:port`
    allows that port (`host:*` any)."""
    for entry in allowed_hosts:
        name, _, pinned = entry.rpartition(":")
        if not name or ":" in name:  # no port, or an IPv6 address
            name, ports = entry, ("443", "80")
        else:
            ports = (pinned,)
        if fnmatch.fnmatchcase(host, name) and any(
            fnmatch.fnmatchcase(str(port), allowed) for allowed in ports
        ):
            return True
    return False


def destination(url: str) -> tuple[str, int]:
    """The host and port a checked URL's POST goes to."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]


def literal_address(host: str) -> IPAddress | None:
    """The address a host is when it is written as one, in any spelling a resolver takes:
    dotted, hexadecimal (0x7f000001), decimal (2130706433), octal (0177.0.0.1), short (127.1),
    IPv6 (::ffff:127.0.0.1). None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not LEGACY_IPV4.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def address_allowed(address: IPAddress) -> bool:
    """A public unicast address. Refused: loopback, private, link-local, unique-local, shared
    (100.64.0.0/10), unspecified, multicast and reserved addresses, and IPv6 addresses that
    carry one of those (IPv4-mapped, 6to4): what a tenant must never reach inside the network
    mdstudio runs in."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is not None:
            return address_allowed(carried)
    return address.is_global and not (address.is_multicast or address.is_reserved)


def addresses_allowed(addresses: Iterable[IPAddress]) -> bool:
    """Every address a host resolves to must be allowed: one inside is enough to refuse it."""
    return all(address_allowed(address) for address in addresses)


def host_of(url: str) -> str:
    """What logs and errors may name of a destination: its host, never the path (a Slack or
    Teams webhook URL is itself a credential)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def check_event_patterns(patterns: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in (patterns or ()) if p.strip()) or DEFAULT_EVENTS
    for pattern in chosen:
        if not EVENT_PATTERN.match(pattern):
            raise InvalidInput(
                f"{pattern!r} is not an event pattern (letters, digits, '.', '_', '*')",
                field="events",
            )
    return chosen


def group_key(event: Event) -> str:
    """Events of one profiling run travel together; any other event alone."""
    run_id = event.payload.get("run_id")
    return f"run:{run_id}" if run_id else f"event:{event.id}"


def backoff(attempts: int, base: dt.timedelta) -> dt.timedelta:
    """The wait after the `attempts`-th failure: base, 2x, 4x, ... up to an hour. With the
    defaults (30 s, 8 attempts) a receiver down for 30 minutes still gets everything."""
    return min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def message(delivery: Delivery) -> dict[str, Any]:
    """The JSON body. `text` is what Slack and Teams incoming webhooks display as is."""
    return {
        "delivery_id": str(delivery.id),
        "tenant_id": str(delivery.tenant_id),
        "text": summary(delivery.events),
        "events": delivery.events,
    }


def summary(events: Sequence[dict[str, Any]]) -> str:
    lines = [_line(event) for event in events]
    head = "mdstudio: " + ("1 quality event" if len(lines) == 1 else f"{len(lines)} quality events")
    return "\n".join([head, *lines])


def _line(event: dict[str, Any]) -> str:
    payload = event.get("payload", {})
    kind = str(event.get("type", "event"))
    what = (
        f"incident {kind.removeprefix('quality.incident.')}"
        if kind.startswith("quality.incident.")
        else kind
    )
    score, threshold = payload.get("quality_score"), payload.get("threshold")
    measured = (
        f" score {score:g} (minimum {threshold:g})"
        if isinstance(score, int | float) and isinstance(threshold, int | float)
        else ""
    )
    tier = payload.get("tier")
    severity = {"tier1": "critical", "tier2": "warning"}.get(tier, "info")
    reason = payload.get("reason") or payload.get("note") or payload.get("error")
    tier_word = f"{tier} " if tier else ""
    line = f"- [{severity}] {tier_word}{event.get('entity_key')}: {what}{measured}" + (
        f": {reason}" if reason else ""
    )
    return slack_escape(line)


def slack_escape(text: str) -> str:
    """Text shown as written by Slack (and Teams): `&`, `<`, `>` escaped, so what a user wrote
    (`<!everyone>`, `<https://evil|click>`) can neither mention nor link."""
    return text.translate(SLACK_ESCAPES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Mdstudio-Signature`: `sha256=` and the HMAC-SHA256 of `<timestamp>.` and the exact
    body bytes, so a receiver refusing old timestamps refuses a captured delivery replayed."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
