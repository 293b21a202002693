"""Webhooks cannot be pointed at the inside, and their messages can be trusted (issue 18, items
1 and 2). Through the store (SQLite and PostgreSQL), the CLI, the HTTP API and real receivers
on loopback, with the address rule on (`MDSTUDIO_NOTIFY_ALLOW_PRIVATE` unset) unless a test
says otherwise: a destination that is or resolves to an inside address is refused at
subscription and at every send, the POST goes to the address that was checked, nothing of a
receiver's answer is kept, and each delivery is signed with its timestamp."""

from __future__ import annotations

import datetime as dt
import inspect
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient

from demo import story
from mdstudio_core.adapters import webhooks
from mdstudio_core.config import Settings
from mdstudio_core.domain import notifications as rules
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.store.test_incidents import save
from tests.support.cli_helpers import run_cli
from tests.support.factories import SETTINGS, metadata_request, person
from tests.support.webhook_receiver import Receiver

# The receiver a team is shown, on the docs site's observability page.
RECEIVER_PAGE = (
    next(p for p in Path(__file__).resolve().parents if (p / "mkdocs.yml").exists())
    / "docs/operator/observability.md"
)
REFUSED = "the destination is not allowed"
LOOPBACK = ipaddress.ip_address("127.0.0.1")
SECRET_ANSWER = "INTERNAL-ONLY admin panel: db_password=hunter2"


@pytest.fixture(autouse=True)
def rule_on(monkeypatch):
    """The address rule as deployed by default."""
    for name in ("MDSTUDIO_NOTIFY_ALLOW_PRIVATE", "MDSTUDIO_NOTIFY_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def configured(**variables: str) -> Settings:
    return Settings.from_env({f"MDSTUDIO_{k.upper()}": v for k, v in variables.items()})


STRICT = configured()
PRIVATE_OK = configured(notify_allow_private="1")


def admin(tenant):
    return person(tenant, "ada", "tenant_admin")


def subscribe(engine, tenant, url, settings, events=None):
    return notifications.subscribe(UnitOfWork(engine), admin(tenant), url, events, None, settings)


def tick(engine, settings):
    notifications.collect(UnitOfWork(engine), 1000, SETTINGS)
    return notifications.send_due(lambda: UnitOfWork(engine), settings)


def deliveries(engine, tenant):
    return notifications.list_deliveries(UnitOfWork(engine), admin(tenant))


def inside_urls(port: int) -> list[str]:
    """What the review subscribed (every one delivered to loopback), and more of the inside."""
    return [
        f"http://127.0.0.1:{port}/internal/admin",
        f"http://0x7f000001:{port}/",
        f"http://2130706433:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://localhost:{port}/",
        "http://127.0.0.1:5432/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "https://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://224.0.0.1/",
    ]


# -- at subscription ---------------------------------------------------------------------------


def test_the_cli_refuses_an_inside_destination_and_writes_nothing(
    store_url, tenant, monkeypatch, receiver
):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    as_admin = ["--user", "ada", "--role", "tenant_admin"]
    for url in inside_urls(receiver.port):
        refused = run_cli(["notifications", "subscribe", "--url", url, *as_admin])
        assert refused.exit_code == 2, (url, refused.stdout)
        assert f"url: {REFUSED}" in refused.stderr, url
    assert run_cli(["notifications", "list", *as_admin, "--json"]).json == []
    monkeypatch.setenv("MDSTUDIO_NOTIFY_ALLOW_PRIVATE", "1")  # the operator's choice
    allowed = run_cli(["notifications", "subscribe", "--url", receiver.url, *as_admin, "--json"])
    assert allowed.exit_code == 0, allowed.stderr


def test_the_http_api_refuses_an_inside_destination_and_writes_nothing(engine, tenant, receiver):
    client = TestClient(create_app(configured(trusted_header_auth="1"), engine))
    headers = {"x-tenant-id": str(tenant), "x-user-id": "ada", "x-role": "tenant_admin"}
    for url in inside_urls(receiver.port):
        refused = client.post("/notifications", json={"url": url}, headers=headers)
        assert refused.status_code == 422, url
        assert refused.json()["field"] == "url" and REFUSED in refused.json()["detail"]
    assert client.get("/notifications", headers=headers).json()["items"] == []


def test_the_refusal_names_the_host_and_the_setting_never_the_address(engine, tenant):
    with pytest.raises(InvalidInput) as refused:
        subscribe(engine, tenant, "http://localhost:8080/x", STRICT)
    assert str(refused.value) == (
        "url: the destination is not allowed: localhost is or resolves to a loopback, private, "
        "link-local or other non-public address (MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1 allows it)"
    )


def test_a_name_that_does_not_resolve_yet_is_accepted_and_judged_at_send(engine, tenant):
    _, subscription = subscribe(engine, tenant, "https://hooks.invalid/x", STRICT)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, STRICT).failed == 1
    [failed] = deliveries(engine, tenant)
    assert failed.last_error == "gaierror resolving hooks.invalid"
    assert subscription.host == "hooks.invalid"


