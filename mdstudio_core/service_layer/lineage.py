"""Lineage services: the catalog as a graph (what the Dagster code location builds its assets
from), KPI trust computed from the store and recorded with its impact hysteresis, the lineage
and impact queries of the CLI and the HTTP API, and tenant names. The rules are the domain's
(`mdstudio_core.domain.lineage`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain import lineage as rules
from mdstudio_core.domain.approval_requests import field_binding_change
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.errors import Conflict, Forbidden, NotFound
from mdstudio_core.domain.lineage import (
    CatalogSnapshot,
    FieldNode,
    InputState,
    KpiNode,
    KpiTrust,
    TableNode,
)
from mdstudio_core.domain.model import (
    TENANT_ADMIN_ROLE,
    EntityStatus,
    EntityType,
    Identity,
    LiveEntity,
    Tier,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# -- the graph ---------------------------------------------------------------------------------


def catalog_version(uow: UnitOfWork) -> tuple[Any, ...]:
    """A cheap token that changes whenever `load_snapshot` may answer differently."""
    with uow:
        return uow.lineage.version()


def load_snapshot(uow: UnitOfWork) -> CatalogSnapshot:
    """Every tenant's bound tables (with their fields) and active KPIs, in one transaction."""
    with uow:
        fields = uow.lineage.bound_fields()
        kpis = uow.lineage.active_kpis()
        names = uow.lineage.tenant_names()
        first_days = uow.profile_days.first_days(
            [
                (e.tenant_id, e.canonical_key)
                for e in fields
                if e.binding is not None
                and e.binding.incremental is not None
                and e.binding.incremental.partition == "day"
            ]
        )
    tenants = {e.tenant_id for e in fields} | {k.tenant_id for k in kpis}
    labels = {t: rules.tenant_label(t, names.get(t)) for t in sorted(tenants)}
    grouped: dict[tuple[uuid.UUID, str, str | None, str], list[FieldNode]] = {}
    for entity in fields:
        assert entity.binding is not None
        binding = entity.binding
        grouped.setdefault(
            (entity.tenant_id, binding.source, binding.schema_, binding.table), []
        ).append(
            FieldNode(
                canonical_key=entity.canonical_key,
                tier=entity.tier,
                owner=entity.state.get("owner"),
                data_type=str(entity.state.get("data_type") or ""),
                columns=tuple(
                    c.model_dump(mode="json", exclude_none=True) for c in binding.columns
                ),
                incremental=binding.incremental.model_dump(mode="json", exclude_none=True)
                if binding.incremental
                else None,
            )
        )
    today = clock.now().date()
    tables = tuple(
        TableNode(
            tenant_id,
            labels[tenant_id],
            source,
            schema,
            table,
            tuple(nodes),
            first_day=min(
                (
                    first_days[(tenant_id, n.canonical_key)]
                    for n in nodes
                    if (tenant_id, n.canonical_key) in first_days
                ),
                default=today,
            ).isoformat()
            if any((n.incremental or {}).get("partition") == "day" for n in nodes)
            else None,
        )
        for (tenant_id, source, schema, table), nodes in sorted(
            grouped.items(), key=lambda item: (str(item[0][0]), *map(str, item[0][1:]))
        )
    )
    kpi_nodes = tuple(
        KpiNode(
            tenant_id=kpi.tenant_id,
            tenant=labels[kpi.tenant_id],
            canonical_key=kpi.canonical_key,
            name=str(kpi.state.get("name") or kpi.canonical_key),
            tier=kpi.tier,
            owner=kpi.state.get("owner"),
            inputs=tuple(sorted(set(kpi.depends_on))),
        )
        for kpi in kpis
    )
    return CatalogSnapshot(tenants=labels, tables=tables, kpis=kpi_nodes)


# -- trust -------------------------------------------------------------------------------------


def _input_states(uow: UnitOfWork, tenant_id: uuid.UUID, keys: Iterable[str]) -> list[InputState]:
    """What the store knows of each input now (in the caller's open unit of work)."""
    keys = sorted(set(keys))
    live = uow.entities.get_many(EntityType.GLOBAL_METADATA, [(tenant_id, k) for k in keys])
    latest = uow.lineage.latest_profiles(tenant_id, keys)
    states = []
    for key in keys:
        field = live.get((tenant_id, key))
        score, at = latest.get(key, (None, None))
        states.append(
            InputState(
                key=key,
                tier=field.tier if field else None,
                bound=bool(field and field.profiled),
                quality_score=score,
                profiled_at=at,
                profiled=key in latest,
            )
        )
    return states


