"""`GET /metrics` in the Prometheus text format.

Two kinds of values. What describes the catalog (scores, incidents, approvals, the outbox and
its consumers, deliveries) is read from the store at scrape time, so every replica reports the
same truth and nothing is lost with a process. What describes this server (requests, their
durations) is counted in process, in prometheus-client's multiprocess mode under
`mdstudio serve` (each worker writes its own file; a scrape of any worker sums them all).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mdstudio_core.config import Settings
from mdstudio_core.domain.consumers import BUILTIN_CONSUMERS
from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

PROFILE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
DECISION_BUCKETS = (60.0, 600.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0)
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Not registered anywhere: each scrape builds its registry (see `exposition`).
HTTP_REQUESTS = Counter(
    "mdstudio_http_requests",
    "HTTP requests served, by route template (never the raw path)",
    ("method", "route", "status"),
    registry=None,
)
HTTP_DURATION = Histogram(
    "mdstudio_http_request_duration_seconds",
    "HTTP request duration, by route template",
    ("method", "route"),
    registry=None,
)


# The methods counted by name; any other counts as `other`, so no client can add series.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The `method` label of a request: the method when it is a standard one, else `other`."""
    return method if method in STANDARD_METHODS else "other"


class RequestMetrics:
    """Counts each request under its route template (`/approvals/{approval_id}`) and its method
    (`method_label`): a label per raw path or invented method would grow without bound.
    Requests no route matched count as `unmatched`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = method_label(scope["method"])
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


class CatalogCollector(Collector):
    """The catalog's metrics, read from the store when Prometheus scrapes."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    def collect(self) -> Iterator[Any]:
        now = dt.datetime.now(dt.UTC)
        with UnitOfWork(self._engine) as uow:
            read = uow.metrics
            scores = read.latest_scores()
            incidents = read.open_incidents()
            outcomes = read.profile_outcomes()
            durations = read.profile_durations(PROFILE_BUCKETS)
            pending = read.pending_approvals()
            overdue = read.overdue_approvals(
                self._settings.approval_deadlines.requested_before(now)
            )
            decisions = read.decisions()
            decision_times = _bucketed(
                (
                    (tier, (decided - requested).total_seconds())
                    for tier, requested, decided in read.decision_times()
                ),
                DECISION_BUCKETS,
            )
            last_event_id = read.last_event_id()
            cursors = {cursor.consumer: cursor.position for cursor in uow.cursors.all()}
            dead_letters = uow.dead_letters.counts()
            deliveries = read.deliveries()

        yield _family(
            GaugeMetricFamily,
            "mdstudio_quality_score",
            "Latest quality score (0-100) of each tier1/tier2 field",
            ("tenant", "entity", "tier"),
            scores,
        )

        threshold = GaugeMetricFamily(
            "mdstudio_quality_threshold", "The quality check's minimum score", labels=("tier",)
        )
        thresholds = self._settings.quality_thresholds
        for tier in (Tier.TIER1, Tier.TIER2):
            minimum = thresholds.minimum(tier)
            if minimum is not None:
                threshold.add_metric((tier.value,), minimum)
        yield threshold

        yield _family(
            GaugeMetricFamily,
            "mdstudio_quality_incidents_open",
            "Quality incidents not resolved (open or acknowledged)",
            ("tenant", "tier"),
            incidents,
        )
        yield _family(
            CounterMetricFamily,
            "mdstudio_profiles",
            "Profiles recorded, by outcome (completed, failed)",
            ("tenant", "tier", "outcome"),
            outcomes,
        )
        yield _histogram(
            "mdstudio_profile_duration_seconds",
            "Time to profile one field's table scan, by tier",
            PROFILE_BUCKETS,
            durations,
        )

        pending_gauge = GaugeMetricFamily(
            "mdstudio_approvals_pending",
            "Approval requests awaiting a decision",
            labels=("tenant", "tier", "lane"),
        )
        oldest = GaugeMetricFamily(
            "mdstudio_approval_oldest_pending_seconds",
            "Age of the oldest pending approval request",
            labels=("tenant",),
        )
        oldest_by_tenant: dict[str, dt.datetime] = {}
        for tenant, tier, lane, count, requested_at in pending:
            pending_gauge.add_metric((str(tenant), tier, lane), count)
            first = oldest_by_tenant.get(str(tenant))
            oldest_by_tenant[str(tenant)] = min(first, requested_at) if first else requested_at
        for tenant, requested_at in oldest_by_tenant.items():
            oldest.add_metric((tenant,), max((now - requested_at).total_seconds(), 0.0))
        yield pending_gauge
        yield oldest

        yield _family(
            GaugeMetricFamily,
            "mdstudio_approvals_overdue",
            "Pending approval requests past their deadline (MDSTUDIO_*APPROVAL_SLA_HOURS)",
            ("tenant", "tier"),
            overdue,
        )
        yield _family(
            CounterMetricFamily,
            "mdstudio_approvals_decided",
            "Approval requests decided (approved, rejected, cancelled)",
            ("tenant", "decision"),
            decisions,
        )
        yield _histogram(
            "mdstudio_approval_decision_seconds",
            "Time from request to decision, by tier",
            DECISION_BUCKETS,
            decision_times,
        )

        yield GaugeMetricFamily(
            "mdstudio_outbox_last_event_id", "Id of the newest outbox event", value=last_event_id
        )
        lag = GaugeMetricFamily(
            "mdstudio_outbox_consumer_lag_events",
            "Outbox events a consumer has not read yet",
            labels=("consumer",),
        )
        dead = GaugeMetricFamily(
            "mdstudio_outbox_dead_letters",
            "Outbox events a consumer set aside after failing on them (not retried or discarded)",
            labels=("consumer",),
        )
        for consumer in sorted({*BUILTIN_CONSUMERS, *cursors}):
            lag.add_metric((consumer,), max(last_event_id - cursors.get(consumer, 0), 0))
        for consumer in sorted({*BUILTIN_CONSUMERS, *cursors, *dead_letters}):
            dead.add_metric((consumer,), dead_letters.get(consumer, 0))
        yield lag
        yield dead

        yield _family(
            CounterMetricFamily,
            "mdstudio_notification_deliveries",
            "Webhook deliveries, by status (pending, delivered, failed, dead)",
            ("status",),
            deliveries,
        )