def test_the_allow_list_narrows_the_address_rule_never_replaces_it(engine, tenant, receiver):
    pinned = f"localhost:{receiver.port}"
    with pytest.raises(InvalidInput, match=REFUSED):  # listed, but loopback
        subscribe(
            engine, tenant, receiver.url_for("localhost"), configured(notify_allowed_hosts=pinned)
        )
    bare = configured(notify_allowed_hosts="localhost", notify_allow_private="1")
    with pytest.raises(InvalidInput, match=rf"localhost port {receiver.port} is not allowed"):
        subscribe(engine, tenant, receiver.url_for("localhost"), bare)
    for url in ("http://localhost/x", "https://localhost/x"):  # 80 and 443 only
        subscribe(engine, tenant, url, bare)
    both = configured(notify_allowed_hosts=pinned, notify_allow_private="1")
    subscribe(engine, tenant, receiver.url_for("localhost"), both)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, both).delivered == 1  # 80 and 443 do not answer: failed
    [delivered] = [d for d in deliveries(engine, tenant) if d.status == "delivered"]
    assert len(receiver.received) == 1 and delivered.attempts == 1


def test_an_allow_list_tightened_after_subscription_stops_the_sends(engine, tenant, receiver):
    subscribe(engine, tenant, receiver.url_for("localhost"), PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    tightened = configured(notify_allowed_hosts="*.slack.com", notify_allow_private="1")
    assert tick(engine, tightened) == notifications.SendReport(dead=1)
    [dead] = deliveries(engine, tenant)
    assert dead.last_error == (
        f"host localhost port {receiver.port} is not allowed (MDSTUDIO_NOTIFY_ALLOWED_HOSTS; an "
        "entry without a port allows 443 and 80)"
    )
    assert receiver.received == []


# -- at every send -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "0x7f000001", "[::ffff:127.0.0.1]"])
def test_an_inside_destination_is_dead_at_once_when_sending(engine, uow, tenant, receiver, host):
    """Subscribed while the operator allowed it (or before this rule): with the rule on, the
    delivery is refused at send time, dead after one attempt whatever the attempts left, and
    not tried again by the next ticks."""
    subscribe(engine, tenant, receiver.url_for(host), PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, STRICT) == notifications.SendReport(dead=1)
    [dead] = deliveries(engine, tenant)
    assert dead.status == "dead" and dead.attempts == 1 and dead.last_status_code is None
    assert dead.last_error == "destination address not allowed"
    time.sleep(0.01)
    assert tick(engine, STRICT) == notifications.SendReport()
    notifications.redeliver(uow, admin(tenant), dead.id)
    assert tick(engine, STRICT) == notifications.SendReport(dead=1)
    assert receiver.received == []


def test_the_same_receiver_is_reached_when_the_operator_allows_private(engine, tenant, receiver):
    """The control of the test above: the rule, not the receiver, refused."""
    subscribe(engine, tenant, receiver.url_for("localhost"), PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, PRIVATE_OK) == notifications.SendReport(delivered=1)
    [message] = receiver.received
    assert message.headers["Host"] == f"localhost:{receiver.port}"


class RebindingDns:
    """DNS as an attacker runs it for `rebind.test`: one answer, then another at every later
    question. Every other name is resolved as usual."""

    def __init__(self, monkeypatch, first: str, later: str) -> None:
        self.answers, self.asked = [first, later], 0
        self.real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, *args, **kwargs):
        if host != "rebind.test":
            return self.real(host, port, *args, **kwargs)
        answer = self.answers[min(self.asked, 1)]
        self.asked += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]


def test_a_name_rebound_to_loopback_after_subscription_is_refused_at_send(
    engine, tenant, monkeypatch, receiver
):
    dns = RebindingDns(monkeypatch, first="93.184.216.34", later="127.0.0.1")
    subscribe(engine, tenant, f"http://rebind.test:{receiver.port}/hook", STRICT)  # public now
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, STRICT) == notifications.SendReport(dead=1)
    [dead] = deliveries(engine, tenant)
    assert dead.last_error == "destination address not allowed"
    assert dns.asked == 2 and receiver.received == []


