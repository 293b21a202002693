"""What an on-call person reads: the exact text of a webhook message (Slack and Teams show
`text` as is), the body's fields, what a subscription listing shows, and the exact refusals of
a subscription's URL. Pure rules: no store, no network."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid

import pytest

from mdstudio_core.domain import notifications as rules
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus, Subscription
from tests.support.factories import stored_event

KEY = "finance.revenue.gross_amount"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def record(kind, **payload):
    """An event as a delivery keeps it (the outbox event's JSON)."""
    return {"type": kind, "entity_key": KEY, "payload": payload}


# -- one line per event ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            record("quality.incident.opened", tier="tier1", quality_score=40.0, threshold=80),
            f"- [critical] tier1 {KEY}: incident opened score 40 (minimum 80)",
        ),
        (
            record(
                "quality.incident.acknowledged",
                tier="tier2",
                quality_score=70.5,
                threshold=75.0,
                note="looking into it",
            ),
            f"- [warning] tier2 {KEY}: incident acknowledged score 70.5 (minimum 75): "
            "looking into it",
        ),
        (
            record("quality.incident.resolved", tier="tier3", quality_score=None, reason="fixed"),
            f"- [info] tier3 {KEY}: incident resolved: fixed",
        ),
        (
            record("quality.incident.opened", tier="tier1", quality_score=55.0, threshold=None),
            f"- [critical] tier1 {KEY}: incident opened",
        ),
        (
            record("metadata.profile.failed", tier="tier1", error="boom"),
            f"- [critical] tier1 {KEY}: metadata.profile.failed: boom",
        ),
        (record("metadata.changed"), f"- [info] {KEY}: metadata.changed"),
    ],
    ids=[
        "opened",
        "acknowledged-with-note",
        "resolved-with-reason",
        "no-threshold",
        "failed-with-its-error",
        "no-tier",
    ],
)
def test_each_event_is_one_line_with_its_severity_tier_key_what_and_why(event, line):
    """Severity from the tier, an incident's transition, the score against its minimum only
    when both are known, then the reason, the note or the error."""
    assert rules.summary([event]) == f"mdstudio: 1 quality event\n{line}"


def test_a_record_without_type_or_payload_still_gives_a_line():
    """A partial record must not break the whole message."""
    assert (
        rules.summary([{"entity_key": KEY}]) == f"mdstudio: 1 quality event\n- [info] {KEY}: event"
    )


def test_the_header_counts_the_events_and_each_has_its_line():
    opened = record("quality.incident.opened", tier="tier1", quality_score=40.0, threshold=80)
    profiled = record("metadata.profile.completed", tier="tier2", quality_score=99.5, threshold=80)
    assert rules.summary([opened, profiled]) == (
        "mdstudio: 2 quality events\n"
        f"- [critical] tier1 {KEY}: incident opened score 40 (minimum 80)\n"
        f"- [warning] tier2 {KEY}: metadata.profile.completed score 99.5 (minimum 80)"
    )
    assert rules.summary([]) == "mdstudio: 0 quality events"


def test_the_body_names_the_delivery_and_the_tenant_and_carries_the_events():
    events = [record("quality.incident.opened", tier="tier1", quality_score=40.0, threshold=80)]
    delivery = Delivery(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        subscription_id=uuid.uuid4(),
        group_key="run:run-1",
        events=events,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=NOW,
        created_at=NOW,
    )
    assert rules.message(delivery) == {
        "delivery_id": str(delivery.id),
        "tenant_id": str(delivery.tenant_id),
        "text": rules.summary(events),
        "events": events,
    }


# -- grouping, hosts -----------------------------------------------------------------


def event(payload):
    return stored_event(
        42, "metadata.changed", uuid.uuid4(), KEY, payload, actor="ada", occurred_at=NOW
    )


def test_a_runs_events_share_a_group_and_any_other_event_travels_alone():
    assert rules.group_key(event({"run_id": "run-7"})) == "run:run-7"
    assert rules.group_key(event({})) == "event:42"
    assert rules.group_key(event({"run_id": None})) == "event:42"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.slack.com/services/T/B/X", "hooks.slack.com"),
        ("mailto:ops@example.com", "?"),
        ("http://[::1/x", "?"),  # urlsplit raises on it
    ],
)
def test_only_the_host_of_a_destination_is_ever_named(url, host):
    assert rules.host_of(url) == host


