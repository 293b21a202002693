"""The console in a real browser: Playwright driving the system's Chromium against a real
`mdstudio serve`. One server and one browser for the module; each test signs in fresh
(its own browser context) under a tenant of its own.

Without Chromium (or Playwright) these tests are skipped, and the skip says why; with
MDSTUDIO_REQUIRE_BROWSER=1 (CI) a missing browser is a failure. Every page visited is
screenshotted under the test's temporary directory; with MDSTUDIO_README_SCREENSHOTS=1 the
inbox and request screenshots are also written to docs/ for the README.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Lane, Tier
from mdstudio_core.service_layer import approvals, change_sets, tokens, two_person
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    DEMO_BINDING,
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    glossary_request,
    metadata_request,
    person,
)

CHROMIUM = os.environ.get("MDSTUDIO_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _no_browser(reason: str) -> None:
    if os.environ.get("MDSTUDIO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MDSTUDIO_REQUIRE_BROWSER=1: the browser tests are mandatory)")
    pytest.skip(f"{reason}: the console's browser tests need it (apt-get install chromium)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("Playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@dataclass(frozen=True)
class Server:
    base: str
    engine: Engine

    def token(self, tenant: uuid.UUID, user: str, *roles: str) -> str:
        secret, _ = tokens.create_token(UnitOfWork(self.engine), person(tenant, user, *roles))
        return secret


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Server]:
    """`mdstudio serve` on a SQLite store of its own, with the demo warehouse as a source and
    the API docs on."""
    home = tmp_path_factory.mktemp("console")
    store_url = f"sqlite:///{home / 'mdstudio.db'}"
    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port", str(port)],
        env={
            **os.environ,
            "MDSTUDIO_DATABASE_URL": store_url,
            "MDSTUDIO_SOURCE_DEMO_URL": demo_warehouse.build(home / "wh.db"),
            # every browser signs in from 127.0.0.1: the per-address limit is not under test here
            "MDSTUDIO_CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
            "MDSTUDIO_API_DOCS": "1",  # for test_the_api_docs_load_nothing_from_another_origin
            # tier3 requests are overdue after about a second (the overdue badge).
            "MDSTUDIO_TIER3_APPROVAL_SLA_HOURS": "0.0003",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "mdstudio serve did not start"
            time.sleep(0.1)
    yield Server(base, engine)
    process.terminate()
    process.wait(timeout=15)
    engine.dispose()


class Steward:
    """One signed-in user's browser tab; `shot(name)` screenshots it under the test's tmp."""

    def __init__(self, context: Any, server: Server, shots: Path) -> None:
        self.context = context
        self.page = context.new_page()
        self.server = server
        self.shots = shots

    def goto(self, path: str) -> Any:
        return self.page.goto(self.server.base + path)

    def sign_in(self, secret: str) -> None:
        self.goto("/ui/login")
        self.page.get_by_test_id("login-token").fill(secret)
        self.page.get_by_test_id("login-submit").click()
        self.page.wait_for_url(self.server.base + "/ui/")

    def shot(self, name: str, readme: str | None = None) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        if readme and os.environ.get("MDSTUDIO_README_SCREENSHOTS") == "1":
            DOCS.mkdir(exist_ok=True)
            shutil.copy(path, DOCS / readme)
        return path

    def error(self) -> str:
        return self.page.get_by_test_id("error-message").inner_text()


@pytest.fixture
def steward(chromium: Any, server: Server, tmp_path: Path) -> Iterator[Any]:
    """`steward(tenant, user, *roles, width=1280)`: a fresh browser context signed in."""
    contexts = []

    def make(tenant: uuid.UUID, user: str, *roles: str, width: int = 1280) -> Steward:
        context = chromium.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        one = Steward(context, server, tmp_path)
        one.sign_in(server.token(tenant, user, *roles))
        return one

    yield make
    for context in contexts:
        context.close()


def _submit(server: Server, tenant: uuid.UUID, request: dict[str, Any], user: str = "alice"):
    return approvals.submit(UnitOfWork(server.engine), person(tenant, user), request, SETTINGS)


def test_a_kernel_request_reaches_the_owner_who_decides_it_with_the_evidence(steward, server):
    tenant = uuid.uuid4()
    kernel = _submit(server, tenant, metadata_request(binding=DEMO_BINDING))
    _submit(server, tenant, metadata_request("finance.cost.cost_amount"), user="carl")
    _submit(server, tenant, metadata_request("sales.region", tier="tier2"))
    _submit(server, tenant, metadata_request("finance.fx.rate"), user="olga")  # her own
    steward_tab = steward(tenant, "sam", STEWARD)
    assert str(kernel.id) not in steward_tab.page.content()  # a steward does not decide tier1
    assert steward_tab.page.get_by_test_id("inbox-row").count() == 1  # sales.region only
    steward_tab.shot("inbox-steward")

    owner = steward(tenant, "olga", KERNEL_OWNER)
    rows = owner.page.get_by_test_id("inbox-row")
    assert next(row.get_attribute("data-approval-id") for row in rows.all()) == str(kernel.id)
    assert rows.count() == 2  # the two kernel requests, not her own nor the governed one
    assert "finance.fx.rate" in owner.page.get_by_test_id("my-request-row").inner_text()
    owner.shot("inbox", readme="console-inbox.png")

    rows.first.get_by_role("link").click()
    owner.page.wait_for_url(f"{server.base}/ui/approvals/{kernel.id}")
    diff = owner.page.get_by_test_id("diff-row")
    assert diff.count() >= 8
    assert "added" in diff.first.inner_text()
    owner.page.get_by_test_id("evidence-button").click()
    score = owner.page.get_by_test_id("evidence-score")
    score.wait_for()
    assert score.inner_text() == "91.89"
    assert "passes the tier1 check" in owner.page.get_by_test_id("evidence-verdict").inner_text()
    owner.shot("request", readme="console-request.png")

    owner.page.get_by_test_id("approve-button").click()
    owner.page.wait_for_url(f"{server.base}/ui/?*")
    assert str(kernel.id) not in owner.page.content()  # it left the inbox
    assert owner.page.get_by_test_id("inbox-row").count() == 1
    owner.goto("/ui/entities/finance.revenue.gross_amount")
    assert owner.page.get_by_test_id("entity-version").inner_text() == "1"
    assert "approval.approved" in owner.page.content()
    owner.shot("entity")


def _change_set(server: Server, tenant: uuid.UUID, requests: list[dict[str, Any]]):
    return change_sets.submit(
        UnitOfWork(server.engine), person(tenant, "alice"), "Net revenue", requests, Settings()
    )


def test_a_change_set_of_two_items_is_approved_by_two_kernel_owners(steward, server):
    tenant = uuid.uuid4()
    admin = person(tenant, "ada", "tenant_admin")
    two_person.set_policy(
        UnitOfWork(server.engine), admin, Lane.KERNEL, Tier.TIER1, KERNEL_OWNER, 2
    )
    submitted = _change_set(
        server, tenant, [metadata_request("finance.revenue.net_amount"), glossary_request()]
    )
    olga = steward(tenant, "olga", KERNEL_OWNER)
    [row] = olga.page.get_by_test_id("inbox-row").all()
    assert row.get_attribute("data-approval-id") == str(submitted.approval.id)
    assert "(2 items)" in row.inner_text() and "0 of 2" in row.inner_text()
    row.get_by_role("link").click()
    olga.page.wait_for_url(f"{server.base}/ui/approvals/{submitted.approval.id}")
    items = olga.page.get_by_test_id("change-set-item")
    assert items.count() == 2
    assert items.nth(1).get_by_test_id("diff-row").first.is_visible()  # open: within 50
    assert "Still needed: 2 more" in olga.page.get_by_test_id("approvals-needed").inner_text()
    olga.shot("change-set")
    olga.page.get_by_test_id("approve-button").click()
    olga.page.wait_for_url(f"{server.base}/ui/?*")
    assert "endorsed (1 of 2 approvals)" in olga.page.get_by_test_id("notice").inner_text()
    olga.goto(f"/ui/approvals/{submitted.approval.id}")
    assert "olga" in olga.page.get_by_test_id("endorsement").inner_text()
    assert "Still needed: 1 more" in olga.page.get_by_test_id("approvals-needed").inner_text()
    olga.page.get_by_test_id("approve-button").click()
    assert "olga has already endorsed" in olga.error()
    olga.shot("change-set-endorsed")

    pat = steward(tenant, "pat", KERNEL_OWNER)
    pat.goto(f"/ui/approvals/{submitted.approval.id}")
    pat.page.get_by_test_id("approve-button").click()
    pat.page.wait_for_url(f"{server.base}/ui/?*")
    assert "approved" in pat.page.get_by_test_id("notice").inner_text()
    pat.goto("/ui/entities/finance.revenue.net_amount")
    assert pat.page.get_by_test_id("entity-version").inner_text() == "1"
    decided = approvals.get_approval(
        UnitOfWork(server.engine), person(tenant, "x"), submitted.approval.id
    )
    assert (decided.status, decided.decided_by, decided.endorsers) == ("approved", "pat", ["olga"])


def test_an_overdue_request_wears_its_badge(steward, server):
    tenant = uuid.uuid4()
    late = _submit(server, tenant, glossary_request())  # tier3: overdue after about a second
    fresh = _submit(server, tenant, metadata_request("sales.region", tier="tier2"))
    time.sleep(1.5)
    sam = steward(tenant, "sam", STEWARD)
    rows = {
        r.get_attribute("data-approval-id"): r for r in sam.page.get_by_test_id("inbox-row").all()
    }
    assert rows[str(late.id)].get_by_test_id("overdue-badge").is_visible()
    assert rows[str(fresh.id)].get_by_test_id("overdue-badge").count() == 0
    sam.shot("inbox-overdue")


def test_refusals_are_shown_on_the_page(steward, server):
    tenant = uuid.uuid4()
    request = _submit(server, tenant, metadata_request(), user="alice")
    requester = steward(tenant, "alice", KERNEL_OWNER)
    requester.goto(f"/ui/approvals/{request.id}")
    requester.page.get_by_test_id("approve-button").click()
    assert requester.error().startswith("four-eyes rule")
    requester.shot("four-eyes")

    owner = steward(tenant, "bob", KERNEL_OWNER)
    owner.goto(f"/ui/approvals/{request.id}")
    owner.page.get_by_test_id("reject-button").click()  # no reason given
    assert owner.error() == "reason: a reason is required to reject a request"
    owner.shot("reject-without-reason")
    owner.page.get_by_test_id("reject-reason").fill("Bound to the wrong table")
    owner.page.get_by_test_id("reject-button").click()
    owner.page.wait_for_url(f"{server.base}/ui/?*")
    assert "rejected" in owner.page.get_by_test_id("notice").inner_text()


def test_another_tenants_request_is_the_404_page(steward, server):
    theirs = _submit(server, uuid.uuid4(), metadata_request())
    ours = steward(uuid.uuid4(), "bob", KERNEL_OWNER)
    response = ours.goto(f"/ui/approvals/{theirs.id}")
    assert response.status == 404
    assert ours.page.locator("h1").inner_text() == "Not found"
    ours.shot("not-found")


def test_a_post_without_the_csrf_token_is_403(steward, server):
    tenant = uuid.uuid4()
    request = _submit(server, tenant, metadata_request())
    owner = steward(tenant, "bob", KERNEL_OWNER)
    owner.goto(f"/ui/approvals/{request.id}")
    owner.page.locator('form[action$="/approve"] input[name="csrf_token"]').evaluate(
        "input => input.remove()"
    )
    with owner.page.expect_navigation() as navigation:
        owner.page.get_by_test_id("approve-button").click()
    assert navigation.value.status == 403
    assert "CSRF" in owner.error()
    owner.shot("csrf-refused")
    assert (
        approvals.get_approval(UnitOfWork(server.engine), person(tenant, "x"), request.id).status
        == "pending"
    )


def test_logout_ends_the_session(steward, server, chromium):
    tenant = uuid.uuid4()
    bob = steward(tenant, "bob", KERNEL_OWNER)
    cookies = bob.context.cookies()
    assert [c["name"] for c in cookies if c["name"] == "mdstudio_session"]
    session = next(c for c in cookies if c["name"] == "mdstudio_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    bob.page.get_by_test_id("logout-button").click()
    bob.page.wait_for_url(f"{server.base}/ui/login")
    bob.goto("/ui/")
    assert bob.page.url == f"{server.base}/ui/login"
    replay = chromium.new_context()  # the old cookie, kept by someone, opens nothing
    replay.add_cookies([session])
    page = replay.new_page()
    page.goto(f"{server.base}/ui/")
    assert page.url == f"{server.base}/ui/login"
    replay.close()


def test_keyboard_only_sign_in_and_labelled_controls(chromium, server, tmp_path):
    tenant = uuid.uuid4()
    request = _submit(server, tenant, metadata_request(binding=DEMO_BINDING))
    submitted = _change_set(server, tenant, [metadata_request("k.a"), glossary_request()])
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.base}/ui/login")
    for _ in range(10):  # Tab from the top of the page to the token field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.testid") == "login-token":
            break
    page.keyboard.type(server.token(tenant, "bob", KERNEL_OWNER))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.base}/ui/")
    for path in (
        "/ui/",
        f"/ui/approvals/{request.id}",
        f"/ui/approvals/{submitted.approval.id}",
        "/ui/incidents",
    ):
        page.goto(server.base + path)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea,'
                + ' button')].filter(c => !(c.labels && c.labels.length) &&
                !c.getAttribute('aria-label') && !c.textContent.trim()).map(c => c.outerHTML)"""
        )
        assert unlabelled == [], path
    context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_readable_at_desktop_and_phone_widths(steward, server, width):
    tenant = uuid.uuid4()
    request = _submit(server, tenant, metadata_request(binding=DEMO_BINDING))
    submitted = _change_set(server, tenant, [metadata_request("k.a"), glossary_request()])
    owner = steward(tenant, "bob", KERNEL_OWNER, width=width)
    for name, path in (
        ("inbox", "/ui/"),
        ("request", f"/ui/approvals/{request.id}"),
        ("change-set", f"/ui/approvals/{submitted.approval.id}"),
    ):
        owner.goto(path)
        overflow = owner.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways at {width} px"
        owner.shot(f"{name}-{width}")


