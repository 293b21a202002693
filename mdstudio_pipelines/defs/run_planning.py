"""Run planning, shared by `approval_sensor` and `profiling_pass_sensor` (and the CLI's dry run of
a replay): candidates through the cost guards, the due tables packed into run requests (one
tenant and one source per run, keyed so Dagster launches each once), and the guards' decisions
as observations of `entity_profile`."""

import datetime as dt
import uuid
from dataclasses import dataclass

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import Priority
from mdstudio_core.service_layer import profile_requests
from mdstudio_core.service_layer.profile_requests import (
    ProfileCandidate,
    ProfilePlan,
    Skip,
    TableBatch,
)
from mdstudio_pipelines.defs.jobs import JOB_NAME, ProfileRunConfig, TableConfig
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.asset_keys import (
    ENTITY_PROFILE,
    PROFILE_SKIPPED,
    RUN_REQUESTED,
    AssetGraph,
)
from mdstudio_pipelines.lib.partitions import partition_key

# Runs whose profiles may not be saved yet (a cancelling run may still be scanning).
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.MANAGED,
]
PRIORITY_TAG = {Priority.HIGH: "10", Priority.NORMAL: "0", Priority.LOW: "-10"}


@dataclass(frozen=True)
class TickRuns:
    requests: list[dg.RunRequest]
    observations: list[dg.AssetObservation]


def plan_runs(
    context: dg.SensorEvaluationContext,
    catalog: CatalogResource,
    graph: AssetGraph,
    events: list[Event],
    key: str | None,
) -> list[TickRuns]:
    """The runs the profile events among `events` ask for, through the cost guards, keyed by
    their event ids (and by `key`, the replay or retry they belong to), with the guards'
    decisions as observations."""
    settings = catalog.settings
    now = dt.datetime.now(dt.UTC)
    candidates = profile_requests.candidates_from_events(events)
    if not candidates:
        return []
    profile_plan = guarded_plan(
        context, catalog, candidates, [c.entity for c in candidates if not c.force], now
    )
    runs = pack_runs(profile_plan.batches, settings.tables_per_run, graph=graph, key=key)
    return [
        TickRuns(
            requests=[run.request for run in runs],
            observations=decision_observations(profile_plan.skipped, runs),
        )
    ]


@dataclass(frozen=True)
class PlannedRun:
    request: dg.RunRequest
    batches: list[TableBatch]


def pack_runs(
    batches: list[TableBatch],
    tables_per_run: int,
    slot: str | None = None,
    graph: AssetGraph | None = None,
    key: str | None = None,
) -> list[PlannedRun]:
    """Runs for the table batches: one tenant and one source per run, at most
    `tables_per_run` tables each. A run's key names the outbox events it serves, after the
    replay or retry they belong to (`key`), or, for a schedule, its slot, and its first
    table, so Dagster refuses to launch it twice. A run
    selects the table assets of its tables that `graph` has (a table bound since the code
    location loaded has none yet: a run of such tables only selects the whole job, and
    profiles only what its config names)."""
    by_source: dict[tuple[uuid.UUID, str], list[TableBatch]] = {}
    for batch in batches:
        by_source.setdefault((batch.tenant_id, batch.source), []).append(batch)
    runs = []
    for (tenant_id, source), group in by_source.items():
        for start in range(0, len(group), tables_per_run):
            chunk = group[start : start + tables_per_run]
            request = _run_request(tenant_id, source, chunk, slot, graph, key)
            runs.append(PlannedRun(request, chunk))
    return runs


def _run_request(
    tenant_id: uuid.UUID,
    source: str,
    chunk: list[TableBatch],
    slot: str | None,
    graph: AssetGraph | None,
    key: str | None,
) -> dg.RunRequest:
    entities = [entity for batch in chunk for entity in batch.entities]
    event_ids = [i for entity in entities for i in entity.candidate.event_ids]
    approval_ids = sorted(
        {str(e.candidate.approval_id) for e in entities if e.candidate.approval_id}
    )
    priority = Priority.highest(batch.priority for batch in chunk)
    where = f"{tenant_id}:{chunk[0].table_name}"  # the table name starts with its source
    known = [graph.known_table(tenant_id, batch.table_name) for batch in chunk] if graph else []
    selection = [key for key in known if key is not None]
    if slot:
        run_key = f"{slot}:{where}"
    else:
        served = f"events:{min(event_ids)}-{max(event_ids)}:{where}"
        run_key = f"{key}:{served}" if key else served
    return dg.RunRequest(
        run_key=run_key,
        job_name=JOB_NAME,
        asset_selection=selection or None,
        run_config=dg.RunConfig(
            ops={
                "profile_tables": ProfileRunConfig(
                    tenant_id=str(tenant_id),
                    tables=[
                        TableConfig(
                            table=batch.table_name,
                            canonical_keys=batch.keys,
                            triggers={
                                e.candidate.canonical_key: e.candidate.trigger.value
                                for e in batch.entities
                            },
                            approval_ids={
                                e.candidate.canonical_key: str(e.candidate.approval_id)
                                for e in batch.entities
                                if e.candidate.approval_id
                            },
                            full=any(e.candidate.full for e in batch.entities),
                        )
                        for batch in chunk
                    ],
                )
            }
        ),
        tags={
            "mdstudio/tenant": str(tenant_id),
            "mdstudio/tier": min(b.tier for b in chunk).value,
            # Lower-cased: the queue's per-source limits match the tag's exact value.
            "mdstudio/source": source.lower(),
            "mdstudio/tables": str(len(chunk)),
            "mdstudio/entities": str(len(entities)),
            "mdstudio/trigger": ",".join(sorted({e.candidate.trigger.value for e in entities})),
            "mdstudio/reason": ",".join(sorted({e.candidate.reason.value for e in entities})),
            "mdstudio/priority": priority.value,
            "mdstudio/approval_id": ",".join(approval_ids),
            "dagster/priority": PRIORITY_TAG[priority],
        },
    )


