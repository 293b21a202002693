"""`approval_sensor`: the catalog's outbox becomes Dagster's event stream and profiling runs.

Each tick reads `mdm_event` after its cursor (the last event id) in bounded pages. Every event
becomes an observation of its entity, so approvals and rejections sit in Dagster's event log;
every due or requested profile passes the cost guards, and the due tables (each scanned once)
are packed into runs per tenant and source. The cursor and the run requests are committed by
Dagster with the tick, and run keys are derived from event ids: a retried tick or a restarted
daemon never launches the same profile twice, and a crash before the tick commits leaves the
cursor where it was (the tick is evaluated again; its observations are written at least once).

The store keeps the consumer's cursor too (`mdm_consumer_cursor`, `consumers.resume`): each
tick records there what Dagster committed with the last one, so lags and retention see it,
and reads there whether an operator replayed a range since. A replay moves the store's cursor
to a new generation, which then counts over Dagster's; the replay's runs are keyed by it
(`replay:<id>:events:...`), so Dagster launches them once per replay, however often a crash
makes the tick start over. An event the sensor cannot read is tried at each tick until it has
failed `MDSTUDIO_CONSUMER_MAX_ATTEMPTS` times, then set aside as a dead letter; one handed back
(`mdstudio events dead-letters retry`) is handled at the next tick, its runs keyed by the retry.
"""

import datetime as dt
import time
import uuid
from dataclasses import dataclass

import dagster as dg
import orjson

from mdstudio_core.config import Settings
from mdstudio_core.domain.consumers import DeadLetter
from mdstudio_core.domain.events import (
    CORRELATED_BY_APPROVAL,
    DEPLOYMENT_TENANT,
    EntityChanged,
    Event,
    EventType,
    read_payload,
)
from mdstudio_core.service_layer import consumers, lineage, profile_requests
from mdstudio_pipelines.defs.jobs import ProfileJob
from mdstudio_pipelines.defs.kpis import kpi_events
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.run_planning import plan_runs
from mdstudio_pipelines.defs.sensors import planning_sensor
from mdstudio_pipelines.lib.asset_keys import CATALOG_ENTITY, AssetGraph
from mdstudio_pipelines.lib.dagster_internals import store_observations
from mdstudio_pipelines.lib.partitions import CATALOG_ENTITIES, partition_key
from mdstudio_pipelines.lib.reload import CATALOG, RELOADER

CONSUMER = "approval_sensor"
PAGE_SIZE = 500
# The changes of a field that change what its KPIs can be trusted with.
REBINDING = frozenset({"binding", "status"})
LOCATION_NAME = "mdstudio"  # workspace.yaml's, when the tick does not say
# A tick reads at most `MDSTUDIO_SENSOR_MAX_EVENTS` events and stops paging after this long; a
# backlog drains over several ticks, each well inside Dagster's 60 s evaluation limit.
TICK_BUDGET_SECONDS = 20.0


def build_approval_sensor(
    settings: Settings, job: ProfileJob, graph: AssetGraph
) -> dg.SensorDefinition:
    """`approval_sensor`, ticking every `MDSTUDIO_SENSOR_INTERVAL_SECONDS`."""

    return planning_sensor(
        CONSUMER,
        "Reads the mdstudio outbox: records each event, requests due profiles.",
        settings,
        job,
        graph,
        evaluate_approval_sensor,
    )