@pytest.mark.parametrize(
    ("path", "title"), [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")]
)
def test_the_api_docs_load_nothing_from_another_origin(chromium, server, tmp_path, path, title):
    """Swagger UI and ReDoc render the API (its title and a route) from this origin's files
    alone: no request for anything elsewhere, no policy violation, no script error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server.base + path)
    page.wait_for_selector(title, timeout=30_000)
    page.get_by_text("/approvals/{approval_id}/reject").first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / f"{path.strip('/')}.png"))
    assert "mdstudio" in page.locator(title).first.inner_text()
    own = (server.base + "/", f"blob:{server.base}/")
    assert [url for url in requests if not url.startswith(own)] == []
    assert f"{server.base}/openapi.json" in requests
    assert problems == []
    context.close()


def test_a_stricter_rule_is_backtested_on_the_request_page(steward, server):
    """The demo's daily payments table: the field is live under `min: 0`; a request adds
    `max: 100`. The chart shows its three days under both rules and the tier2 minimum."""
    tenant = uuid.uuid4()
    payments = {
        "source": "demo",
        "table": "payments",
        "incremental": {"column": "loaded_at", "partition": "day"},
        "columns": [{"name": "payment_id", "unique": True}, {"name": "amount", "min": 0}],
    }
    key = "finance.payments.amount"
    live = _submit(server, tenant, metadata_request(key, tier="tier2", binding=payments))
    approvals.approve(
        UnitOfWork(server.engine), person(tenant, "bob", STEWARD), live.id, None, SETTINGS
    )
    stricter = {
        **payments,
        "columns": [payments["columns"][0], {"name": "amount", "min": 0, "max": 100}],
    }
    pending = _submit(server, tenant, metadata_request(key, tier="tier2", binding=stricter))
    bob = steward(tenant, "bob", STEWARD)
    bob.goto(f"/ui/approvals/{pending.id}")
    bob.page.get_by_test_id("backtest-button").click()
    chart = bob.page.get_by_test_id("backtest-chart")
    chart.wait_for()
    assert chart.is_visible()
    assert bob.page.get_by_test_id("backtest-minimum").count() == 1
    assert "2026-01-05" in chart.inner_html() and "2026-01-07" in chart.inner_html()
    failing = bob.page.get_by_test_id("backtest-failing").inner_text()
    assert failing.split()[-2:] == ["0", "0"]  # tier2's minimum 70: no day fails either way
    bob.shot("backtest")
