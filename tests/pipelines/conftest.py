"""The pipelines' shared fixture: a temporary Dagster instance beside a store on each backend,
the demo warehouse, and a driver for the sensor and the profiling job in process."""

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.definitions import defs
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.dagster_internals import no_defs_state_storage
from mdstudio_pipelines.lib.partitions import partition_key
from tests.support.factories import DEMO_BINDING, SETTINGS, metadata_request, person


def load_defs() -> dg.Definitions:
    """The code location's definitions, from the store as it is now (as a reloaded location),
    resolved at once: resolving them later, when a disposed instance of another test may be
    left as Dagster's current defs state storage, fails (see `no_defs_state_storage`)."""
    with no_defs_state_storage():
        definitions = defs()
        definitions.get_repository_def()
    return definitions


@pytest.fixture(autouse=True)
def fresh_defs_state():
    """No disposed instance of another test left as Dagster's current defs state storage."""
    with no_defs_state_storage():
        yield


class Env:
    def __init__(self, instance, engine, url, tenant):
        self.instance, self.engine, self.url, self.tenant = instance, engine, url, tenant
        self.cursor: str | None = None
        self.pass_cursor: str | None = None
        self.defs: dg.Definitions | None = None  # as the last tick saw them

    def approve(
        self, key="finance.revenue.gross_amount", tier="tier1", binding=DEMO_BINDING, **fields
    ):
        request = metadata_request(key=key, tier=tier, binding=binding, **fields)
        approval = approvals.submit(
            UnitOfWork(self.engine), person(self.tenant, "alice"), request, SETTINGS
        )
        bob = person(self.tenant, "bob", approval.required_role)
        return approvals.approve(UnitOfWork(self.engine), bob, approval.id, None, SETTINGS)

    def tick(self):
        """One sensor evaluation (it records its observations itself), with the side effects
        the daemon commits with the tick."""
        defs = self.defs = load_defs()  # from the store as it is now (a reloaded location)
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=defs,
            resources={"catalog": CatalogResource()},
        ) as context:
            result = defs.resolve_sensor_def("approval_sensor")(context)
        if isinstance(result, dg.SkipReason):
            return result
        assert not result.asset_events
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        self.cursor = result.cursor
        return result

    def schedule(self, name: str, when: dt.datetime):
        """One evaluation of the schedule `name` for its tick at `when`. The context is closed
        at once: an evaluation context enters an instance of its own, and one left for the
        garbage collector resets Dagster's current defs state storage whenever it is collected,
        to a disposed instance's (`load_defs` then fails in a later test)."""
        schedule = load_defs().resolve_schedule_def(name)
        with dg.build_schedule_context(
            instance=self.instance,
            scheduled_execution_time=when,
            resources={"catalog": CatalogResource()},
        ) as context:
            return schedule(context)

    def pass_tick(self, cursor: str | None = None):
        """One evaluation of `profiling_pass_sensor` from `cursor` (default: the last one this
        driver committed), committing its cursor as the daemon does."""
        defs = self.defs = load_defs()
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor if cursor is not None else self.pass_cursor,
            definitions=defs,
            resources={"catalog": CatalogResource()},
        ) as context:
            result = defs.resolve_sensor_def("profiling_pass_sensor")(context)
        if not isinstance(result, dg.SkipReason):
            self.pass_cursor = result.cursor
        return result

    def run(self, run_request, raise_on_error=True):
        job = (self.defs or load_defs()).resolve_job_def("profile_tables_job")
        return job.execute_in_process(
            run_config=run_request.run_config,
            instance=self.instance,
            tags=run_request.tags,
            asset_selection=run_request.asset_selection,
            raise_on_error=raise_on_error,
        )

    def run_allowing_failure(self, run_request):
        return self.run(run_request, raise_on_error=False)

    def observations(self, asset_key, key="finance.revenue.gross_amount"):
        records = self.instance.fetch_observations(
            dg.AssetRecordsFilter(
                asset_key=asset_key, asset_partitions=[partition_key(self.tenant, key)]
            ),
            limit=100,
            ascending=True,
        ).records
        return [
            {k: getattr(v, "value", v) for k, v in r.asset_observation.metadata.items()}
            for r in records
        ]

    def skips(self, asset_key, key="finance.revenue.gross_amount"):
        """The `metadata.profile.skipped` observations among `observations`."""
        observed = self.observations(asset_key, key)
        return [o for o in observed if o["event_type"] == "metadata.profile.skipped"]


@pytest.fixture
def env(store_url, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", demo_warehouse.build(tmp_path / "warehouse.db"))
    monkeypatch.delenv("MDSTUDIO_MIN_RERUN_HOURS", raising=False)
    monkeypatch.setenv("MDSTUDIO_DAGSTER_WEBSERVER_URL", "http://127.0.0.1:9")  # nobody's
    engine = sa.create_engine(store_url)
    with dg.instance_for_test() as instance:
        yield Env(instance, engine, store_url, uuid.uuid4())
    engine.dispose()