def test_the_post_goes_to_the_address_checked_with_no_second_lookup(
    engine, tenant, monkeypatch, receiver
):
    """Resolved once per send: a second lookup would get the other answer, where no receiver
    listens. The receiver sees the name in the Host header."""
    dns = RebindingDns(monkeypatch, first="127.0.0.1", later="10.255.255.1")
    subscribe(engine, tenant, f"http://rebind.test:{receiver.port}/hook", PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, PRIVATE_OK).delivered == 1
    assert dns.asked == 1
    [message] = receiver.received
    assert message.headers["Host"] == f"rebind.test:{receiver.port}"
    assert message.path == "/hook"


def test_post_connects_to_the_addresses_given_in_turn_and_never_looks_the_name_up(receiver):
    url = f"http://receiver.invalid:{receiver.port}/hooks/x?a=1"  # resolves nowhere
    refusing = ipaddress.ip_address("127.0.0.2")  # nothing listens there
    result = webhooks.post(url, [refusing, LOOPBACK], b"{}", {"X-Test": "1"}, 5.0)
    assert result == webhooks.PostResult(True, 200, None)
    [message] = receiver.received
    assert message.headers["Host"] == f"receiver.invalid:{receiver.port}"
    assert message.path == "/hooks/x?a=1" and message.headers["X-Test"] == "1"
    assert webhooks.post(url, [refusing], b"{}", {}, 5.0) == webhooks.PostResult(
        False, None, "ConnectError reaching receiver.invalid"
    )


def tls_receiver(tmp_path: Path, certified_name: str) -> tuple[Path, Receiver, list[str]]:
    """An https receiver whose certificate, from a CA of its own, names `certified_name`
    only (no address); the CA's file, the receiver, and the SNI names it was asked for."""
    now = dt.datetime.now(dt.UTC)

    def certificate(subject, issuer, key, signer, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", "test CA", ca_key, ca_key, True)
    leaf = certificate(certified_name, "test CA", key, ca_key, False, [certified_name])
    ca_file, chain, key_file = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, key_file)
    asked: list[str] = []
    server.sni_callback = lambda _socket, name, _context: asked.append(name)
    return ca_file, Receiver(tls=server).start(), asked


def test_https_to_the_checked_address_sends_the_name_in_sni_and_checks_the_certificate(
    tmp_path, monkeypatch
):
    ca_file, receiver, asked = tls_receiver(tmp_path, "localhost")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # httpx trusts the test CA
    try:
        result = webhooks.post(receiver.url_for("localhost"), [LOOPBACK], b"{}", {}, 5.0)
        assert result == webhooks.PostResult(True, 200, None)
        assert asked == ["localhost"]
        assert receiver.received[0].headers["Host"] == f"localhost:{receiver.port}"
    finally:
        receiver.stop()