def _trusts(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, kpis: Sequence[LiveEntity]
) -> list[KpiTrust]:
    now = clock.now()
    states = {
        s.key: s for s in _input_states(uow, tenant_id, (k for kpi in kpis for k in kpi.depends_on))
    }
    return [
        rules.kpi_trust(
            kpi.canonical_key,
            kpi.tier,
            [states[key] for key in set(kpi.depends_on)],
            settings.schedule_periods,
            now,
        )
        for kpi in kpis
    ]


def record_trust(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, kpis: Sequence[LiveEntity]
) -> list[KpiTrust]:
    """Compute the trust of `kpis`, store it with the impact hysteresis' new position, and
    append `kpi.quality.impacted` / `kpi.quality.recovered` on a transition, in the caller's
    open unit of work (the one that just saved the inputs' profiles, or changed a binding)."""
    if not kpis:
        return []
    for kpi in sorted(kpis, key=lambda k: k.canonical_key):
        uow.lineage.lock_kpi(tenant_id, kpi.canonical_key)
    trusts = _trusts(uow, settings, tenant_id, kpis)
    previous = uow.lineage.trust_states(tenant_id, [t.canonical_key for t in trusts])
    for trust in trusts:
        before = previous.get(trust.canonical_key)
        state, event = rules.assess_trust(
            tenant_id, trust, before, settings.quality_thresholds, settings.incident_policy
        )
        uow.lineage.save_trust(state, exists=before is not None)
        if event is not None:
            uow.events.append([event])
    return trusts


def dependents(uow: UnitOfWork, tenant_id: uuid.UUID, keys: Iterable[str]) -> list[LiveEntity]:
    """The tenant's active KPIs that depend on any of `keys` (in the caller's unit of work)."""
    wanted = set(keys)
    return [k for k in uow.lineage.active_kpis(tenant_id) if wanted & set(k.depends_on)]


def refresh_dependents(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, field_keys: Iterable[str]
) -> list[KpiTrust]:
    """Recompute and record the trust of every active KPI depending on `field_keys` (in the
    caller's open unit of work)."""
    return record_trust(uow, settings, tenant_id, dependents(uow, tenant_id, field_keys))


def current_trust(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    field_keys: Iterable[str] = (),
    kpi_keys: Iterable[str] = (),
) -> list[KpiTrust]:
    """The trust, now, of the active KPIs among `kpi_keys` and of those depending on
    `field_keys` (nothing recorded)."""
    wanted_kpis, wanted_fields = set(kpi_keys), set(field_keys)
    with uow:
        kpis = [
            k
            for k in uow.lineage.active_kpis(tenant_id)
            if k.canonical_key in wanted_kpis or wanted_fields & set(k.depends_on)
        ]
        return _trusts(uow, settings, tenant_id, kpis)


def refresh_kpis(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, kpi_keys: Sequence[str]
) -> list[KpiTrust]:
    """Recompute and record the trust of these KPIs (the ones still active), in one
    transaction: what materializing a KPI asset does."""
    with uow:
        live = uow.entities.get_many(EntityType.KPI, [(tenant_id, k) for k in kpi_keys])
        kpis = [k for k in live.values() if k.status is EntityStatus.ACTIVE]
        trusts = record_trust(uow, settings, tenant_id, kpis)
        uow.commit()
    return trusts


# -- lineage and impact queries ------------------------------------------------------------


def lineage(uow: UnitOfWork, identity: Identity, settings: Settings, key: str) -> dict[str, Any]:
    """A field: its table, its columns and the KPIs depending on it with their trust. A KPI:
    its inputs with their scores, its trust and weakest input."""
    with uow:
        field = uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, key)
        if field is not None:
            binding = field.binding
            return {
                "key": key,
                "entity_type": EntityType.GLOBAL_METADATA.value,
                "table": ".".join(p for p in (binding.source, binding.schema_, binding.table) if p)
                if binding
                else None,
                "columns": [c.name for c in binding.columns] if binding else [],
                "kpis": _kpi_rows(uow, settings, identity.tenant_id, [key]),
            }
        missing = f"{key} is neither a metadata field nor a KPI of this tenant"
        return _trust_of(uow, settings, identity.tenant_id, key, missing)


def kpi_trust(uow: UnitOfWork, identity: Identity, settings: Settings, key: str) -> dict[str, Any]:
    """A KPI's trust, computed now from its inputs' latest profiles."""
    with uow:
        return _trust_of(uow, settings, identity.tenant_id, key, f"KPI {key} not found")


def _trust_of(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, key: str, missing: str
) -> dict[str, Any]:
    """The KPI `key`'s trust, computed now in the caller's unit of work (`NotFound` saying
    `missing` when the tenant has no such KPI)."""
    kpi = uow.entities.get(EntityType.KPI, tenant_id, key)
    if kpi is None:
        raise NotFound(missing)
    [trust] = _trusts(uow, settings, tenant_id, [kpi])
    return trust.as_dict()


