"""The store's connections are cut while a profiling run is writing: the run rides it out, every
due profile exists exactly once, and approval_sensor resumes from its cursor, skipping and
repeating no event.

The run and the sensor reach PostgreSQL through a TCP proxy the test controls (approvals go to
the server directly, as from another host); the job runs in process, the sensor is ticked as
in test_pipelines.py. The cut is triggered by the run's second profile `INSERT` itself, and the
test waits on conditions, never on the clock.
"""

import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core import bootstrap
from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_pipelines.lib.asset_keys import CATALOG_ENTITY, ENTITY_PROFILE
from mdstudio_pipelines.lib.partitions import partition_key
from tests.pipelines.conftest import DEMO_BINDING, Env
from tests.support.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]

KEYS = ("finance.revenue.orders", "finance.revenue.orders_b", "finance.revenue.later")


@pytest.fixture
def proxy(store_url):
    url = sa.make_url(store_url)
    proxy = TcpProxy((url.host, url.port))
    yield proxy
    proxy.close()


@pytest.fixture
def env(store_url, proxy, tmp_path, monkeypatch):
    """Dagster and the sensor reach the store through the proxy; `Env.engine`, which approves
    and checks, goes to the server directly."""
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", demo_warehouse.build(warehouse))
    with sqlite3.connect(warehouse) as connection:
        connection.execute("CREATE TABLE orders_b AS SELECT * FROM orders")
    proxied = (
        sa.make_url(store_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", proxied)
    monkeypatch.delenv("MDSTUDIO_MIN_RERUN_HOURS", raising=False)
    monkeypatch.setenv("MDSTUDIO_DAGSTER_WEBSERVER_URL", "http://127.0.0.1:9")  # nobody's
    engine = sa.create_engine(store_url)
    with dg.instance_for_test() as instance:
        yield Env(instance, engine, store_url, uuid.uuid4())
    settings = Settings.from_env()
    bootstrap.shared_store_engine(settings).dispose()
    engine.dispose()


def test_a_run_cut_off_from_the_store_saves_each_profile_once_and_the_sensor_skips_nothing(
    env, proxy
):
    env.approve(key=KEYS[0], binding={**DEMO_BINDING, "table": "orders"})
    env.approve(key=KEYS[1], binding={**DEMO_BINDING, "table": "orders_b"})
    [request] = env.tick().run_requests
    cursor = env.cursor
    assert request.tags["mdstudio/tables"] == "2"

    # The run saves one table's profiles, then the store goes away as it saves the other's.
    proxy.cut_at(b"INSERT INTO mdm_profile", occurrence=2)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(env.run, request)
        assert proxy.was_cut.wait(60), "the run never reached its second profile"
        with pytest.raises(sa.exc.OperationalError):
            env.tick()  # the store is down: the tick fails and its cursor stays
        assert env.cursor == cursor
        env.approve(key=KEYS[2], binding={**DEMO_BINDING, "table": "orders"})  # writers go on
        proxy.restore()
        result = running.result(timeout=120)
    assert result.success
    retries = result.filter_events(lambda e: e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retries, "the run should have retried its step"

    [later] = env.tick().run_requests  # resumes from the cursor: the last approval's events
    assert env.run(later).success
    # The profiles' own outbox events are observed by the next tick, which profiles nothing.
    assert not env.tick().run_requests

    with env.engine.connect() as connection:
        saved = connection.execute(sa.select(tables.profiles.c.canonical_key)).scalars().all()
        every_event = connection.execute(sa.select(tables.events.c.id)).scalars().all()
    assert sorted(saved) == sorted(KEYS)
    for key in KEYS:
        materializations = env.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=ENTITY_PROFILE, asset_partitions=[partition_key(env.tenant, key)]
            ),
            limit=10,
        ).records
        assert len(materializations) == 1, key
    observed = [
        record.asset_observation.metadata["event_id"].value
        for record in env.instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=CATALOG_ENTITY), limit=1000
        ).records
    ]
    assert sorted(observed) == sorted(every_event)
