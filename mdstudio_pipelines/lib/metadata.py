"""What a profiling run and a KPI report carry as Dagster metadata: an entity's profile, a table's
fields, a daily table's day, a KPI's inputs. Everything reported was decided in mdstudio_core
(`service_layer.profiling.run_profiles`, `service_layer.lineage`); this only formats it, plain
text and JSON, never Markdown, so nothing in a profile can format the UI."""

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from mdstudio_core.domain.incremental import ProfileDay
from mdstudio_core.domain.lineage import KpiTrust
from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.quality import ProfileResult
from mdstudio_core.service_layer.profiling import SavedProfile

GOVERNED = (Tier.TIER1, Tier.TIER2)
COLUMN_FIELDS = {
    "name": "string",
    "n": "int",
    "non_null": "int",
    "distinct": "int",
    "valid": "int",
    "completeness": "float",
    "uniqueness": "float",
    "validity": "float",
    "score": "float",
}


def score(value: float | None) -> dg.MetadataValue:
    """A score, or null where there is none (a missing score is not zero)."""
    return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()


def count(value: int | None) -> dg.MetadataValue:
    return dg.MetadataValue.int(value) if value is not None else dg.MetadataValue.null()


def table(records: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> dg.MetadataValue:
    """Rows under a typed schema (`columns`: name to type), shown by the UI as a table."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(dict(record)) for record in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in columns.items()]),
    )


def worst_governed(scored: Iterable[tuple[str | None, float | None]]) -> float | None:
    """The lowest score among tier1 and tier2 fields (`(tier, score)` pairs): what a table is
    trusted with. Tier3 fields inform and do not count."""
    governed = [s for tier, s in scored if tier in GOVERNED and s is not None]
    return min(governed) if governed else None


def profile_metadata(profile: SavedProfile) -> dict:
    """An entity's profile, on its partition of `entity_profile`."""
    result = profile.result
    return {
        "quality_score": score(result.quality_score),
        "completeness": score(result.completeness),
        "uniqueness": score(result.uniqueness),
        "validity": score(result.validity),
        "dagster/row_count": result.row_count,
        "columns": _column_table(result),
        "tier": profile.tier.value,
        "table": f"{result.source}.{result.table}",
        "trigger": result.trigger.value,
        "approval_id": str(result.approval_id or ""),
        "profile_id": str(profile.profile_id),
        "score_note": result.score_note or "",
        "duration_ms": result.duration_ms,
        "mode": result.mode,
        "watermark_before": result.watermark_before or "",
        "watermark_after": result.watermark_after or "",
        "rows_read": count(result.rows_read),
        "full_reason": result.full_reason or "",
        "sql": dg.MetadataValue.text(result.sql),
        "sql_params": dg.MetadataValue.json(result.to_json()["sql_params"]),
    }


def _column_table(result: ProfileResult) -> dg.MetadataValue:
    return table(
        ({name: getattr(column, name) for name in COLUMN_FIELDS} for column in result.columns),
        COLUMN_FIELDS,
    )


def table_metadata(tenant_id: uuid.UUID, label: str, profiles: list[SavedProfile]) -> dict:
    """A table asset's materialization: its worst tier1/tier2 field score (`quality_score`),
    every field's score, and the profile ids."""
    return {
        "quality_score": score(worst_governed((p.tier, p.result.quality_score) for p in profiles)),
        "fields": table(
            (
                {
                    "key": p.result.canonical_key,
                    "tier": p.tier.value,
                    "quality_score": p.result.quality_score,
                    "passed": p.verdict.passed,
                    "severity": p.verdict.severity.value,
                    "profile_id": str(p.profile_id),
                }
                for p in profiles
            ),
            {
                "key": "string",
                "tier": "string",
                "quality_score": "float",
                "passed": "bool",
                "severity": "string",
                "profile_id": "string",
            },
        ),
        "profile_ids": dg.MetadataValue.json([str(p.profile_id) for p in profiles]),
        "dagster/row_count": profiles[0].result.row_count,
        "mdstudio/table": label,
        "mdstudio/tenant": str(tenant_id),
    }


def day_metadata(tenant_id: uuid.UUID, label: str, fields: dict[str, ProfileDay]) -> dict:
    """One day of a daily table, as its partition's materialization: each field's score of
    that day's rows, their counts, and the worst tier1/tier2 score."""
    return {
        "dagster/row_count": next(iter(fields.values())).row_count if fields else 0,
        "quality_score": score(worst_governed((d.tier, d.quality_score) for d in fields.values())),
        "fields": table(
            (
                {"key": k, "tier": d.tier or "", "quality_score": d.quality_score}
                for k, d in sorted(fields.items())
            ),
            {"key": "string", "tier": "string", "quality_score": "float"},
        ),
        "columns": dg.MetadataValue.json({k: dict(d.columns) for k, d in sorted(fields.items())}),
        "mdstudio/table": label,
        "mdstudio/tenant": str(tenant_id),
    }


def pass_metadata(result: ProfileResult, profiles: list[SavedProfile]) -> dict:
    """How a pass read a daily table, carried by its newest day."""
    return {
        "mode": result.mode,
        "watermark_before": result.watermark_before or "",
        "watermark_after": result.watermark_after or "",
        "rows_read": result.rows_read or 0,
        "full_reason": result.full_reason or "",
        "table_profile_ids": dg.MetadataValue.json([str(p.profile_id) for p in profiles]),
    }


def kpi_metadata(trust: KpiTrust, tenant_id: uuid.UUID) -> dict:
    """A KPI's trust, on the KPI asset's materialization."""
    return {
        "trust_score": score(trust.trust_score),
        "weakest_input": trust.weakest_input or "",
        "inputs": table(
            (
                {
                    "key": i.key,
                    "score": i.quality_score,
                    "profiled_at": i.profiled_at.isoformat() if i.profiled_at else None,
                    "stale": i.stale,
                }
                for i in trust.inputs
            ),
            {"key": "string", "score": "float", "profiled_at": "string", "stale": "bool"},
        ),
        "unscored_inputs": ", ".join(f"{i.key} ({i.unscored_reason})" for i in trust.unscored),
        "tier": trust.tier.value,
        "mdstudio/tenant": str(tenant_id),
    }
