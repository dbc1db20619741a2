"""Operations: /metrics (in-process and across `serve --workers 2`), /healthz, /readyz,
and the one JSON access line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette

from meterql import cli
from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.web.instruments import MULTIPROC_ENV
from meterql.web.logs import JsonFormatter
from tests.conftest import NOW, StatementCounter
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, auth, seed
from tests.pgcluster import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def seeded(db: Database) -> None:
    await seed(db)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@asynccontextmanager
async def client_with(settings: Settings, db: Database, **overrides: Any
                      ) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=overrides), database=db, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
        yield c


# --- probes ----------------------------------------------------------------------------


async def test_healthz_never_touches_the_database_and_readyz_asks_it(
    client: httpx.AsyncClient, sql: StatementCounter
) -> None:
    alive = await client.get("/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert sql.count == 0
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert sql.count == 1
    assert ready.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("url", [
    "sqlite+aiosqlite:////nonexistent-dir/meterql.db",
    f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/meterql",
], ids=["sqlite-missing-dir", "postgresql-closed-port"])
async def test_readyz_answers_503_without_details_when_the_database_is_away(url: str) -> None:
    app = create_app(Settings(database_url=url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as client:
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert time.monotonic() - started < 3
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        # Still alive: an orchestrator takes it out of rotation, never restarts it.
        assert (await client.get("/healthz")).status_code == 200
    await app.state.services.db.dispose()


# --- /metrics ----------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
async def test_requests_are_counted_by_route_template_never_by_tenant_data(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        chart = await client.get("/v1/billing/usage/chart?instance_id=inst-a", headers=auth())
        assert chart.status_code == 200
    assert (await client.get("/v1/billing")).status_code == 401
    assert (await client.get("/v1/instances/inst-a/secret")).status_code == 404
    assert (await client.request("BREW", "/v1/billing")).status_code == 405

    response = await client.get("/metrics")
    samples = parse(response.text)
    requests = "meterql_http_requests_total"
    assert value(samples, requests, route="/v1/billing/usage/chart", method="GET",
                 status="200") == 2
    assert value(samples, requests, route="/v1/billing", method="GET", status="401") == 1
    assert value(samples, requests, route="<unmatched>", method="GET", status="404") == 1
    assert value(samples, requests, route="/v1/billing", method="OTHER", status="405") == 1
    assert value(samples, "meterql_http_request_duration_seconds_count",
                 route="/v1/billing/usage/chart", method="GET", status_class="2xx") == 2
    # No account, instance or raw path anywhere in the exposition.
    for secret in ("acme", "inst-a", "/secret", ACME_TOKEN):
        assert secret not in response.text

    # Counts only go up, and the scrape itself is counted once it is answered.
    again = await scrape(client)
    assert value(again, requests, route="/metrics", method="GET", status="200") == 1


@pytest.mark.usefixtures("seeded")
async def test_graphql_operations_are_labelled_by_the_servers_own_names_and_type(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """Only the server's own documents' names are labels: a tenant's names are <other>."""
    queries = [
        ("query BillingPage { trialStatus { planName } }", None),
        ("{ trialStatus { planName } }", None),
        ("query MetricsSummary { metricsSummary { totalRequests } }", None),
        ("query Mine { trialStatus { planName } }", None),
        (f"query {'L' * 65} {{ trialStatus {{ planName }} }}", None),
        ("query A { trialStatus { planName } } query B { billing { plan { planName } } }", "B"),
        ("{ trialStatus { planName ", None),  # does not parse
        ("query BillingPage { nosuchField }", None),  # does not validate
    ]
    for query, name in queries:
        response = await client.post("/graphql", json={"query": query, "operationName": name},
                                     headers=auth())
        assert response.status_code == 200
    mutation = {"query": "mutation RecordUsage($e: [UsageEventInput!]!) { recordUsage(events: $e) "
                         "{ accepted } }", "variables": {"e": []}}
    assert (await client.post("/graphql", json=mutation,
                              headers=auth(ACME_INGEST_TOKEN))).status_code == 200

    samples = await scrape(client)
    operations = "meterql_graphql_operations_total"
    expected = {
        ("BillingPage", "query", "ok"): 1, ("BillingPage", "query", "error"): 1,
        ("<anonymous>", "query", "ok"): 1, ("<anonymous>", "unknown", "error"): 1,
        ("MetricsSummary", "query", "ok"): 1,
        ("<other>", "query", "ok"): 3,  # Mine, the long name, and B
        ("RecordUsage", "mutation", "ok"): 1,
    }
    assert {
        (dict(labels)["operation"], dict(labels)["type"], dict(labels)["outcome"]): v
        for (name, labels), v in samples.items() if name == operations
    } == expected
    assert value(samples, "meterql_graphql_request_duration_seconds_count",
                 operation="MetricsSummary", type="query") == 1