def test_a_listing_shows_everything_but_the_secret():
    subscription = Subscription(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        url="https://hooks.example.com/h",
        events=("quality.incident.*",),
        min_tier=Tier.TIER2,
        created_at=NOW,
        created_by="ada",
        secret="s3cret",
        unsubscribed_at=NOW,
    )
    assert subscription.public() == {
        "id": subscription.id,
        "tenant_id": subscription.tenant_id,
        "url": "https://hooks.example.com/h",
        "host": "hooks.example.com",
        "events": ["quality.incident.*"],
        "min_tier": Tier.TIER2,
        "created_at": NOW,
        "created_by": "ada",
        "unsubscribed_at": NOW,
    }


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://h:99999/", "url: not a valid URL"),
        ("ftp://example.com/x", "url: must be an http:// or https:// URL with a host"),
        (None, "url: must be an http:// or https:// URL with a host"),
        ("https://e.example/" + "p" * 1983, "url: must be at most 2000 characters"),
    ],
    ids=["bad-port", "not-http", "none", "2001-characters"],
)
def test_a_refused_url_says_why(url, error):
    with pytest.raises(InvalidInput) as refused:
        rules.check_url(url, None)
    assert str(refused.value) == error and refused.value.field == "url"


def test_a_url_of_2000_characters_is_accepted():
    url = "https://e.example/" + "p" * 1982
    assert len(url) == 2000 and rules.check_url(url, None) == url


def test_an_allowed_host_allows_443_and_80_and_a_pinned_one_its_port_only():
    """`host` allows ports 443 and 80 (a URL without a port has its scheme's); `host:port`
    that port; `host:*` any."""
    allowed = frozenset({"hooks.example.com", "127.0.0.1:8080", "*.slack.com", "any.example:*"})
    for url in (
        "https://hooks.example.com/x",
        "http://hooks.example.com/x",
        "https://hooks.example.com:443/x",
        "http://hooks.example.com:443/x",
        "https://hooks.example.com:80/x",
        "http://127.0.0.1:8080/x",
        "https://hooks.slack.com/services/T/B/X",
        "https://any.example:9999/x",
    ):
        assert rules.check_url(url, allowed) == url
    for refused_url, host, port in (
        ("https://hooks.example.com:8443/x", "hooks.example.com", 8443),
        ("http://hooks.example.com:5432/x", "hooks.example.com", 5432),
        ("http://127.0.0.1:9090/x", "127.0.0.1", 9090),
        ("http://127.0.0.1/x", "127.0.0.1", 80),
        ("https://hooks.slack.com:8443/x", "hooks.slack.com", 8443),
        ("https://other.example/x", "other.example", 443),
    ):
        with pytest.raises(InvalidInput) as refused:
            rules.check_url(refused_url, allowed)
        assert str(refused.value) == (
            f"url: host {host} port {port} is not allowed (MDSTUDIO_NOTIFY_ALLOWED_HOSTS; an "
            "entry without a port allows 443 and 80)"
        )


def test_an_allowed_ipv6_address_is_a_host_without_a_port():
    assert rules.host_allowed("::1", 443, ["::1"])
    assert not rules.host_allowed("::1", 8080, ["::1"])
    assert not rules.host_allowed("h.example", 443, ["h.example:"])


@pytest.mark.parametrize(
    "url",
    [
        "http://h\u00e9.example/x",
        "http://a b.example/x",
        "http://127.0.0.1 x/",
        "http://[::1%/x",
        "http://a..example/x",
        "http://.example/x",
        f"http://{'a' * 64}.example/x",
        f"http://{'a.' * 126}ab/x",
    ],
    ids=[
        "non-ascii",
        "space",
        "trailing-text",
        "bad-ipv6",
        "empty-label",
        "leading-dot",
        "64-character-label",
        "254-characters",
    ],
)
def test_a_host_must_be_a_dns_name_or_an_address(url):
    """Nothing a resolver might read otherwise (inet_aton takes `127.0.0.1 x` for 127.0.0.1),
    nor a name DNS cannot carry."""
    with pytest.raises(InvalidInput) as refused:
        rules.check_url(url, None)
    assert refused.value.field == "url"


