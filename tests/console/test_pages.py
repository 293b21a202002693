"""The console's pages over the same services as the API: the inbox by role, a request's diff,
evidence and decisions, an entity's history, incidents; refusals shown on the page."""

from __future__ import annotations

import re
import uuid

import pytest

from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer import approvals, profiling
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import error_of
from tests.support.factories import (
    DEMO_BINDING,
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    changed,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)

ROW = re.compile(r'<tr data-testid="inbox-row" data-approval-id="([^"]+)"')
DIFF = re.compile(r'data-testid="diff-row" data-field="([^"]+)" data-change="([^"]+)"')


def inbox_ids(response) -> list[str]:
    assert response.status_code == 200
    return ROW.findall(response.text)


def submit(engine, tenant, request, user="alice"):
    return approvals.submit(UnitOfWork(engine), person(tenant, user), request, SETTINGS)


def approve(engine, tenant, approval, user="bob", role=KERNEL_OWNER):
    return approvals.approve(
        UnitOfWork(engine), person(tenant, user, role, STEWARD), approval.id, None, SETTINGS
    )


def test_the_inbox_shows_what_a_role_decides_and_never_ones_own(browser, engine, tenant):
    kernel = submit(engine, tenant, metadata_request())  # tier1: kernel_owner decides
    governed = submit(engine, tenant, metadata_request("sales.region", tier="tier2"))
    own = submit(engine, tenant, metadata_request("sales.own", tier="tier2"), user="sam")
    other_tenant = submit(engine, uuid.uuid4(), metadata_request())
    owner = browser(tenant, "olga", KERNEL_OWNER)
    steward = browser(tenant, "sam", STEWARD)
    assert inbox_ids(owner.get("/ui/")) == [str(kernel.id)]
    assert inbox_ids(steward.get("/ui/")) == [str(governed.id)]  # not the kernel's, not own
    page = steward.get("/ui/").text
    assert f'data-testid="my-request-row" data-approval-id="{own.id}"' in page
    assert str(other_tenant.id) not in owner.get("/ui/").text
    row = page[page.index('data-testid="inbox-row"') :].split("</tr>")[0]
    for shown in ("sales.region", "GLOBAL_METADATA", "tier2", "governed", "alice"):
        assert shown in row


def test_inbox_filters_and_order(browser, engine, tenant):
    first = submit(engine, tenant, metadata_request("a.one", tier="tier2"))
    second = submit(engine, tenant, kpi_request("a.kpi"))
    third = submit(engine, tenant, glossary_request("Margin"))
    draft = submit(engine, tenant, metadata_request("a.draft", tier="tier3", lane="draft"))
    steward = browser(tenant, "sam", STEWARD)
    every = [str(a.id) for a in (first, second, third, draft)]
    assert inbox_ids(steward.get("/ui/")) == every  # oldest first by default
    assert inbox_ids(steward.get("/ui/?order=newest")) == every[::-1]
    assert inbox_ids(steward.get("/ui/?entity_type=KPI")) == [str(second.id)]
    assert inbox_ids(steward.get("/ui/?tier=tier3")) == [str(third.id), str(draft.id)]
    assert inbox_ids(steward.get("/ui/?lane=draft")) == [str(draft.id)]
    assert inbox_ids(steward.get("/ui/?tier=tier3&lane=governed")) == [str(third.id)]
    refused = steward.get("/ui/?tier=tier9")
    assert refused.status_code == 422 and error_of(refused.text).startswith("tier: must be one of")


def test_the_requester_cancels_from_my_requests(browser, engine, uow, tenant):
    mine = submit(engine, tenant, metadata_request("a.mine", tier="tier2"), user="alice")
    alice = browser(tenant, "alice")
    assert str(mine.id) in alice.get("/ui/").text
    response = alice.post(f"/ui/approvals/{mine.id}/cancel")
    assert response.status_code == 303
    assert approvals.get_approval(uow, person(tenant, "x"), mine.id).status == "cancelled"
    assert str(mine.id) not in alice.get("/ui/").text


