"""A profiling run's results as Dagster events: a materialization of the entity's partition of
`entity_profile` and its quality check. Everything it reports was decided in mdstudio_core
(`service_layer.profiling.run_profiles`)."""

import dagster as dg

from mdstudio_core.domain.quality import ProfileResult
from mdstudio_core.service_layer.profiling import SavedProfile


def profile_metadata(profile: SavedProfile) -> dict:
    result = profile.result
    return {
        "quality_score": _float(result.quality_score),
        "completeness": _float(result.completeness),
        "uniqueness": _float(result.uniqueness),
        "validity": _float(result.validity),
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
        "rows_read": _int(result.rows_read),
        "full_reason": result.full_reason or "",
        # Plain text and JSON, never Markdown: nothing in a profile can format the UI.
        "sql": dg.MetadataValue.text(result.sql),
        "sql_params": dg.MetadataValue.json(result.to_json()["sql_params"]),
    }


def _int(value: int | None) -> dg.MetadataValue:
    return dg.MetadataValue.int(value) if value is not None else dg.MetadataValue.null()


def _float(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()


def _column_table(result: ProfileResult) -> dg.MetadataValue:
    fields = [
        "name",
        "n",
        "non_null",
        "distinct",
        "valid",
        "completeness",
        "uniqueness",
        "validity",
        "score",
    ]
    types = {"name": "string", "n": "int", "non_null": "int", "distinct": "int", "valid": "int"}
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({name: getattr(column, name) for name in fields})
            for column in result.columns
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(name, types.get(name, "float")) for name in fields]
        ),
    )
