"""Quality incidents: the hysteresis rule without a database, then through the store (SQLite
and PostgreSQL), the CLI and the HTTP API, with profile events in the outbox."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain import incidents as rules
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.incidents import IncidentPolicy, IncidentStatus, ProfileOutcome
from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.quality import QualityThresholds
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import incidents
from mdstudio_core.service_layer.catalog import list_events
from mdstudio_core.service_layer.profiling import record_failures, save_profiles
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import CliResult, run_cli
from tests.support.factories import person, profile_result

KEY = "finance.revenue.gross_amount"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
THRESHOLDS = QualityThresholds()  # tier1 80, tier2 70


def outcome(score: float | None, tier: Tier = Tier.TIER1) -> ProfileOutcome:
    passed = score is not None and score >= (THRESHOLDS.minimum(tier) or 0)
    return ProfileOutcome(passed, score, uuid.uuid4(), "run")


DEFAULT_POLICY = IncidentPolicy()


def judge(scores, active=None, previous=None, policy=DEFAULT_POLICY, tier=Tier.TIER1):
    """`scores` newest first, as the store returns them."""
    recent = [outcome(score, tier) for score in scores]
    return rules.assess(uuid.uuid4(), KEY, tier, recent, active, previous, THRESHOLDS, policy, NOW)


# -- the rule, no database ----------------------------------------------------------------


def test_one_failing_profile_opens_an_incident_by_default():
    opened = judge([79.99])
    assert opened.incident.status is IncidentStatus.OPEN
    assert opened.incident.last_score == 79.99
    assert opened.event.type == "quality.incident.opened"
    assert opened.event.payload["threshold"] == 80
    assert opened.event.payload["actor"] == rules.SYSTEM_ACTOR
    assert judge([80.0]) == rules.Assessment()  # at the line passes


def test_open_after_counts_failures_in_a_row_and_a_failed_profile_counts():
    policy = IncidentPolicy(open_after=3)
    assert judge([50, 50], policy=policy).incident is None  # only two so far
    assert judge([50, 90, 50], policy=policy).incident is None  # not in a row
    assert judge([50, None, 50], policy=policy).incident is not None  # None: could not profile


def test_a_score_hovering_at_the_line_does_not_flap():
    active = judge([75]).incident
    for score in (80.0, 81.99, 79.0, 81.0):  # passes the check, but under minimum + margin
        step = judge([score], active=active)
        assert step.event is None and step.incident.status is IncidentStatus.OPEN
        assert step.incident.last_score == score
        active = step.incident
    recovered = judge([82.0], active=active)
    assert recovered.incident.status is IncidentStatus.RESOLVED
    assert recovered.event.type == "quality.incident.resolved"
    assert recovered.incident.resolved_by == rules.SYSTEM_ACTOR
    assert "82" in recovered.event.payload["reason"]


def test_the_margin_is_a_setting():
    active = judge([75]).incident
    policy = IncidentPolicy(recovery_margin=0)
    assert judge([80], active=active, policy=policy).incident.status is IncidentStatus.RESOLVED


def test_a_new_degradation_points_to_the_previous_incident():
    first = judge([75]).incident
    resolved = judge([95], active=first).incident
    again = judge([60], previous=resolved)
    assert again.incident.id != first.id
    assert again.incident.previous_incident_id == first.id
    assert again.event.payload["previous_incident_id"] == str(first.id)


def test_tier2_is_watched_against_its_own_minimum_and_tier3_is_not():
    assert judge([69], tier=Tier.TIER2).incident is not None
    assert judge([69.5], tier=Tier.TIER2).event.payload["threshold"] == 70
    assert judge([75], tier=Tier.TIER2) == rules.Assessment()
    assert judge([None], tier=Tier.TIER3) == rules.Assessment()


def test_people_acknowledge_then_resolve_with_a_reason_and_the_right_role():
    incident = judge([75]).incident
    steward = person(incident.tenant_id, "sam", "steward")
    owner = person(incident.tenant_id, "kim", "kernel_owner")
    admin = person(incident.tenant_id, "ada", "tenant_admin")
    with pytest.raises(Forbidden, match="kernel_owner"):
        incident.acknowledge(steward, "kernel_owner", None, NOW, THRESHOLDS)
    acknowledged, event = incident.acknowledge(owner, "kernel_owner", "on it", NOW, THRESHOLDS)
    assert acknowledged.status is IncidentStatus.ACKNOWLEDGED and acknowledged.active
    assert event.payload["note"] == "on it" and event.payload["actor"] == "kim"
    with pytest.raises(Conflict):
        acknowledged.acknowledge(owner, "kernel_owner", None, NOW, THRESHOLDS)
    with pytest.raises(InvalidInput) as refused:
        acknowledged.resolve(admin, "kernel_owner", " ", NOW, THRESHOLDS)
    assert refused.value.field == "reason"
    resolved, event = acknowledged.resolve(admin, "kernel_owner", "source fixed", NOW, THRESHOLDS)
    assert resolved.status is IncidentStatus.RESOLVED and resolved.resolution == "source fixed"
    assert event.type == "quality.incident.resolved" and event.payload["reason"] == "source fixed"
    with pytest.raises(Conflict):
        resolved.resolve(admin, "kernel_owner", "again", NOW, THRESHOLDS)


# -- through the store ----------------------------------------------------------------------


def save(engine, tenant, score, run_id, key=KEY, tier=Tier.TIER1):
    settings = Settings.from_env()
    return save_profiles(
        UnitOfWork(engine), settings, tenant, [(profile_result(key, score), tier)], run_id
    )


def events_of(engine, tenant, prefix=""):
    reader = person(tenant, "reader")
    return [
        e for e in list_events(UnitOfWork(engine), reader, limit=1000) if e.type.startswith(prefix)
    ]


def all_incidents(engine, tenant):
    return incidents.list_incidents(UnitOfWork(engine), person(tenant, "reader"))


def test_a_saved_profile_writes_its_event_once_even_when_the_run_is_retried(engine, tenant):
    [saved] = save(engine, tenant, 91.5, "run-1")
    save(engine, tenant, 91.5, "run-1")  # the run retried
    [event] = events_of(engine, tenant, "metadata.profile")
    assert event.type == "metadata.profile.completed"
    payload = event.payload
    assert payload["profile_id"] == str(saved.profile_id)
    assert payload["quality_score"] == 91.5 and payload["check_passed"] is True
    assert payload["threshold"] == 80 and payload["tier"] == "tier1"
    assert payload["run_id"] == "run-1" and payload["trigger"] == "schedule"
    assert set(payload) >= {
        "canonical_key",
        "completeness",
        "uniqueness",
        "validity",
        "row_count",
        "approval_id",
    }
    assert all_incidents(engine, tenant) == []


def test_a_failing_profile_opens_one_incident_and_recovery_resolves_it(engine, tenant):
    save(engine, tenant, 62.5, "run-1")
    save(engine, tenant, 62.5, "run-1")  # retried: no second event, no second incident
    save(engine, tenant, 81.0, "run-2")  # passes, but inside the margin: still open
    [incident] = all_incidents(engine, tenant)
    assert incident.status is IncidentStatus.OPEN and incident.last_score == 81.0
    save(engine, tenant, 90.0, "run-3")
    [incident] = all_incidents(engine, tenant)
    assert incident.status is IncidentStatus.RESOLVED and incident.resolved_by == "mdstudio"
    save(engine, tenant, 10.0, "run-4")
    newest, old = all_incidents(engine, tenant)
    assert newest.previous_incident_id == old.id and newest.status is IncidentStatus.OPEN
    types = [e.type for e in events_of(engine, tenant, "quality.incident")]
    assert types == [
        "quality.incident.opened",
        "quality.incident.resolved",
        "quality.incident.opened",
    ]
    opened = events_of(engine, tenant, "quality.incident")[0].payload
    assert opened["incident_id"] == str(old.id) and opened["quality_score"] == 62.5
    assert opened["run_id"] == "run-1"


def test_a_table_that_cannot_be_profiled_records_a_failure_once_and_it_counts(engine, uow, tenant):
    settings = Settings.from_env()
    for _ in range(2):  # retried
        record_failures(uow, settings, tenant, [(KEY, Tier.TIER1)], "run-9", "no such table")
    [failed] = events_of(engine, tenant, "metadata.profile")
    assert failed.type == "metadata.profile.failed"
    assert failed.payload == {
        "canonical_key": KEY,
        "tier": "tier1",
        "run_id": "run-9",
        "error": "no such table",
    }
    [incident] = all_incidents(engine, tenant)
    assert incident.last_score is None and incident.opening_profile_id is None


def test_two_runs_judging_one_entity_at_once_open_one_incident(engine, tenant):
    import threading

    barrier = threading.Barrier(4)
    errors = []

    def run(n):
        barrier.wait()
        try:
            save(engine, tenant, 40.0, f"run-{n}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(all_incidents(engine, tenant)) == 1
    assert len(events_of(engine, tenant, "quality.incident.opened")) == 1


def test_incidents_are_tenant_scoped_and_handled_by_the_deciding_role(engine, uow, tenant):
    save(engine, tenant, 50.0, "run-1")
    [incident] = all_incidents(engine, tenant)
    settings = Settings.from_env()
    stranger = person(uuid.uuid4(), "eve", "tenant_admin")
    with pytest.raises(NotFound):
        incidents.get_incident(uow, stranger, incident.id)
    with pytest.raises(NotFound):
        incidents.acknowledge(uow, stranger, incident.id, None, settings)
    steward = person(tenant, "sam", "steward")
    with pytest.raises(Forbidden):
        incidents.acknowledge(uow, steward, incident.id, None, settings)
    owner = person(tenant, "kim", "kernel_owner")
    acknowledged = incidents.acknowledge(uow, owner, incident.id, "on it", settings)
    assert acknowledged.acknowledged_by == "kim"
    assert all_incidents(engine, tenant)[0].status is IncidentStatus.ACKNOWLEDGED
    with pytest.raises(InvalidInput):
        incidents.resolve(uow, owner, incident.id, "", settings)
    admin = person(tenant, "ada", "tenant_admin")
    incidents.resolve(uow, admin, incident.id, "fixed upstream", settings)
    types = [e.type for e in events_of(engine, tenant, "quality.incident")]
    assert types[-2:] == ["quality.incident.acknowledged", "quality.incident.resolved"]
    # The next failure opens a new incident, pointing to this one.
    save(engine, tenant, 50.0, "run-2")
    assert all_incidents(engine, tenant)[0].previous_incident_id == incident.id


def test_tier2_incidents_need_the_steward_and_tier3_never_opens(engine, uow, tenant):
    save(engine, tenant, 10.0, "run-1", key="sales.orders.channel", tier=Tier.TIER3)
    assert all_incidents(engine, tenant) == []
    save(engine, tenant, 10.0, "run-1", key="sales.orders.region", tier=Tier.TIER2)
    [incident] = all_incidents(engine, tenant)
    steward = person(tenant, "sam", "metadata_steward")
    ack = incidents.acknowledge(uow, steward, incident.id, None, Settings.from_env())
    assert ack.status is IncidentStatus.ACKNOWLEDGED


def test_open_after_and_margin_are_read_from_the_environment(engine, tenant, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_INCIDENT_OPEN_AFTER", "2")
    monkeypatch.setenv("MDSTUDIO_INCIDENT_RECOVERY_MARGIN", "10")
    save(engine, tenant, 50.0, "run-1")
    assert all_incidents(engine, tenant) == []
    save(engine, tenant, 50.0, "run-2")
    assert len(all_incidents(engine, tenant)) == 1
    save(engine, tenant, 89.0, "run-3")
    assert all_incidents(engine, tenant)[0].status is IncidentStatus.OPEN
    save(engine, tenant, 90.0, "run-4")
    assert all_incidents(engine, tenant)[0].status is IncidentStatus.RESOLVED


# -- the CLI and the HTTP API --------------------------------------------------------------


def as_kernel_owner(*args: str) -> CliResult:
    """The CLI as kim, a kernel owner."""
    return run_cli([*args, "--user", "kim", "--role", "kernel_owner"])


def test_the_cli_lists_shows_acknowledges_and_resolves(cli_env, engine, tenant):
    save(engine, tenant, 50.0, "run-1")
    listed = run_cli(
        ["incidents", "list", "--status", "open", "--tier", "tier1", "--user", "u", "--json"]
    )
    assert listed.exit_code == 0, listed.stderr
    [record] = listed.json
    assert record["canonical_key"] == KEY and record["status"] == "open"
    incident_id = record["id"]
    assert run_cli(["incidents", "list", "--tier", "tier2", "--user", "u", "--json"]).json == []
    shown = run_cli(["incidents", "show", incident_id, "--user", "u"])
    assert shown.exit_code == 0 and KEY in shown.stdout
    refused = run_cli(["incidents", "ack", incident_id, "--user", "sam", "--role", "steward"])
    assert refused.exit_code == 3 and "kernel_owner" in refused.stderr
    acked = as_kernel_owner("incidents", "ack", incident_id, "--note", "looking", "--json")
    assert acked.exit_code == 0 and acked.json["status"] == "acknowledged"
    assert as_kernel_owner("incidents", "resolve", incident_id).exit_code == 2
    resolved = as_kernel_owner("incidents", "resolve", incident_id, "--reason", "fixed", "--json")
    assert resolved.exit_code == 0 and resolved.json["resolution"] == "fixed"
    assert (
        run_cli(
            ["incidents", "show", incident_id, "--user", "u", "--tenant", str(uuid.uuid4())]
        ).exit_code
        == 4
    )
    assert run_cli(["incidents", "show", "not-a-uuid", "--user", "u"]).exit_code == 2
    listed_events = run_cli(["events", "list", "--user", "u", "--json"]).json
    assert [e["type"] for e in listed_events] == [
        "metadata.profile.completed",
        "quality.incident.opened",
        "quality.incident.acknowledged",
        "quality.incident.resolved",
    ]


def test_the_http_api_is_tenant_scoped(engine, tenant, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_TRUSTED_HEADER_AUTH", "1")
    save(engine, tenant, 50.0, "run-1")
    client = TestClient(create_app(Settings.from_env(), engine))

    def headers(role, tenant_id=tenant):
        return {"x-tenant-id": str(tenant_id), "x-user-id": "kim", "x-role": role}

    listed = client.get("/incidents?status=open", headers=headers("viewer"))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    incident_id = item["id"]
    assert (
        client.get(f"/incidents/{incident_id}", headers=headers("viewer")).json()["id"]
        == incident_id
    )
    assert (
        client.get(f"/incidents/{incident_id}", headers=headers("viewer", uuid.uuid4())).status_code
        == 404
    )
    assert (
        client.post(f"/incidents/{incident_id}/ack", headers=headers("steward")).status_code == 403
    )
    acked = client.post(
        f"/incidents/{incident_id}/ack", json={"note": "on it"}, headers=headers("kernel_owner")
    )
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    no_reason = client.post(
        f"/incidents/{incident_id}/resolve", json={"reason": " "}, headers=headers("kernel_owner")
    )
    assert no_reason.status_code == 422
    resolved = client.post(
        f"/incidents/{incident_id}/resolve",
        json={"reason": "fixed"},
        headers=headers("tenant_admin"),
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    again = client.post(
        f"/incidents/{incident_id}/resolve", json={"reason": "x"}, headers=headers("tenant_admin")
    )
    assert again.status_code == 409
    events = client.get("/events", headers=headers("viewer")).json()["items"]
    assert "metadata.profile.completed" in [e["type"] for e in events]
    with engine.connect() as connection:
        row = connection.execute(sa.select(tables.quality_incidents)).one()
    assert row.resolved_by == "kim" and row.resolution == "fixed"