def test_the_servers_own_operation_names(app: Starlette) -> None:
    names = app.state.instruments.operation_names
    own = ["BillingPage", "MetricsPage", "MetricsSummary", "Billing", "RecordUsage",
           "ExportUsage", "ExportUsageGroups", "<batch>"]
    assert [names.label(name) for name in own] == own
    assert [names.label(name) for name in (None, "Dashboard", "x" * 65, "not a name")] == [
        "<anonymous>", "<other>", "<other>", "<other>"]
    # However many names tenants send, the labels stay the server's own.
    assert {names.label(f"Op{n}") for n in range(500)} == {"<other>"}


def _events(*ids: str) -> list[dict[str, object]]:
    return [{"event_id": i, "instance_id": "inst-a", "model": "gpt-4o",
             "timestamp": "2026-11-20T10:00:00Z", "tokens_in": 1, "tokens_out": 2} for i in ids]


@pytest.mark.usefixtures("seeded")
async def test_ingest_counters_follow_rest_and_graphql_batches(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    assert value(before, "meterql_ingest_events_total", result="accepted") == 0
    ingest = auth(ACME_INGEST_TOKEN)
    post = "/v1/usage/events"
    assert (await client.post(post, json=_events("n1", "n2"), headers=ingest)).json() == {
        "accepted": 2, "duplicates": 0}
    assert (await client.post(post, json=_events("n1", "n2", "n3"), headers=ingest)).json() == {
        "accepted": 1, "duplicates": 2}
    assert (await client.post(post, json=[{"event_id": "bad"}], headers=ingest)).status_code == 422
    assert (await client.post(post, content=b"[", headers=ingest)).status_code == 422
    # A read token is refused before any batch: not an ingest outcome.
    assert (await client.post(post, json=_events("n4"), headers=auth())).status_code == 403
    mutation = ("mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) "
                "{ accepted duplicates } }")
    graphql = await client.post("/graphql", headers=ingest, json={
        "query": mutation,
        "variables": {"e": [{"eventId": "g1", "instanceId": "inst-a", "model": "gpt-4o",
                             "timestamp": "2026-11-20T10:00:00Z", "tokensIn": 1,
                             "tokensOut": 1}]}})
    assert graphql.json() == {"data": {"recordUsage": {"accepted": 1, "duplicates": 0}}}
    refused = await client.post("/graphql", headers=ingest, json={
        "query": mutation,
        "variables": {"e": [{"eventId": "g2", "instanceId": "inst-a", "model": "gpt-4o",
                             "timestamp": "2999-01-01T00:00:00Z", "tokensIn": 1,
                             "tokensOut": 1}]}})
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    after = await scrape(client)
    assert value(after, "meterql_ingest_events_total", result="accepted") == 4
    assert value(after, "meterql_ingest_events_total", result="duplicate") == 2
    assert value(after, "meterql_ingest_batches_total", outcome="stored") == 3
    assert value(after, "meterql_ingest_batches_total", outcome="bad_user_input") == 3
    assert {dict(labels)["outcome"] for (name, labels) in after
            if name == "meterql_ingest_batches_total"} == {"stored", "bad_user_input"}


async def test_pool_and_write_queue_gauges(
    client: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    samples = await scrape(client)
    sqlite = db.dialect == "sqlite"
    # The write engine's pool (5 on SQLite), and the read path's connections.
    kept = (5 if sqlite else settings.pool_size) + db.reads.size
    assert db.reads.size >= 1
    assert value(samples, "meterql_db_pool_size") == kept
    assert value(samples, "meterql_db_pool_idle") >= 1  # /readyz's connection, given back
    assert value(samples, "meterql_db_pool_checked_out") == 0
    assert ("meterql_db_pool_overflow", frozenset()) in samples
    assert value(samples, "meterql_db_write_slots") == (1 if sqlite else 4)
    assert value(samples, "meterql_db_writes_waiting") == 0
    assert value(samples, "meterql_db_writes_active") == 0
    assert value(samples, "meterql_db_batches_waiting") == 0


@pytest.mark.parametrize(("overrides", "headers", "status"), [
    ({"metrics_token": SecretStr("s3cret")}, {}, 401),
    ({"metrics_token": SecretStr("s3cret")}, {"Authorization": "Bearer wrong"}, 401),
    ({"metrics_token": SecretStr("s3cret")}, {"Authorization": "Bearer s3cret"}, 200),
    ({"metrics_token": SecretStr("s3cret")}, {"Authorization": f"Bearer {ACME_TOKEN}"}, 401),
    ({"metrics_enabled": False}, {}, 404),
    ({}, {}, 200),
])
async def test_metrics_access(settings: Settings, db: Database, overrides: dict[str, Any],
                              headers: dict[str, str], status: int) -> None:
    async with client_with(settings, db, **overrides) as client:
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == status
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
            assert "meterql_" not in response.text


# --- access log ----------------------------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "meterql.web.access"]


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(("method", "path", "body", "token", "expected"), [
    ("GET", "/v1/billing/usage/chart?days=7&instance_id=inst-a", None, ACME_TOKEN,
     {"route": "/v1/billing/usage/chart", "status": 200, "account_id": "acme"}),
    ("POST", "/graphql", {"query": "query Plan { trialStatus { planName } }"}, ACME_TOKEN,
     {"route": "/graphql", "status": 200, "account_id": "acme", "operation": "Plan",
      "operation_type": "query"}),
    ("POST", "/v1/usage/events", _events("log-1"), ACME_INGEST_TOKEN,
     {"route": "/v1/usage/events", "status": 200, "account_id": "acme",
      "events_accepted": 1, "events_duplicate": 0}),
    ("GET", "/v1/billing", None, "not-a-token",
     {"route": "/v1/billing", "status": 401}),
    ("GET", "/v2/whatever?token=abc", None, None, {"route": "<unmatched>", "status": 404}),
], ids=["rest", "graphql", "ingest", "401", "404"])
async def test_one_access_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, method: str, path: str,
    body: object, token: str | None, expected: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO, logger="meterql.web.access")
    headers = {**(auth(token) if token else {}), "X-Request-ID": "req-42"}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == expected["status"]
    [line] = _lines(caplog)
    optional = {"account_id", "operation", "operation_type", "events_accepted",
                "events_duplicate"}
    assert {k: v for k, v in line.items() if k in optional} == {
        k: v for k, v in expected.items() if k in optional}
    assert line["request_id"] == "req-42"
    assert (line["level"], line["logger"], line["method"]) == ("info", "meterql.web.access", method)
    assert (line["route"], line["status"]) == (expected["route"], expected["status"])
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    text = json.dumps(line)
    for secret in (token or "no-token", "instance_id", "token=abc", "planName", "log-1"):
        assert secret not in text


async def test_an_escaping_bug_is_logged_as_the_500_it_answers(
    raw_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from meterql import context

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("password=hunter2")

    monkeypatch.setattr(context, "authenticate", broken)
    caplog.set_level(logging.INFO, logger="meterql.web.access")
    response = await raw_client.get("/v1/billing", headers=auth())
    assert response.status_code == 500
    [line] = _lines(caplog)
    assert (line["route"], line["status"]) == ("/v1/billing", 500)
    assert line["request_id"] == response.headers["x-request-id"] == response.json()["request_id"]
    assert "hunter2" not in json.dumps(line)
    samples = await scrape(raw_client)
    assert value(samples, "meterql_http_requests_total", route="/v1/billing", method="GET",
                 status="500") == 1


async def test_probes_log_quietly_unless_they_fail(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meterql.web.access")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200
    assert _lines(caplog) == []
    caplog.set_level(logging.DEBUG, logger="meterql.web.access")
    await client.get("/healthz")
    assert [(line["level"], line["route"]) for line in _lines(caplog)] == [("debug", "/healthz")]


def test_json_formatter_keeps_a_traceback_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("meterql.x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert (line["message"], line["level"]) == ("failed here", "error")
    assert line["time"].endswith("Z")
    assert "ValueError: boom" in line["exception"]


# --- meterql serve ----------------------------------------------------------------------------


def test_metrics_directory_is_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with cli.metrics_directory(shared=False):
        assert MULTIPROC_ENV not in os.environ  # one process: its own registry
    with cli.metrics_directory(shared=True):
        made = Path(os.environ[MULTIPROC_ENV])
        assert made.is_dir() and not any(made.iterdir())
    assert MULTIPROC_ENV not in os.environ and not made.exists()

    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with cli.metrics_directory(shared=True):
        assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]
    assert os.environ[MULTIPROC_ENV] == str(given)


def _serve_two_workers(tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``meterql serve --workers 2`` on ``port``."""
    env = {**os.environ, "METERQL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}
    env.pop(MULTIPROC_ENV, None)
    command = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port),
               "--workers", "2"]
    return command, env


@contextmanager
def _workers(tmp_path: Path, **settings: str) -> Iterator[str]:
    """``meterql serve --workers 2`` with ``settings`` (``METERQL_`` names), ready: its URL."""
    port = free_port()
    command, env = _serve_two_workers(tmp_path, port)
    process = subprocess.Popen(
        command, env={**env, **settings}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "meterql serve did not start"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def served_workers(tmp_path: Path) -> Iterator[str]:
    with _workers(tmp_path) as base:
        yield base


def _listening_sockets(port: int) -> int:
    """Sockets listening on ``port`` (IPv4), from the kernel's own table."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in table
               if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_connections_opened_together_reach_every_worker(served_workers: str) -> None:
    # A shared socket let the worker that woke first accept a whole burst of
    # keep-alive connections (wrk's, a load balancer's pool): two workers
    # served what one did. Each worker listens on its own socket and the
    # kernel spreads connections by address: 16 at once all reaching one of
    # two workers is a 1 in 30,000 chance.
    base = served_workers
    assert _listening_sockets(int(base.rsplit(":", 1)[1])) == 2

    async def together(n: int) -> None:
        clients = [httpx.AsyncClient() for _ in range(n)]
        try:
            answers = await asyncio.gather(*(c.get(f"{base}/healthz") for c in clients))
            assert all(a.status_code == 200 for a in answers)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    asyncio.run(together(16))
    # Each worker reports its write slot once it has answered a request.
    assert value(parse(httpx.get(f"{base}/metrics").text), "meterql_db_write_slots") == 2


def test_workers_say_where_they_listen_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    command, env = _serve_two_workers(tmp_path, port)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if f"Uvicorn running on http://127.0.0.1:{port}" in line:
                break
        else:
            raise AssertionError("".join(seen))
        deadline = time.monotonic() + 60
        while httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _closed_when_idle(port: int, connections: int, seconds: float) -> list[bool]:
    """Per connection (each answered one request, then left idle ``seconds``): closed by
    the server?"""
    import select
    import socket

    opened = [socket.create_connection(("127.0.0.1", port), timeout=10)
              for _ in range(connections)]
    try:
        for sock in opened:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: meterql\r\n\r\n")
            answer = b""
            while not (b"\r\n\r\n" in answer and answer.endswith(b"}")):
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(seconds)
        # A closed connection is readable (its end of file); an open one, idle, is not.
        readable, _, _ = select.select(opened, [], [], 0.05)
        return [sock in readable and sock.recv(1) == b"" for sock in opened]
    finally:
        for sock in opened:
            sock.close()


def test_workers_keep_idle_connections_as_long_as_told(tmp_path: Path) -> None:
    with _workers(tmp_path, METERQL_KEEP_ALIVE_S="1") as base:
        port = int(base.rsplit(":", 1)[1])
        # 16 connections reach both workers but once in 30,000: each was told.
        assert not any(_closed_when_idle(port, 16, 0.1))
        assert all(_closed_when_idle(port, 16, 2.0))


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command, env = _serve_two_workers(tmp_path, port)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        1, f"meterql serve: 127.0.0.1:{port} is already in use: stop what listens there, "
           "or give --port\n")


def test_metrics_add_up_across_worker_processes(served_workers: str) -> None:
    base = served_workers

    async def round_of(n: int) -> None:
        # A connection per request, so the kernel spreads them over the workers.
        async def one() -> None:
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{base}/healthz")).status_code == 200

        await asyncio.gather(*(one() for _ in range(n)))

    sent = 0
    for _ in range(10):
        asyncio.run(round_of(20))
        sent += 20
        samples = parse(httpx.get(f"{base}/metrics").text)
        # Each worker reports its write slot (1 on SQLite) once it has
        # answered a request: 2 means both answered some, and were summed.
        if value(samples, "meterql_db_write_slots") == 2:
            break
    assert value(samples, "meterql_db_write_slots") == 2
    assert value(samples, "meterql_http_requests_total", route="/healthz", method="GET",
                 status="200") == sent
    assert value(samples, "meterql_http_request_duration_seconds_count", route="/healthz",
                 method="GET", status_class="2xx") == sent
    # Per worker, SQLite's write pool of 5 and the read path's connection in the
    # event loop's thread, open once the worker has read (its /readyz probe at
    # least); the read threads' 4 open only when a read overruns its budget.
    assert value(samples, "meterql_db_pool_size") in (10 + 1, 10 + 2)


async def test_starting_the_app_freezes_what_it_built(app: Starlette) -> None:
    """The objects that live as long as the process are kept from the cyclic collector."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000