def test_a_new_entity_shows_every_field_as_added(browser, engine, tenant):
    new = submit(engine, tenant, metadata_request())
    page = browser(tenant, "bob", KERNEL_OWNER).get(f"/ui/approvals/{new.id}").text
    rows = DIFF.findall(page)
    assert {change for _field, change in rows} == {"added"}
    fields = [field for field, _change in rows]
    assert "label" in fields and "binding.table" in fields
    assert "binding.columns[gross_amount]" in fields
    for marker in ("approve-button", "reject-button", "reject-reason"):
        assert f'data-testid="{marker}"' in page


def test_a_change_is_diffed_field_by_field_and_column_by_column(browser, engine, tenant):
    approve(engine, tenant, submit(engine, tenant, metadata_request()))
    binding = {
        "source": "warehouse",
        "schema": "sales",
        "table": "orders",
        "columns": [
            {"name": "gross_amount", "nullable": False, "min": 10},
            {"name": "currency", "allowed_values": ["EUR"]},
        ],
    }
    edit = submit(
        engine,
        tenant,
        changed(metadata_request(), label="Gross amount (EUR)", binding=binding),
    )
    page = browser(tenant, "bob", KERNEL_OWNER).get(f"/ui/approvals/{edit.id}").text
    assert dict(DIFF.findall(page)) == {
        "label": "changed",
        "binding.columns[gross_amount].min": "changed",
        "binding.columns[currency]": "added",
    }
    assert "Gross amount (EUR)" in page


def test_decisions_refused_on_the_page_with_the_rule(browser, engine, tenant):
    request = submit(engine, tenant, metadata_request(), user="alice")
    alice = browser(tenant, "alice", KERNEL_OWNER)
    steward = browser(tenant, "sam", STEWARD)
    bob = browser(tenant, "bob", KERNEL_OWNER)
    before = store_snapshot(engine)
    own = alice.post(f"/ui/approvals/{request.id}/approve")
    assert own.status_code == 403
    assert error_of(own.text).startswith("four-eyes rule")
    role = steward.post(f"/ui/approvals/{request.id}/approve")
    assert role.status_code == 403
    assert error_of(role.text).startswith("role kernel_owner is required")
    no_reason = bob.post(f"/ui/approvals/{request.id}/reject", {"reason": "  "})
    assert no_reason.status_code == 422
    assert error_of(no_reason.text) == "reason: a reason is required to reject a request"
    assert "Traceback" not in no_reason.text
    assert store_snapshot(engine) == before
    rejected = bob.post(f"/ui/approvals/{request.id}/reject", {"reason": "wrong table"})
    assert rejected.status_code == 303
    again = bob.post(f"/ui/approvals/{request.id}/approve")
    assert again.status_code == 409 and "already rejected by bob" in error_of(again.text)


def test_a_stale_request_says_submit_again(browser, engine, tenant):
    approve(engine, tenant, submit(engine, tenant, metadata_request()))
    first = submit(engine, tenant, changed(metadata_request(), label="One"))
    second = submit(engine, tenant, changed(metadata_request(), label="Two"))
    bob = browser(tenant, "bob", KERNEL_OWNER)
    assert bob.post(f"/ui/approvals/{first.id}/approve").status_code == 303
    assert 'data-testid="stale-warning"' in bob.get(f"/ui/approvals/{second.id}").text
    stale = bob.post(f"/ui/approvals/{second.id}/approve")
    assert stale.status_code == 409
    assert "changed since it was submitted: submit again" in error_of(stale.text)