def test_https_refuses_a_certificate_for_another_name(tmp_path, monkeypatch):
    ca_file, receiver, _ = tls_receiver(tmp_path, "other.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    try:
        result = webhooks.post(receiver.url_for("localhost"), [LOOPBACK], b"{}", {}, 5.0)
        assert result == webhooks.PostResult(False, None, "ConnectError reaching localhost")
        assert receiver.received == []
    finally:
        receiver.stop()


# -- nothing of the receiver's answer ----------------------------------------------------------


def test_nothing_of_an_answer_is_kept_or_logged_only_its_status(
    engine, tenant, monkeypatch, receiver, caplog, store_url
):
    caplog.set_level(logging.DEBUG)
    receiver.status, receiver.reason = 500, SECRET_ANSWER
    receiver.answer = SECRET_ANSWER.encode() * 3
    receiver.answer_headers = {"X-Internal": SECRET_ANSWER}
    subscribe(engine, tenant, receiver.url, PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, PRIVATE_OK).failed == 1
    [failed] = deliveries(engine, tenant)
    assert failed.last_error == "HTTP 500" and failed.last_status_code == 500
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    as_admin = ["notifications", "deliveries", "--user", "ada", "--role", "tenant_admin"]
    shown = run_cli(as_admin).stdout + run_cli([*as_admin, "--json"]).stdout
    assert "HTTP 500" in shown
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "answered 500" in logged
    for text in (shown, logged):
        assert "INTERNAL-ONLY" not in text and "hunter2" not in text


def read_whole_request(connection: socket.socket) -> None:
    """Reads the request's head and its body (by its Content-Length)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)


def test_a_service_that_is_not_http_leaves_only_the_failures_class(engine, tenant, caplog):
    """A port of another service (a database, say) answering with its own bytes."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        connection, _ = server.accept()
        with connection:
            read_whole_request(connection)
            connection.sendall(f"{SECRET_ANSWER}\r\n".encode())
            # Closing with the request unread would reset the connection (a ReadError, not
            # the protocol error this test is about): the client hangs up first.
            connection.shutdown(socket.SHUT_WR)
            connection.recv(1)

    threading.Thread(target=answer, daemon=True).start()
    caplog.set_level(logging.DEBUG)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        subscribe(engine, tenant, url, PRIVATE_OK)
        save(engine, tenant, 40.0, "run-1")
        assert tick(engine, PRIVATE_OK).failed == 1
    finally:
        server.close()
    [failed] = deliveries(engine, tenant)
    assert failed.last_error == "RemoteProtocolError reaching 127.0.0.1"
    assert "INTERNAL-ONLY" not in caplog.text + "".join(r.getMessage() for r in caplog.records)


# -- signed with its timestamp -----------------------------------------------------------------


def docs_receiver():
    """`verify_delivery` exactly as the docs show a receiver."""
    text = RECEIVER_PAGE.read_text()
    [snippet] = [
        block
        for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL)
        if "def verify_delivery" in block
    ]
    namespace: dict = {}
    exec(compile(snippet, str(RECEIVER_PAGE), "exec"), namespace)  # the docs' own code
    return namespace["verify_delivery"]


def test_the_demo_receiver_checks_deliveries_as_the_docs_do():
    assert inspect.getsource(story.verify_delivery) in RECEIVER_PAGE.read_text()
    assert story.ENV["MDSTUDIO_NOTIFY_ALLOW_PRIVATE"] == "1"  # its receiver is on loopback


def test_each_post_is_signed_with_its_timestamp_and_the_docs_receiver_refuses_replays(
    engine, tenant, receiver
):
    verify_delivery = docs_receiver()
    secret, _ = subscribe(engine, tenant, receiver.url, PRIVATE_OK)
    save(engine, tenant, 40.0, "run-1")
    before = int(time.time())
    assert tick(engine, PRIVATE_OK).delivered == 1
    [message] = receiver.received
    headers, body = message.headers, message.body
    sent_at = int(headers["X-Mdstudio-Timestamp"])
    assert before <= sent_at <= time.time()
    assert headers["X-Mdstudio-Signature"] == rules.signature(secret, sent_at, body)
    assert verify_delivery(secret, headers, body)
    assert verify_delivery(secret, headers, body, now=sent_at + 300)
    assert not verify_delivery(secret, headers, body, now=sent_at + 301)  # replayed later
    assert not verify_delivery(secret, headers, body, now=sent_at - 301)
    assert not verify_delivery("another secret", headers, body)
    assert not verify_delivery(secret, headers, body.replace(b"run-1", b"run-2"))
    refreshed = {**headers, "X-Mdstudio-Timestamp": str(int(time.time()) + 1)}
    assert not verify_delivery(secret, refreshed, body)  # a new timestamp breaks the signature
    unstamped = {k: v for k, v in headers.items() if k != "X-Mdstudio-Timestamp"}
    assert not verify_delivery(secret, unstamped, body)
    unsigned = {k: v for k, v in headers.items() if k != "X-Mdstudio-Signature"}
    assert not verify_delivery(secret, unsigned, body)


# -- what users wrote arrives as text ----------------------------------------------------------


def test_a_reject_reason_reaches_the_channel_as_literal_text(engine, uow, tenant, receiver):
    subscribe(engine, tenant, receiver.url, PRIVATE_OK, events=["approval.rejected"])
    pending = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    reason = "<!everyone> see <https://evil|click> & act"
    decider = person(tenant, "bob", pending.required_role)
    approvals.reject(uow, decider, pending.id, reason)
    assert tick(engine, PRIVATE_OK).delivered == 1
    body = json.loads(receiver.received[0].body)
    assert body["text"].endswith(
        "approval.rejected: &lt;!everyone&gt; see &lt;https://evil|click&gt; &amp; act"
    )
    assert "<" not in body["text"] and ">" not in body["text"]
    assert body["events"][0]["payload"]["reason"] == reason  # the data itself, unchanged
    assert uuid.UUID(body["delivery_id"])
