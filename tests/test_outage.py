"""Outages: an unreachable or hung PostgreSQL gives a fast 503, never a 500 or a
hang, writes nothing, and the same process recovers once the server is back."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.migrate import upgrade
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, auth, seed
from tests.pgcluster import Cluster, why_unavailable

reason = why_unavailable()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

# Every route, and GraphQL, as (method, path, json body).
CALLS = [
    ("GET", "/v1/metrics/summary", None),
    ("GET", "/v1/metrics/instances?days=7", None),
    ("GET", "/v1/metrics/models", None),
    ("GET", "/v1/metrics/usage", None),
    ("GET", "/v1/billing", None),
    ("GET", "/v1/billing/trial-status", None),
    ("GET", "/v1/billing/usage", None),
    ("GET", "/v1/billing/usage/chart?instance_id=inst-a", None),
    ("POST", "/v1/usage/events", [{"event_id": "during-outage", "instance_id": "inst-new",
                                   "model": "gpt-4o", "timestamp": "2026-11-20T10:00:00Z",
                                   "tokens_in": 1, "tokens_out": 1}]),
    ("POST", "/graphql", {"query": "{ metricsSummary { totalRequests } }"}),
]
DEADLINE_S = 5.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    yield cluster
    try:
        cluster.thaw()
        cluster.stop()
    except (OSError, ValueError, subprocess.CalledProcessError):
        pass  # already stopped
    cluster.remove()


@pytest.fixture
async def outage_client(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    # The default timeouts: what an operator gets without tuning anything.
    settings = Settings(database_url=cluster.url)
    db = Database.from_settings(settings)
    await upgrade(db.engine)
    async with db.write() as session, session.begin():
        await session.execute(__import__("sqlalchemy").text(
            "TRUNCATE usage_events, event_keys, instances, subscriptions, webhost_nodes, "
            "api_tokens, accounts, models, tiers CASCADE"))
    await seed(db)
    app = create_app(settings, database=db, clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as client:
        yield client
    await db.dispose()


async def _call(client: httpx.AsyncClient, method: str, path: str,
                body: object) -> tuple[httpx.Response, float]:
    headers = auth(ACME_INGEST_TOKEN)
    started = time.monotonic()
    response = await client.request(method, path, json=body, headers=headers)
    return response, time.monotonic() - started


async def _assert_all_unavailable(client: httpx.AsyncClient) -> None:
    for method, path, body in CALLS:
        response, elapsed = await _call(client, method, path, body)
        assert response.status_code == 503, (path, response.text)
        assert response.json() == {"detail": "Database unavailable"}
        assert int(response.headers["retry-after"]) > 0
        assert elapsed < DEADLINE_S, (path, elapsed)


async def _assert_all_serving(client: httpx.AsyncClient, summary: bytes) -> None:
    for method, path, body in CALLS:
        response, _ = await _call(client, method, path, body)
        assert response.status_code == 200, (path, response.text)
    response, _ = await _call(client, "GET", "/v1/metrics/summary", None)
    assert response.content == summary


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
async def test_outage_then_recovery_without_restart(
    cluster: Cluster, outage_client: httpx.AsyncClient, failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = outage_client
    before, _ = await _call(client, "GET", "/v1/metrics/summary", None)
    assert before.status_code == 200
    # Warm the pool, so the outage also has to deal with pooled connections.
    await _call(client, "GET", "/v1/billing", None)

    if failure == "stopped":
        cluster.stop()
    else:
        cluster.freeze()
    try:
        await _assert_all_unavailable(client)
        await _assert_all_unavailable(client)  # and again: nothing stays stuck
        # The log names each cause, even an exception without a message (a timeout).
        said = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("database unavailable")]
        assert said and all(not line.endswith(": ") for line in said), said
        # Out of rotation, quickly (probes time out at 1 s by default), but alive.
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        assert time.monotonic() - started < 1.5
        assert (await client.get("/healthz")).status_code == 200
    finally:
        if failure == "stopped":
            cluster.start()
        else:
            cluster.thaw()

    # The same app, the same pool: answers again, and the ingest attempted
    # during the outage wrote nothing (its event is new now).
    assert (await _call(client, "GET", "/v1/metrics/summary", None))[0].content == before.content
    method, path, body = CALLS[-2]
    accepted, _ = await _call(client, method, path, body)
    assert accepted.json() == {"accepted": 1, "duplicates": 0}
    after, _ = await _call(client, "GET", "/v1/metrics/summary", None)
    assert after.json()["total_requests"] == before.json()["total_requests"] + 1
    await _assert_all_serving(client, after.content)
    assert (await client.get("/readyz")).json() == {"status": "ok"}