def decision_observations(skipped: list[Skip], runs: list[PlannedRun]) -> list[dg.AssetObservation]:
    """What the guards decided, per entity, on the profile asset: a requested run or a skip
    with its reason."""
    observations = [skip_observation(skip) for skip in skipped]
    for run in runs:
        for batch in run.batches:
            for entity in batch.entities:
                observations.append(
                    dg.AssetObservation(
                        asset_key=ENTITY_PROFILE,
                        partition=partition_key(batch.tenant_id, entity.candidate.canonical_key),
                        metadata={
                            "event_type": RUN_REQUESTED,
                            "run_key": run.request.run_key,
                            "trigger": entity.candidate.trigger.value,
                            "reason": entity.candidate.reason.value,
                            "priority": entity.candidate.priority.value,
                            "forced": entity.candidate.force,
                            "table": batch.table_name,
                        },
                    )
                )
    return observations


def skip_observation(skip: Skip, slot: str = "") -> dg.AssetObservation:
    """A guard's decision not to profile, with what it answered (events or schedule slot)."""
    return dg.AssetObservation(
        asset_key=ENTITY_PROFILE,
        partition=partition_key(skip.candidate.tenant_id, skip.candidate.canonical_key),
        metadata={
            "event_type": PROFILE_SKIPPED,
            "reason": skip.reason.value,
            "detail": skip.detail,
            "trigger": skip.candidate.trigger.value,
            "event_ids": ",".join(map(str, skip.candidate.event_ids)),
            "slot": slot,
        },
    )


def guarded_plan(
    context: dg.SensorEvaluationContext,
    catalog: CatalogResource,
    candidates: list[ProfileCandidate],
    in_flight: list[tuple[uuid.UUID, str]],
    now: dt.datetime,
) -> ProfilePlan:
    """The candidates through the cost guards, the runs in flight for `in_flight` entities
    counting as recent profiles."""
    return profile_requests.plan(
        catalog.uow(),
        candidates,
        now=now,
        min_rerun=catalog.settings.min_rerun,
        recently_requested=recently_requested(context.instance, in_flight, now, catalog.settings),
    )


def recently_requested(
    instance: dg.DagsterInstance,
    entities: list[tuple[uuid.UUID, str]],
    now: dt.datetime,
    settings: Settings,
) -> dict[tuple[uuid.UUID, str], dt.datetime]:
    """When a profile run still in flight was launched for each entity within the rerun
    interval: its result is not in `mdm_profile` yet. Read from Dagster's runs (not from our
    own observations, which a crashed tick may have written without launching anything). A
    finished run is left to `mdm_profile`: a successful one saved every profile it was asked
    for, and failed and cancelled runs do not count, so they can be retried. Only runs in
    flight are read, so the lookup does not grow with the runs of past passes."""
    if not entities:
        return {}
    wanted = set(entities)
    since = now - settings.min_rerun
    found: dict[tuple[uuid.UUID, str], dt.datetime] = {}
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=JOB_NAME, created_after=since, statuses=IN_FLIGHT),
        limit=10_000,
    )
    for record in records:
        config = record.dagster_run.run_config.get("ops", {}).get("profile_tables", {})
        config = config.get("config", {})
        tenant_id = uuid.UUID(config["tenant_id"])
        created = record.create_timestamp.astimezone(dt.UTC)
        for table in config.get("tables", []):
            for key in table["canonical_keys"]:
                entity = (tenant_id, key)
                if entity in wanted:
                    found[entity] = max(created, found.get(entity, created))
    return found