def impact(uow: UnitOfWork, identity: Identity, settings: Settings, key: str) -> dict[str, Any]:
    """The active KPIs a change or degradation of `key` endangers, with tier and trust."""
    with uow:
        known = any(
            uow.entities.get(t, identity.tenant_id, key) is not None
            for t in (EntityType.GLOBAL_METADATA, EntityType.KPI)
        )
        if not known:
            raise NotFound(f"{key} is neither a metadata field nor a KPI of this tenant")
        return {"key": key, "kpis": _kpi_rows(uow, settings, identity.tenant_id, [key])}


def approval_impact(
    uow: UnitOfWork, settings: Settings, approval: Approval
) -> list[dict[str, Any]]:
    """The KPIs a request that changes the binding of, deprecates or unbinds a field would
    affect (empty for any other request)."""
    if approval.binding_change() is None:
        return []
    with uow:
        return _kpi_rows(uow, settings, approval.tenant_id, [approval.entity_key])


def breaks_tier1_kpi(
    uow: UnitOfWork, tenant_id: uuid.UUID, old: LiveEntity | None, state: dict[str, Any]
) -> bool:
    """Whether a field's new `state` deprecates or unbinds it while an active tier1 KPI
    depends on it (in the caller's open unit of work)."""
    return breaks_tier1_kpis(uow, tenant_id, [(old, state)])[0]


def breaks_tier1_kpis(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    changes: Sequence[tuple[LiveEntity | None, dict[str, Any]]],
) -> list[bool]:
    """`breaks_tier1_kpi` of each (live entity, new state), reading the tenant's KPIs once,
    and only when a change deprecates or unbinds a bound field (a change set's items)."""
    unbinding = [
        old is not None
        and old.entity_type is EntityType.GLOBAL_METADATA
        and old.binding is not None
        and field_binding_change(old.state, state) in ("deprecated", "unbound")
        for old, state in changes
    ]
    if not any(unbinding):
        return unbinding
    inputs = {
        key
        for kpi in uow.lineage.active_kpis(tenant_id)
        if kpi.tier is Tier.TIER1
        for key in kpi.depends_on
    }
    return [
        flagged and old is not None and old.canonical_key in inputs
        for flagged, (old, _state) in zip(unbinding, changes, strict=True)
    ]


def combined_impact(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, approvals: Sequence[Approval]
) -> list[dict[str, Any]]:
    """The KPIs any of `approvals` endangers (a change set's items): those depending on a
    field whose binding one of them changes, deprecates or unbinds, each once."""
    keys = [a.entity_key for a in approvals if a.binding_change() is not None]
    if not keys:
        return []
    with uow:
        return _kpi_rows(uow, settings, tenant_id, keys)


def _kpi_rows(
    uow: UnitOfWork, settings: Settings, tenant_id: uuid.UUID, keys: Sequence[str]
) -> list[dict[str, Any]]:
    kpis = dependents(uow, tenant_id, keys)
    return [
        {"key": t.canonical_key, "tier": t.tier.value, "trust_score": t.trust_score}
        for t in _trusts(uow, settings, tenant_id, kpis)
    ]


def tenant_labels(uow: UnitOfWork, tenant_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """How Dagster names each tenant (`rules.tenant_label`)."""
    ids = sorted(set(tenant_ids))
    with uow:
        names = uow.lineage.tenant_names(ids)
    return {t: rules.tenant_label(t, names.get(t)) for t in ids}


# -- tenant names --------------------------------------------------------------------------


def name_tenant(
    uow: UnitOfWork, identity: Identity, tenant_id: uuid.UUID, name: str
) -> dict[str, Any]:
    """Name a tenant (a tenant admin of that tenant): its asset keys and group in Dagster."""
    name = rules.check_tenant_name(name)
    if TENANT_ADMIN_ROLE not in identity.roles:
        raise Forbidden(f"naming a tenant requires the {TENANT_ADMIN_ROLE} role")
    if identity.tenant_id != tenant_id:
        raise NotFound(f"tenant {tenant_id} not found")
    with uow:
        if uow.lineage.name_taken(name, tenant_id):
            raise Conflict(f"the name {name} is taken by another tenant")
        try:
            uow.lineage.set_tenant_name(tenant_id, name, identity.user, clock.now())
            uow.commit()
        except IntegrityError as exc:  # named by another tenant since the check
            raise Conflict(f"the name {name} is taken by another tenant") from exc
    return {"tenant_id": str(tenant_id), "name": name}
