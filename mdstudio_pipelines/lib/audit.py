"""An entity's audit trail, read back from Dagster's event log: the catalog events the sensor
observed, the profiling decisions (runs requested, skips with their reason), materializations
with their scores, and quality-check results, oldest first."""

import datetime as dt
import json
import uuid
from typing import Any

import dagster as dg

from mdstudio_core.domain.events import EventType
from mdstudio_pipelines.lib.asset_keys import (
    CATALOG_ENTITY,
    ENTITY_PROFILE,
    PROFILE_SKIPPED,
    QUALITY_CHECK,
)
from mdstudio_pipelines.lib.dagster_internals import check_evaluations
from mdstudio_pipelines.lib.partitions import partition_key

PAGE = 1000
KINDS = {PROFILE_SKIPPED: "skip", EventType.PROFILE_FAILED: "failure"}
# Outbox events the run itself records on `entity_profile` (a materialization, a failure):
# their observations on `catalog_entity` would show each step twice.
SHOWN_BY_THE_RUN = {EventType.PROFILE_COMPLETED, EventType.PROFILE_FAILED}


def timeline(
    instance: dg.DagsterInstance, tenant_id: uuid.UUID, canonical_key: str
) -> list[dict[str, Any]]:
    """Every recorded step of one entity, oldest first, as JSON-ready dicts."""
    key = partition_key(tenant_id, canonical_key)
    entries: list[tuple[float, int, dict[str, Any]]] = []
    seen: set[str] = set()
    for asset_key in (CATALOG_ENTITY, ENTITY_PROFILE):
        for record in _all(instance.fetch_observations, asset_key, key):
            metadata = _plain(record.asset_observation.metadata)
            if asset_key == CATALOG_ENTITY and metadata.get("event_type") in SHOWN_BY_THE_RUN:
                continue
            fingerprint = json.dumps(
                [asset_key.to_user_string(), record.run_id, metadata], sort_keys=True, default=str
            )
            if fingerprint in seen:  # written again by a retried sensor tick
                continue
            seen.add(fingerprint)
            kind = KINDS.get(metadata.get("event_type"), "observation")
            entries.append(
                (
                    record.timestamp,
                    record.storage_id,
                    _entry(record.timestamp, kind, record.run_id, metadata),
                )
            )
    for record in _all(instance.fetch_materializations, ENTITY_PROFILE, key):
        metadata = _plain(record.asset_materialization.metadata)
        metadata["event_type"] = EventType.PROFILE_COMPLETED
        metadata.pop("sql", None)
        metadata.pop("sql_params", None)
        metadata.pop("columns", None)
        entries.append(
            (
                record.timestamp,
                record.storage_id,
                _entry(record.timestamp, "materialization", record.run_id, metadata),
            )
        )
    checks = check_evaluations(instance, dg.AssetCheckKey(ENTITY_PROFILE, QUALITY_CHECK), key, PAGE)
    for check in checks:
        if check.event is None or check.event.dagster_event is None:
            continue  # planned, not evaluated
        evaluation = check.event.dagster_event.asset_check_evaluation_data
        details = {
            "event_type": "quality.check",
            "check": QUALITY_CHECK,
            "passed": evaluation.passed,
            "severity": evaluation.severity.value,
            "description": evaluation.description,
            **_plain(evaluation.metadata),
        }
        entries.append(
            (
                check.event.timestamp,
                check.id,
                _entry(check.event.timestamp, "check", check.run_id, details),
            )
        )
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry for _, _, entry in entries]


def describe(entry: dict[str, Any]) -> str:
    """One readable line per step."""
    details = dict(entry["details"])
    event_type = details.pop("event_type", "")
    interesting = (
        "actor",
        "approval_id",
        "reason",
        "detail",
        "error",
        "quality_score",
        "trigger",
        "run_key",
        "description",
        "severity",
        "passed",
    )
    parts = [
        f"{name}={details[name]}" for name in interesting if details.get(name) not in (None, "")
    ]
    return f"{entry['at']}  {entry['kind'].upper():<15} {event_type:<28} {' '.join(parts)}"


def _all(fetch: Any, asset_key: dg.AssetKey, key: str) -> list[Any]:
    records, cursor = [], None
    while True:
        result = fetch(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]),
            limit=PAGE,
            cursor=cursor,
            ascending=True,
        )
        records.extend(result.records)
        if not result.has_more:
            return records
        cursor = result.cursor


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in (metadata or {}).items()}


def _entry(timestamp: float, kind: str, run_id: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(),
        "kind": kind,
        "run_id": run_id or None,
        "details": details,
    }