def test_approve_leaves_the_inbox_and_the_entity_page_shows_the_new_state(browser, engine, tenant):
    request = submit(engine, tenant, metadata_request(label="Gross amount, new"))
    bob = browser(tenant, "bob", KERNEL_OWNER)
    assert inbox_ids(bob.get("/ui/")) == [str(request.id)]
    done = bob.post(f"/ui/approvals/{request.id}/approve", {"reason": "looks right"})
    assert done.status_code == 303
    assert inbox_ids(bob.get(done.headers["location"])) == []
    entity = bob.get("/ui/entities/finance.revenue.gross_amount")
    assert entity.status_code == 200
    assert 'data-testid="entity-version">1<' in entity.text
    assert "Gross amount, new" in entity.text
    assert "approval.approved" in entity.text and "looks right" in entity.text
    assert 'data-testid="history-row"' in entity.text


def test_another_tenants_objects_are_the_404_page(browser, engine, tenant):
    theirs = submit(engine, uuid.uuid4(), metadata_request())
    approve(engine, theirs.tenant_id, theirs)
    bob = browser(tenant, "bob", KERNEL_OWNER)
    before = store_snapshot(engine)
    for response in (
        bob.get(f"/ui/approvals/{theirs.id}"),
        bob.post(f"/ui/approvals/{theirs.id}/approve"),
        bob.post(f"/ui/approvals/{theirs.id}/evidence"),
        bob.get("/ui/entities/finance.revenue.gross_amount"),
        bob.get("/ui/approvals/not-a-uuid"),
        bob.get("/ui/no/such/page"),
    ):
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"]
        assert "<h1>Not found</h1>" in response.text
    assert store_snapshot(engine) == before


def test_evidence_profiles_the_proposed_binding_and_saves_nothing(browser, engine, tenant):
    request = submit(engine, tenant, metadata_request(binding=DEMO_BINDING))
    bob = browser(tenant, "bob", KERNEL_OWNER)
    page = bob.get(f"/ui/approvals/{request.id}").text
    assert 'data-testid="evidence-button"' in page
    before = store_snapshot(engine)
    evidence = bob.post(f"/ui/approvals/{request.id}/evidence")
    assert evidence.status_code == 200
    assert 'data-testid="evidence-score">91.89<' in evidence.text
    assert evidence.text.count('data-testid="evidence-column"') == 3
    assert "score 91.89 meets the tier1 minimum 80" in evidence.text
    assert store_snapshot(engine) == before


def test_evidence_is_refused_on_the_page_to_whoever_may_not_decide(browser, engine, tenant):
    """The issue's reader, previewing bindings with rules until they give a column's maximum,
    and a steward on a kernel request: 403, the refusal on the page, nothing profiled."""
    probe = {**DEMO_BINDING, "columns": [{"name": "gross_amount", "min": 0, "max": 100}]}
    own = submit(engine, tenant, metadata_request("hr.probe", tier="tier2", binding=probe), "rita")
    kernel = submit(engine, tenant, metadata_request(binding=DEMO_BINDING))
    for who, request, role in (
        (browser(tenant, "rita", "reader"), own, STEWARD),
        (browser(tenant, "sam", STEWARD), kernel, KERNEL_OWNER),
    ):
        refused = who.post(f"/ui/approvals/{request.id}/evidence")
        assert refused.status_code == 403
        assert f"role {role} (or tenant_admin) is required to preview" in error_of(refused.text)
        assert 'data-testid="evidence-score"' not in refused.text


def test_evidence_that_cannot_run_says_why(browser, engine, tenant):
    request = submit(engine, tenant, metadata_request())  # bound to an unconfigured source
    evidence = browser(tenant, "bob", KERNEL_OWNER).post(f"/ui/approvals/{request.id}/evidence")
    assert evidence.status_code == 200
    assert "MDSTUDIO_SOURCE_WAREHOUSE_URL" in error_of(evidence.text)
    kpi = submit(engine, tenant, kpi_request())
    page = browser(tenant, "sam", STEWARD).get(f"/ui/approvals/{kpi.id}").text
    assert 'data-testid="evidence-button"' not in page  # nothing to profile


