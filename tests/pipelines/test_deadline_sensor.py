"""approval_deadline_sensor in process, on both backends: a tick marks each request past its
deadline with one `approval.overdue`; the next tick writes none; without a deadline set it
says so and does nothing."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.defs.resources import CatalogResource
from tests.pipelines.conftest import load_defs
from tests.support.factories import (
    SETTINGS,
    event_types,
    glossary_request,
    metadata_request,
    person,
)


def deadline_tick(env) -> dg.SkipReason:
    defs = load_defs()
    with dg.build_sensor_context(
        instance=env.instance, definitions=defs, resources={"catalog": CatalogResource()}
    ) as context:
        return defs.resolve_sensor_def("approval_deadline_sensor")(context)


def test_a_tick_marks_late_requests_once(env, monkeypatch):
    alice = person(env.tenant, "alice")
    late = approvals.submit(UnitOfWork(env.engine), alice, glossary_request(), SETTINGS)
    young = approvals.submit(UnitOfWork(env.engine), alice, glossary_request("Other"), SETTINGS)
    tier1 = approvals.submit(UnitOfWork(env.engine), alice, metadata_request(), SETTINGS)
    with env.engine.begin() as connection:
        connection.execute(
            sa.update(tables.approvals)
            .where(tables.approvals.c.id.in_([late.id, tier1.id]))
            .values(requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45))
        )
    assert "no approval deadline is set" in deadline_tick(env).skip_message
    monkeypatch.setenv("MDSTUDIO_TIER3_APPROVAL_SLA_HOURS", "0.5")
    skip = deadline_tick(env)
    assert skip.skip_message == "1 approval requests became overdue"
    assert event_types(env.engine, late.id) == ["approval.overdue"]
    assert event_types(env.engine, young.id) == event_types(env.engine, tier1.id) == []
    assert deadline_tick(env).skip_message == "0 approval requests became overdue"
    assert event_types(env.engine, late.id) == ["approval.overdue"]