def evaluate_approval_sensor(
    context: dg.SensorEvaluationContext, catalog: CatalogResource, graph: AssetGraph
) -> dg.SensorResult | dg.SkipReason:
    """One tick: the events after the cursor (and the dead letters handed back) become
    observations and run requests; a catalog changed since the code location loaded asks the
    webserver for a reload."""
    now = dt.datetime.now(dt.UTC)
    cursor = consumers.resume(catalog.uow(), CONSUMER, decode_cursor(context.cursor), now)
    reload_if_changed(context, catalog, graph)
    read = read_events(catalog, cursor.position, cursor.read_through)
    handled, position = handle_each(catalog, read, cursor.position)
    retried = [
        (letter, work)
        for letter in consumers.retrying(catalog.uow(), CONSUMER)
        if (work := retry_work(catalog, letter)) is not None
    ]
    next_cursor = encode_cursor(
        consumers.Committed(
            cursor.moved_to(position, now).position,
            cursor.generation,
            tuple(letter.id for letter, _ in retried),
        )
    )
    if not handled and not retried:
        if position == cursor.position:
            return dg.SkipReason(
                f"no new events in mdm_event after {position}"
                if not read
                else f"event {read[0].id} failed; it is tried again at the next tick"
            )
        return dg.SensorResult(cursor=next_cursor)  # past events set aside as dead letters
    runs = plan_runs(context, catalog, graph, [w.event for w in handled], cursor.key)
    for letter, work in retried:
        runs += plan_runs(context, catalog, graph, [work.event], letter.key)
    everything = [*handled, *(work for _, work in retried)]
    report_changed_kpis(context, catalog, [w.kpi_change for w in everything if w.kpi_change])
    add_partitions(
        context.instance,
        {partition_key(w.event.tenant_id, w.event.entity_key) for w in everything if w.observed},
    )
    store_observations(
        context.instance,
        [
            *(event_observation(w.event) for w in everything if w.observed),
            *(observation for run in runs for observation in run.observations),
        ],
    )
    return dg.SensorResult(
        run_requests=[request for run in runs for request in run.requests], cursor=next_cursor
    )


def decode_cursor(raw: str | None) -> consumers.Committed | None:
    """Dagster's committed cursor: the position, the generation (replays) it read in and the
    dead letters its tick retried. A cursor of an earlier release is the position alone."""
    if not raw:
        return None
    if raw.isdigit():
        return consumers.Committed(int(raw))
    value = orjson.loads(raw)
    return consumers.Committed(value["position"], value["generation"], tuple(value["retried"]))


def encode_cursor(committed: consumers.Committed) -> str:
    return orjson.dumps(
        {
            "position": committed.position,
            "generation": committed.generation,
            "retried": list(committed.retried),
        }
    ).decode()


@dataclass(frozen=True)
class EventWork:
    """What one event asks of the sensor, worked out on its own so that an event the sensor
    cannot read is known: whether it is observed (a catalog entity's), and the KPI trust it
    changes."""

    event: Event
    observed: bool
    kpi_change: tuple[str, uuid.UUID, str] | None


def event_work(event: Event) -> EventWork:
    """Raises when the event cannot be handled (a payload the sensor cannot read)."""
    if event.tenant_id == DEPLOYMENT_TENANT:  # the deployment's own (a replay): no entity
        return EventWork(event, observed=False, kpi_change=None)
    profile_requests.candidates_from_events([event])
    event_observation(event)
    return EventWork(event, observed=True, kpi_change=kpi_change(event))


def handle_each(
    catalog: CatalogResource, events: list[Event], position: int
) -> tuple[list[EventWork], int]:
    """The events the tick handles, each worked out on its own, and the position after them.
    An event that fails stops the tick before it (the next tick tries it again) until it has
    failed `MDSTUDIO_CONSUMER_MAX_ATTEMPTS` times in a row: then it is a dead letter and the
    tick moves past it. A failure of the store is not the event's: it fails the tick."""
    handled = []
    for event in events:
        try:
            handled.append(event_work(event))
        except consumers.ENVIRONMENT_ERRORS:
            raise
        except Exception as exc:
            if not consumers.record_failure(catalog.uow(), CONSUMER, event, exc, catalog.settings):
                break
        position = event.id
    return handled, position


def retry_work(catalog: CatalogResource, letter: DeadLetter) -> EventWork | None:
    """A dead letter handed back, worked out again; None when it fails again (it is dead
    again, with the new error)."""
    try:
        return event_work(Event.from_json(letter.event))
    except consumers.ENVIRONMENT_ERRORS:
        raise
    except Exception as exc:
        consumers.record_retry_failure(catalog.uow(), letter, exc, catalog.settings)
        return None


def reload_if_changed(
    context: dg.SensorEvaluationContext, catalog: CatalogResource, graph: AssetGraph
) -> None:
    """Compare the store's catalog with the one this location was built from, and request a
    reload of the location (debounced, see `lib/reload.py`) when they differ."""
    built = graph.fingerprint
    current = CATALOG.current(catalog.uow)
    origin = context.code_location_origin
    location = origin.location_name if origin is not None else LOCATION_NAME
    requested, error = RELOADER.reload(
        catalog.settings.dagster_webserver_url, location, built, current
    )
    if requested:
        outcome = f"failed ({error}); trying again later" if error else "done"
        context.log.info(f"the catalog's structure changed: reload of {location} {outcome}")


