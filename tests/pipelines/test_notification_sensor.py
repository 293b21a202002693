"""notification_sensor in Dagster: a real profiling run opens incidents on two fields of one
table, and the sensor's tick sends one signed message for the run; approval_sensor and
notification_sensor keep their cursors in the store."""

from __future__ import annotations

import json

import dagster as dg
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain import notifications as rules
from mdstudio_core.service_layer import notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.defs.resources import CatalogResource
from tests.pipelines.conftest import DEMO_BINDING, load_defs
from tests.support.factories import person
from tests.support.webhook_receiver import Receiver


def notification_tick(env):
    defs = load_defs()
    with dg.build_sensor_context(
        instance=env.instance, definitions=defs, resources={"catalog": CatalogResource()}
    ) as context:
        return defs.resolve_sensor_def("notification_sensor")(context)


def cursors(env):
    with env.engine.connect() as connection:
        return dict(connection.execute(sa.select(tables.consumer_cursors.c[:2])).all())


def test_a_run_that_opens_two_incidents_sends_one_signed_message(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_TIER1_MIN_SCORE", "95")  # the demo table scores about 91
    monkeypatch.setenv("MDSTUDIO_NOTIFY_ALLOW_PRIVATE", "1")  # the receiver is on loopback
    receiver = Receiver().start()
    try:
        secret, _ = notifications.subscribe(
            UnitOfWork(env.engine),
            person(env.tenant, "ada", "tenant_admin"),
            receiver.url,
            None,
            None,
            Settings.from_env(),
        )
        env.approve(key="finance.revenue.gross_amount")
        env.approve(
            key="finance.revenue.currency",
            binding={**DEMO_BINDING, "columns": [DEMO_BINDING["columns"][2]]},
        )
        [run_request] = env.tick().run_requests
        result = env.run(run_request)
        assert result.success
        skip = notification_tick(env)
        assert "delivered 1" in skip.skip_message, skip.skip_message
        [message] = receiver.received
        timestamp = int(message.headers["X-Mdstudio-Timestamp"])
        assert message.headers["X-Mdstudio-Signature"] == rules.signature(
            secret, timestamp, message.body
        )
        body = json.loads(message.body)
        assert sorted(e["entity_key"] for e in body["events"]) == [
            "finance.revenue.currency",
            "finance.revenue.gross_amount",
        ]
        assert {e["payload"]["run_id"] for e in body["events"]} == {result.run_id}
        assert "delivered 0" in notification_tick(env).skip_message
        assert len(receiver.received) == 1
        # approval_sensor records the profile and incident events but profiles nothing more.
        assert not getattr(env.tick(), "run_requests", None)
        env.tick()  # and records the cursor it starts from
        recorded = cursors(env)
        with env.engine.connect() as connection:
            last = connection.execute(sa.select(sa.func.max(tables.events.c.id))).scalar()
        assert recorded["notification_sensor"] == last
        assert 0 < recorded["approval_sensor"] <= last
    finally:
        receiver.stop()