def _family(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    labels: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> GaugeMetricFamily | CounterMetricFamily:
    """A family with a sample per row, the row being its label values and then its value: a
    tenant's id as text, a label the row lacks (a profile without tier) as ``""``."""
    family = kind(name, documentation, labels=labels)
    for *values, value in rows:
        family.add_metric(tuple("" if v is None else str(v) for v in values), value)
    return family


def _histogram(
    name: str,
    documentation: str,
    bounds: tuple[float, ...],
    rows: Iterable[tuple[str, list[int], int, float]],
) -> HistogramMetricFamily:
    """A histogram by tier, from each tier's cumulative counts under `bounds`, its count and
    its sum."""
    histogram = HistogramMetricFamily(name, documentation, labels=("tier",))
    for tier, cumulative, count, total in rows:
        buckets = [(_le(b), n) for b, n in zip(bounds, cumulative, strict=True)]
        histogram.add_metric((tier,), [*buckets, ("+Inf", count)], total)
    return histogram


def _bucketed(
    samples: Iterator[tuple[str, float]], bounds: tuple[float, ...]
) -> list[tuple[str, list[int], int, float]]:
    """Cumulative histogram counts, count and sum per label value."""
    by_tier: dict[str, tuple[list[int], int, float]] = {}
    for tier, seconds in samples:
        counts, count, total = by_tier.get(tier, ([0] * len(bounds), 0, 0.0))
        for i, bound in enumerate(bounds):
            if seconds <= bound:
                counts[i] += 1
        by_tier[tier] = (counts, count + 1, total + seconds)
    return [(tier, *histogram) for tier, histogram in by_tier.items()]


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def exposition(engine: Engine, settings: Settings) -> tuple[bytes, str]:
    """The scrape's body and content type (blocking: the store is read)."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_VARIABLE):
        MultiProcessCollector(registry)
    else:
        registry.register(HTTP_REQUESTS)
        registry.register(HTTP_DURATION)
    registry.register(CatalogCollector(engine, settings))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def enabled(settings: Settings) -> bool:
    """`/metrics` exists only with `MDSTUDIO_METRICS_TOKEN`: it shows every tenant's keys,
    scores and backlog, so it is never open to whoever reaches the server."""
    return bool(settings.metrics_token)


def authorised(settings: Settings, authorization: str | None) -> bool:
    """The scraper's bearer token is `MDSTUDIO_METRICS_TOKEN` (compared in constant time); never
    without one set."""
    if not settings.metrics_token:
        return False
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.metrics_token.encode()
    )
