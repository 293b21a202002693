"""The console's change sets, two-person rules and deadlines, through the app on SQLite and
PostgreSQL: a set is one inbox row and one page (each item's diff, collapsed beyond the first
50, and the combined impact); endorsements and what is still needed; the overdue badge."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import ApprovalStatus, Lane, Tier
from mdstudio_core.service_layer import approvals, change_sets, two_person
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import error_of
from tests.console.test_pages import approve, inbox_ids, submit
from tests.support.factories import (
    KERNEL_OWNER,
    STEWARD,
    changed,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
)

ITEM = re.compile(r'data-testid="change-set-item" data-item="(\d+)"( open)?')


def submit_set(engine, tenant, requests, title="Q3 import", user="alice"):
    return change_sets.submit(UnitOfWork(engine), person(tenant, user), title, requests, Settings())


def test_a_change_set_is_one_inbox_row_and_one_page(browser, engine, tenant):
    requests = [glossary_request(f"Term {n}") for n in range(1, 53)]
    submitted = submit_set(engine, tenant, requests, title="Glossary import")
    steward = browser(tenant, "sam", STEWARD)
    inbox = steward.get("/ui/")
    assert inbox_ids(inbox) == [str(submitted.approval.id)]
    row = inbox.text[inbox.text.index('data-testid="inbox-row"') :].split("</tr>")[0]
    assert "Glossary import" in row and "(52 items)" in row and "change set" in row
    page = steward.get(f"/ui/approvals/{submitted.approval.id}")
    assert page.status_code == 200
    items = ITEM.findall(page.text)
    assert [int(n) for n, _ in items] == list(range(1, 53))
    assert [bool(is_open) for _, is_open in items] == [True] * 50 + [False] * 2
    assert "the other 2 are collapsed" in page.text
    assert page.text.count('data-testid="diff-row"') >= 52 * 2  # every item's diff is there
    assert 'data-testid="no-impact"' in page.text
    done = steward.post(f"/ui/approvals/{submitted.approval.id}/approve")
    assert done.status_code == 303 and "done=approved" in done.headers["location"]
    assert inbox_ids(steward.get("/ui/")) == []
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(tables.glossary))
        assert count.scalar() == 52


def test_the_set_page_shows_the_combined_impact_and_stale_items(browser, engine, tenant):
    for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount"):
        approve(engine, tenant, submit(engine, tenant, metadata_request(key)))
    approve(engine, tenant, submit(engine, tenant, kpi_request()), role=STEWARD)
    rebinding = {"source": "warehouse", "table": "orders2", "columns": [{"name": "amount"}]}
    submitted = submit_set(
        engine,
        tenant,
        [
            changed(metadata_request("finance.cost.cost_amount"), binding=rebinding),
            changed(metadata_request(), label="Gross (EUR)"),
        ],
    )
    approve(engine, tenant, submit(engine, tenant, changed(metadata_request(), label="Moved")))
    owner = browser(tenant, "olga", KERNEL_OWNER)
    page = owner.get(f"/ui/approvals/{submitted.approval.id}").text
    rows = re.findall(r'<tr data-testid="impact-row">\s*<th[^>]*><a[^>]*>([^<]+)</a>', page)
    assert rows == ["finance.kpi.gross_margin"]
    assert 'data-testid="stale-warning"' in page and page.count('data-testid="stale-item"') == 1
    refused = owner.post(f"/ui/approvals/{submitted.approval.id}/approve")
    assert refused.status_code == 409
    assert "item 2: stale request" in error_of(refused.text)


def test_endorsements_and_what_is_still_needed(browser, engine, uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    two_person.set_policy(uow, admin, Lane.KERNEL, Tier.TIER1, KERNEL_OWNER, 2)
    request = submit(engine, tenant, metadata_request())
    bob = browser(tenant, "bob", KERNEL_OWNER)
    page = bob.get(f"/ui/approvals/{request.id}").text
    assert "Still needed: 2 more" in page and 'data-testid="endorse-hint"' in page
    endorsed = bob.post(f"/ui/approvals/{request.id}/approve", {"reason": "checked"})
    assert endorsed.status_code == 303
    assert "endorsed%20%281%20of%202%20approvals%29" in endorsed.headers["location"]
    notice = bob.get(endorsed.headers["location"]).text
    assert "endorsed (1 of 2 approvals)" in notice
    row = notice[notice.index('data-testid="inbox-row"') :].split("</tr>")[0]
    assert "1 of 2" in row and "you endorsed it" in row
    page = bob.get(f"/ui/approvals/{request.id}").text
    assert re.search(r'data-testid="endorsement">Endorsed by <strong>bob</strong>', page)
    assert "Still needed: 1 more</strong>, from someone other than bob" in page
    twice = bob.post(f"/ui/approvals/{request.id}/approve")
    assert twice.status_code == 409 and "bob has already endorsed" in error_of(twice.text)
    carol = browser(tenant, "carol", KERNEL_OWNER)
    assert carol.post(f"/ui/approvals/{request.id}/approve").status_code == 303
    done = approvals.get_approval(uow, person(tenant, "x"), request.id)
    assert done.status is ApprovalStatus.APPROVED and done.decided_by == "carol"
    page = carol.get(f"/ui/approvals/{request.id}").text
    assert "Still needed" not in page and 'data-testid="endorsement"' in page


def test_overdue_requests_carry_a_badge(engine, uow, tenant, console_settings):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app
    from mdstudio_core.service_layer import tokens
    from tests.console.conftest import Browser

    old = submit(engine, tenant, metadata_request("sales.old", tier="tier2"))
    fresh = submit(engine, tenant, metadata_request("sales.fresh", tier="tier2"))
    tier3 = submit(engine, tenant, glossary_request())
    with engine.begin() as connection:
        connection.execute(
            sa.update(tables.approvals)
            .where(tables.approvals.c.id.in_([old.id, tier3.id]))
            .values(requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
        )
    settings = console_settings.model_copy(
        update={"approval_sla_hours": 24.0, "tier2_approval_sla_hours": 1.5}
    )
    app = create_app(settings, engine=engine)
    secret, _ = tokens.create_token(uow, person(tenant, "sam", STEWARD), None)
    steward = Browser(TestClient(app), secret)
    assert steward.sign_in().status_code == 303
    inbox = steward.get("/ui/").text
    badges = {
        approval_id
        for approval_id, row in re.findall(
            r'data-testid="inbox-row" data-approval-id="([^"]+)"(.*?)</tr>', inbox, re.S
        )
        if 'data-testid="overdue-badge"' in row
    }
    assert badges == {str(old.id)}  # tier2 waits 1.5 h; tier3 the default 24 h
    page = steward.get(f"/ui/approvals/{old.id}").text
    assert 'data-testid="deadline"' in page and 'data-testid="overdue-badge"' in page
    page = steward.get(f"/ui/approvals/{fresh.id}").text
    assert 'data-testid="deadline"' in page and 'data-testid="overdue-badge"' not in page
