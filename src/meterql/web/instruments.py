"""Prometheus metrics: what ``GET /metrics`` shows.

Each app has its own registry (two apps in one process, as in tests, never
count into each other). Every label takes a bounded set of values, and
none names a tenant: routes are templates (``<unmatched>`` for any path no
route knows), methods outside the usual few are ``OTHER``, GraphQL
operation names only those of the server's own documents (``<anonymous>``,
``<other>``), ingest outcomes are error codes.

Several worker processes (``meterql serve --workers N``) use
prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a
directory where every worker writes its values, and a scrape, whichever
worker answers it, adds them up. The pool and write-queue gauges are then
set by each worker after each of its requests and summed over the live
workers (``livesum``): the gateway's connections, not one worker's. With one
process they are read from the engine at scrape time instead.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable

from graphql import DocumentNode, OperationDefinitionNode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterql.db.engine import Database
from meterql.web.request_facts import BATCH, STORED, RequestFacts

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
ANONYMOUS = "<anonymous>"
OTHER = "<other>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    """The directory workers share their values through, if several serve together.

    An environment variable rather than a setting: prometheus-client reads
    it when first imported, to choose where values live.
    """
    return os.environ.get(MULTIPROC_ENV) or None


class OperationNames:
    """Operation names as labels: those of the server's own documents; any other is ``<other>``.

    The server's documents are the fixed ``/v1`` ones and its page queries
    (``meterql.queries``): what its own clients send. A name any tenant
    chose is never a label: it could say anything, and a hundred of them
    would crowd out the names that matter.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known = frozenset(known)

    def label(self, name: str | None) -> str:
        if name is None:
            return ANONYMOUS
        if name in self._known or name == BATCH:
            return name
        return OTHER


def operation_names(documents: Iterable[DocumentNode]) -> set[str]:
    """The names of every named operation in ``documents``."""
    return {
        definition.name.value
        for document in documents
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode) and definition.name is not None
    }


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


# (name, help, attribute): of the pool's status, then of the database's write queue.
_POOL_GAUGES = (
    ("meterql_db_pool_size", "Connections the pool keeps open.", "size"),
    ("meterql_db_pool_checked_out", "Pooled connections lent to requests now.", "checked_out"),
    ("meterql_db_pool_idle", "Pooled connections open and waiting.", "idle"),
    ("meterql_db_pool_overflow", "Connections open beyond the pool size.", "overflow"),
)
_QUEUE_GAUGES = (
    ("meterql_db_write_slots", "Write transactions allowed at once.", "write_slots"),
    ("meterql_db_writes_active", "Write transactions running now.", "writes_active"),
    ("meterql_db_writes_waiting", "Write transactions queued for a slot.", "writes_waiting"),
    ("meterql_db_batches_waiting",
     "Live batches waiting to be written with the next group of their account.",
     "batches_waiting"),
)


def _database_values(db: Database) -> Iterable[tuple[str, str, int]]:
    status = db.pool_status()
    # A pool that keeps no count (in-memory SQLite) has no pool gauges.
    if status is not None:
        for name, text, attribute in _POOL_GAUGES:
            yield name, text, int(getattr(status, attribute))
    for name, text, attribute in _QUEUE_GAUGES:
        yield name, text, int(getattr(db, attribute))


class DatabaseCollector(Collector):
    """The engine's pool and the write queue, read live at scrape time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        for name, text, value in _database_values(self._db):
            yield GaugeMetricFamily(name, text, value=value)


class Instruments:
    def __init__(
        self, db: Database, multiproc_dir: str | None = None, operations: Iterable[str] = ()
    ) -> None:
        self.db = db
        self.multiproc_dir = multiproc_dir
        self.registry = registry = CollectorRegistry()
        self.operation_names = OperationNames(operations)
        self.requests = Counter(
            "meterql_http_requests", "HTTP requests answered.",
            ["route", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "meterql_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route", "method", "status_class"], registry=registry,
        )
        self.operations = Counter(
            "meterql_graphql_operations", "GraphQL operations run over /graphql.",
            ["operation", "type", "outcome"], registry=registry,
        )
        self.operation_latency = Histogram(
            "meterql_graphql_request_duration_seconds",
            "Time to answer a /graphql request, by its operation.",
            ["operation", "type"], registry=registry,
        )
        self.ingest_events = Counter(
            "meterql_ingest_events", "Events in stored batches: accepted, or duplicate.",
            ["result"], registry=registry,
        )
        self.ingest_batches = Counter(
            "meterql_ingest_batches",
            "Ingest batches: stored, or the code of the error that refused them.",
            ["outcome"], registry=registry,
        )
        answers = Counter(
            "meterql_answers",
            "Answers a worker may keep (web/answers.py): sent from those it kept, or made.",
            ["source"], registry=registry,
        )
        self._answer_sources = {True: answers.labels("kept"), False: answers.labels("made")}
        # Each answered request's two series, by (route, method, status): a
        # bounded set (route templates, known methods, statuses), and the
        # client library's label lookup costs more than the counting.
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Present from the start, so rates are defined before the first event.
        for result in ("accepted", "duplicate"):
            self.ingest_events.labels(result)
        self.ingest_batches.labels(STORED)
        self._gauges: dict[str, Gauge] = {}
        if multiproc_dir is None:
            registry.register(DatabaseCollector(db))
        else:
            self._gauges = {
                name: Gauge(name, text, registry=registry, multiprocess_mode="livesum")
                for name, text, _attribute in (*_POOL_GAUGES, *_QUEUE_GAUGES)
            }

    def observe(
        self, route: str, method: str, status: int, duration_s: float, facts: RequestFacts
    ) -> None:
        """Count one answered request and what it did."""
        method = method_label(method)
        series = self._answered.get((route, method, status))
        if series is None:
            series = self._answered[route, method, status] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method, f"{status // 100}xx"),
            )
        series[0].inc()
        series[1].observe(duration_s)
        if facts.operation_type is not None:
            operation = self.operation_names.label(facts.operation_name)
            outcome = "error" if facts.graphql_errors or status >= 400 else "ok"
            self.operations.labels(operation, facts.operation_type, outcome).inc()
            self.operation_latency.labels(operation, facts.operation_type).observe(duration_s)
        if facts.answer_kept is not None:
            self._answer_sources[facts.answer_kept].inc()
        for outcome in facts.batches:
            self.ingest_batches.labels(outcome).inc()
        if facts.events_accepted:
            self.ingest_events.labels("accepted").inc(facts.events_accepted)
        if facts.events_duplicate:
            self.ingest_events.labels("duplicate").inc(facts.events_duplicate)
        if self._gauges:
            self.sample_database()

    def sample_database(self) -> None:
        """Multiprocess mode: write this worker's pool and queue state for the others to sum."""
        for name, _text, value in _database_values(self.db):
            self._gauges[name].set(value)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type (OpenMetrics if asked for)."""
        encode, content_type = choose_encoder(accept)
        if self.multiproc_dir is None:
            return encode(self.registry), content_type
        # Every worker's values, from the shared directory, read afresh.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        return encode(registry), content_type

    def close(self) -> None:
        """Drop this worker's live gauges from the sums (multiprocess mode)."""
        if self.multiproc_dir is not None:
            mark_process_dead(os.getpid(), self.multiproc_dir)  # type: ignore[no-untyped-call]


def metrics_endpoint(
    instruments: Instruments, token: str | None
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``; with ``token``, only for ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode() if token else None

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            sent = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(sent, expected):
                return JSONResponse(
                    {"detail": "Not authenticated"}, status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        body, content_type = instruments.exposition(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    return endpoint