def test_a_longest_dns_name_is_a_host():
    for host in (f"{'a' * 63}.example", f"{'a.' * 125}abc", "localhost.", "_dmarc.example"):
        assert rules.check_url(f"https://{host}/x", None)


# -- which addresses a webhook may reach -------------------------------------------------------

INSIDE = {
    "127.0.0.1": "127.0.0.1",
    "0x7f000001": "127.0.0.1",  # hexadecimal
    "2130706433": "127.0.0.1",  # decimal
    "0177.0.0.1": "127.0.0.1",  # octal
    "127.1": "127.0.0.1",  # short
    "0x7f.1": "127.0.0.1",
    "017700000001": "127.0.0.1",
    "0": "0.0.0.0",  # unspecified
    "10.0.0.1": "10.0.0.1",  # RFC 1918
    "0xa000001": "10.0.0.1",
    "172.16.5.4": "172.16.5.4",
    "192.168.1.1": "192.168.1.1",
    "169.254.169.254": "169.254.169.254",  # link-local: cloud metadata
    "100.64.0.1": "100.64.0.1",  # shared
    "224.0.0.1": "224.0.0.1",  # multicast
    "240.0.0.1": "240.0.0.1",  # reserved
    "255.255.255.255": "255.255.255.255",
    "::1": "::1",
    "::": "::",
    "fe80::1": "fe80::1",  # link-local
    "fc00::1": "fc00::1",  # unique-local
    "fd12:3456::1": "fd12:3456::1",
    "ff02::1": "ff02::1",  # multicast
    "::ffff:127.0.0.1": "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:7f00:1": "::ffff:127.0.0.1",  # the same, in hex
    "::ffff:10.0.0.1": "::ffff:10.0.0.1",
    "::127.0.0.1": "::7f00:1",  # IPv4-compatible: reserved
    "2002:7f00:1::": "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::": "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
}
OUTSIDE = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::"]


@pytest.mark.parametrize("host", list(INSIDE))
def test_every_inside_address_in_every_spelling_is_read_and_refused(host):
    address = rules.literal_address(host)
    assert address == ipaddress.ip_address(INSIDE[host])
    assert not rules.address_allowed(address)
    assert not rules.addresses_allowed([rules.literal_address("8.8.8.8"), address])


@pytest.mark.parametrize("host", OUTSIDE)
def test_a_public_address_is_allowed(host):
    assert rules.address_allowed(rules.literal_address(host))


def test_a_name_is_not_an_address():
    for name in ("localhost", "hooks.slack.com", "1.2.3.4.5", "0x", "4294967296", "08.0.0.1"):
        assert rules.literal_address(name) is None
    assert rules.addresses_allowed([])  # a name not resolved yet: every send resolves it


# -- what users wrote, as Slack shows it -------------------------------------------------------


def test_free_text_is_escaped_so_it_can_neither_mention_nor_link():
    rejected = record(
        "approval.rejected", tier="tier2", reason="<!everyone> see <https://evil|click> & run"
    )
    assert rules.summary([rejected]).splitlines()[1] == (
        f"- [warning] tier2 {KEY}: approval.rejected: &lt;!everyone&gt; see "
        "&lt;https://evil|click&gt; &amp; run"
    )
    noted = record("quality.incident.acknowledged", note="a&b <@U123>")
    assert rules.summary([noted]).endswith(": a&amp;b &lt;@U123&gt;")
    assert rules.slack_escape("&amp;") == "&amp;amp;"  # escaped once, as written


def test_a_bad_event_pattern_says_what_a_pattern_may_hold():
    with pytest.raises(InvalidInput) as refused:
        rules.check_event_patterns(["quality incident"])
    assert str(refused.value) == (
        "events: 'quality incident' is not an event pattern (letters, digits, '.', '_', '*')"
    )