def kpi_change(event: Event) -> tuple[str, uuid.UUID, str] | None:
    """What an event changes of KPI trust: a KPI approved (new or changed), or a field's
    binding changed or deprecated."""
    if event.type == EventType.KPI_CHANGED:
        return ("kpi", event.tenant_id, event.entity_key)
    if event.type == EventType.METADATA_CHANGED:
        changed = read_payload(event, EntityChanged)
        if set(changed.changed_fields) & REBINDING and changed.previous_version:
            return ("field", event.tenant_id, event.entity_key)
    return None


def report_changed_kpis(
    context: dg.SensorEvaluationContext,
    catalog: CatalogResource,
    changes: list[tuple[str, uuid.UUID, str]],
) -> None:
    """A KPI approved, or a field's binding changed or deprecated: the KPIs' trust was
    recomputed with the approval (`approvals.approve`); the KPI assets get it as a
    materialization and a `kpi_inputs_quality` evaluation, reported without a run."""
    fields: dict[uuid.UUID, set[str]] = {}
    kpis: dict[uuid.UUID, set[str]] = {}
    for kind, tenant_id, key in changes:
        (kpis if kind == "kpi" else fields).setdefault(tenant_id, set()).add(key)
    tenants = set(fields) | set(kpis)
    if not tenants:
        return
    labels = lineage.tenant_labels(catalog.uow(), tenants)
    for tenant_id in tenants:
        trusts = lineage.current_trust(
            catalog.uow(),
            catalog.settings,
            tenant_id,
            fields.get(tenant_id, ()),
            kpis.get(tenant_id, ()),
        )
        for trust in trusts:
            for event in kpi_events(catalog.settings, labels[tenant_id], tenant_id, trust):
                context.instance.report_runless_asset_event(event)


def read_events(catalog: CatalogResource, cursor: int, through: int | None) -> list[Event]:
    """The events after `cursor` (through `through`, a replay's last), page by page, up to this
    tick's bounds: at most `MDSTUDIO_SENSOR_MAX_EVENTS` events and `MDSTUDIO_SENSOR_MAX_BYTES`
    of payload (counted by the database, so a tick never reads more; a single larger event is
    read alone)."""
    events: list[Event] = []
    most, budget = catalog.settings.sensor_max_events, catalog.settings.sensor_max_bytes
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    while len(events) < most and budget > 0 and time.monotonic() < deadline:
        limit = min(PAGE_SIZE, most - len(events))
        with catalog.uow() as uow:
            page = uow.events.list(after=cursor, limit=limit, max_bytes=budget, through=through)
        events.extend(page)
        budget -= sum(len(orjson.dumps(event.payload)) for event in page)
        if len(page) < limit:
            break
        cursor = page[-1].id
    return events


def event_observation(event: Event) -> dg.AssetObservation:
    payload = event.payload
    return dg.AssetObservation(
        asset_key=CATALOG_ENTITY,
        partition=partition_key(event.tenant_id, event.entity_key),
        metadata={
            "event_id": event.id,
            "event_type": str(event.type),  # Dagster stores plain strings, not members
            "actor": event.actor,
            "approval_id": _approval_id(event),
            "correlation_id": str(event.correlation_id),
            "entity_type": event.entity_type.value,
            "occurred_at": event.occurred_at.isoformat(),
            **{
                name: str(payload[name])
                for name in ("tier", "reason", "priority")
                if payload.get(name) is not None
            },
        },
    )


def _approval_id(event: Event) -> str:
    """The approval an event belongs to: named in its payload, else its correlation id for
    approval and entity events. Profile and incident events are correlated by other ids."""
    if "approval_id" in event.payload:
        return str(event.payload["approval_id"] or "")
    if event.type in CORRELATED_BY_APPROVAL:
        return str(event.correlation_id)
    return ""


def add_partitions(instance: dg.DagsterInstance, keys: set[str]) -> None:
    """Partitions for entities Dagster has not seen yet, added before any run needs them: in
    one query and one insert (a `SensorResult`'s partition requests cost the daemon a query and
    a connection per key). Adding is idempotent, so a tick evaluated again adds nothing."""
    if not keys:
        return
    missing = keys - set(instance.get_dynamic_partitions(CATALOG_ENTITIES.name))
    if missing:
        instance.add_dynamic_partitions(CATALOG_ENTITIES.name, sorted(missing))