@pytest.fixture
def profiled(engine, tenant, console_settings):
    """A tier1 field bound to the demo warehouse, profiled twice, the second time failing a
    raised minimum (so an incident is open)."""
    approve(engine, tenant, submit(engine, tenant, metadata_request(binding=DEMO_BINDING)))
    key = "finance.revenue.gross_amount"
    viewer = person(tenant, "bob", KERNEL_OWNER)
    result = profiling.preview_entity(UnitOfWork(engine), console_settings, viewer, key).result
    strict = console_settings.model_copy(update={"tier1_min_score": 95.0})
    for run, settings in (("run-1", console_settings), ("run-2", strict)):
        profiling.save_profiles(UnitOfWork(engine), settings, tenant, [(result, Tier.TIER1)], run)
    return key


def test_the_entity_page_charts_the_score_and_shows_the_incident(browser, profiled, tenant):
    page = browser(tenant, "bob", KERNEL_OWNER).get(f"/ui/entities/{profiled}").text
    chart = page[page.index('<svg class="chart"') : page.index("</svg>")]
    assert chart.count("<circle") == 2 and "<polyline" in chart
    assert "latest 91.89" in chart
    assert page.count('data-testid="profile-column"') == 3
    assert 'data-testid="open-incident"' in page


def test_incidents_are_acknowledged_then_resolved(browser, profiled, tenant):
    steward = browser(tenant, "sam", STEWARD)
    bob = browser(tenant, "bob", KERNEL_OWNER)
    page = bob.get("/ui/incidents").text
    incident_id = re.search(r'data-incident-id="([^"]+)"', page).group(1)
    refused = steward.post(f"/ui/incidents/{incident_id}/acknowledge", {"note": "mine"})
    assert refused.status_code == 403 and "kernel_owner" in error_of(refused.text)
    assert (
        bob.post(f"/ui/incidents/{incident_id}/acknowledge", {"note": "on it"}).status_code == 303
    )
    page = bob.get("/ui/incidents").text
    assert "acknowledged" in page and 'data-testid="acknowledge-button"' not in page
    assert bob.post(f"/ui/incidents/{incident_id}/resolve", {"reason": "fixed"}).status_code == 303
    assert 'data-testid="incident-row"' not in bob.get("/ui/incidents").text
    assert bob.post(f"/ui/incidents/{uuid.uuid4()}/resolve", {"reason": "x"}).status_code == 404


def test_the_inbox_pages_through_many_requests(browser, engine, tenant):
    submitted = [
        str(submit(engine, tenant, metadata_request(f"bulk.f{i:03d}", tier="tier2")).id)
        for i in range(105)
    ]
    steward = browser(tenant, "sam", STEWARD)
    first = steward.get("/ui/")
    assert inbox_ids(first) == submitted[:100] and "Next page" in first.text
    second = steward.get("/ui/?offset=100")
    assert inbox_ids(second) == submitted[100:] and "Next page" not in second.text
    assert inbox_ids(steward.get("/ui/?per_page=500")) == submitted
    assert inbox_ids(steward.get("/ui/?per_page=1000")) == submitted
    assert steward.get("/ui/?per_page=7").status_code == 422


def test_a_request_on_a_field_shows_the_kpis_that_depend_on_it(browser, engine, tenant):
    for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount"):
        approve(engine, tenant, submit(engine, tenant, metadata_request(key)))
    kpi = submit(engine, tenant, kpi_request())
    approve(engine, tenant, kpi, role=STEWARD)
    change = submit(engine, tenant, changed(metadata_request(), label="Gross amount (EUR)"))
    page = browser(tenant, "olga", KERNEL_OWNER).get(f"/ui/approvals/{change.id}").text
    rows = re.findall(r'<tr data-testid="impact-row">\s*<th[^>]*><a[^>]*>([^<]+)</a>', page)
    assert rows == ["finance.kpi.gross_margin"]
    new_field = submit(engine, tenant, metadata_request("finance.revenue.new_field"))
    page = browser(tenant, "olga", KERNEL_OWNER).get(f"/ui/approvals/{new_field.id}").text
    assert 'data-testid="impact-row"' not in page
