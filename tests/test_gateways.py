"""Several gateway processes over one PostgreSQL: real `meterql serve --workers N`
processes over HTTP give identical answers and count each event once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from tests.pgcluster import free_port

GATEWAYS = 2
WORKERS = 2


def _start(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "METERQL_DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port),
         "--workers", str(WORKERS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _wait_ready(port: int, token: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/v1/billing/trial-status",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"gateway on port {port} did not become ready")


@pytest.fixture
def token(settings: Settings) -> str:
    async def create() -> str:
        db = Database.from_settings(settings)
        try:
            async with db.write() as session, session.begin():
                return await writes.create_token(session, "acme", ["read", "ingest"])
        finally:
            await db.dispose()

    return asyncio.run(create())


@pytest.fixture
def gateways(database_url: str, token: str) -> Iterator[list[str]]:
    ports = [free_port() for _ in range(GATEWAYS)]
    processes = [_start(database_url, port) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_ready(port, token, process)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _batch(size: int) -> list[dict[str, object]]:
    stamp = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return [{"event_id": f"gw-{n:05d}", "instance_id": f"inst-{n % 7}", "model": "m",
             "timestamp": stamp, "tokens_in": 3, "tokens_out": 4, "cost_usd": "0.0001"}
            for n in range(size)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_gateways_count_once_and_agree(gateways: list[str], token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    batch = _batch(500)

    async def hammer() -> list[dict[str, int]]:
        async with httpx.AsyncClient(timeout=60) as client:
            # Eight senders per gateway, all with the same batch, at once.
            responses = await asyncio.gather(*(
                client.post(f"{base}/v1/usage/events", json=batch, headers=headers)
                for base in gateways for _ in range(8)
            ))
        assert [r.status_code for r in responses] == [200] * len(responses)
        return [r.json() for r in responses]

    bodies = asyncio.run(hammer())
    assert sum(b["accepted"] for b in bodies) == 500
    assert sum(b["duplicates"] for b in bodies) == 500 * (len(bodies) - 1)

    # Every gateway (and whichever worker answers) gives the same bytes.
    for path in ["/v1/metrics/summary?days=7", "/v1/metrics/instances?days=7",
                 "/v1/billing/usage", "/v1/metrics/usage?days=7"]:
        answers = {httpx.get(f"{base}{path}", headers=headers).content
                   for base in gateways for _ in range(WORKERS * 2)}
        assert len(answers) == 1, path
    summary = httpx.get(f"{gateways[0]}/v1/metrics/summary?days=7", headers=headers).json()
    # 500 events of 7 tokens at a reported 0.0001 USD each: 0.05 USD
    assert (summary["total_requests"], summary["total_tokens"]) == (500, 3500)
    assert summary["estimated_cost_usd"] == "0.0500"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_304_never_hides_a_batch_another_gateway_took(
    gateways: list[str], token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    path = "/v1/metrics/summary?days=7"
    first = httpx.get(f"{gateways[0]}{path}", headers=headers)
    etag = first.headers["etag"]
    # Every gateway, and whichever worker answers, agrees nothing changed.
    for base in gateways:
        for _ in range(WORKERS * 2):
            same = httpx.get(f"{base}{path}", headers={**headers, "if-none-match": etag})
            assert same.status_code == 304
    sent = httpx.post(f"{gateways[1]}/v1/usage/events", json=_batch(3), headers=headers)
    assert sent.json()["accepted"] == 3
    for base in gateways:
        for _ in range(WORKERS * 2):
            changed = httpx.get(f"{base}{path}", headers={**headers, "if-none-match": etag})
            assert changed.status_code == 200
            assert changed.json()["total_requests"] == first.json()["total_requests"] + 3
    new = changed.headers["etag"]
    assert new != etag
    for base in gateways:
        assert httpx.get(f"{base}{path}",
                         headers={**headers, "if-none-match": new}).status_code == 304


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_gateway_keeps_an_answer_past_a_batch_another_gateway_took(
    gateways: list[str], token: str
) -> None:
    """Every worker of every gateway keeps its answers (``web/answers.py``); a batch
    through one gateway is in the very next answer of every other."""
    headers = {"Authorization": f"Bearer {token}"}
    page = {"query": "{ metricsSummary(days: 7) { totalRequests } }"}

    def answers() -> set[tuple[int, int]]:
        seen = set()
        for base in gateways:
            for _ in range(WORKERS * 3):
                rest = httpx.get(f"{base}/v1/metrics/summary?days=7", headers=headers)
                graphql = httpx.post(f"{base}/graphql", json=page, headers=headers)
                seen.add((rest.json()["total_requests"],
                          graphql.json()["data"]["metricsSummary"]["totalRequests"]))
        return seen

    (before,) = answers()  # made once per worker, then kept: one answer everywhere
    sent = httpx.post(f"{gateways[0]}/v1/usage/events", json=_batch(4), headers=headers)
    assert sent.json()["accepted"] == 4
    assert answers() == {(before[0] + 4, before[1] + 4)}
    kept = sum(_kept(httpx.get(f"{base}/metrics").text) for base in gateways)
    assert kept > 0


def _kept(exposition: str) -> float:
    """A gateway's answers sent from memory, all its workers together."""
    for line in exposition.splitlines():
        if line.startswith('meterql_answers_total{source="kept"}'):
            return float(line.split()[-1])
    return 0.0


def _numbered_batch(n: int, size: int) -> list[dict[str, object]]:
    stamp = (datetime.now(UTC) - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    return [{"event_id": f"kill-{n:03d}-{k:04d}", "instance_id": f"inst-{k % 5}", "model": "m",
             "timestamp": stamp, "tokens_in": 1, "tokens_out": 2, "cost_usd": "0.0001",
             "end_user_id": f"user-{k % 50}"} for k in range(size)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_gateway_killed_mid_batch_loses_nothing_accepted_and_counts_nothing_twice(
    database_url: str, gateways: list[str], token: str, settings: Settings
) -> None:
    """A gateway dies (SIGKILL) with batches in flight; the senders re-send every batch
    through a gateway still up. Each batch it answered is stored whole; each one it did
    not answer is stored whole or not at all; in the end every event is stored once."""
    headers = {"Authorization": f"Bearer {token}"}
    batches = [_numbered_batch(n, 400) for n in range(40)]
    port = free_port()
    doomed = _start(database_url, port)
    _wait_ready(port, token, doomed)

    async def send_then_kill() -> dict[int, dict[str, int] | None]:
        answers: dict[int, dict[str, int] | None] = {}

        async def send(n: int, client: httpx.AsyncClient) -> None:
            try:
                response = await client.post(f"http://127.0.0.1:{port}/v1/usage/events",
                                             json=batches[n], headers=headers)
                answers[n] = response.json() if response.status_code == 200 else None
            except httpx.TransportError:
                answers[n] = None  # the gateway died: the outcome is unknown

        async with httpx.AsyncClient(timeout=30) as client:
            sending = [asyncio.ensure_future(send(n, client)) for n in range(len(batches))]
            # Killed once a couple of batches are through: the rest are queued
            # or being written (one account's batches take turns).
            deadline = time.monotonic() + 20
            while len(answers) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            os.killpg(doomed.pid, signal.SIGKILL)
            await asyncio.gather(*sending)
        return answers

    answers = asyncio.run(send_then_kill())
    doomed.wait(timeout=20)
    answered = {n for n, body in answers.items() if body is not None}
    assert answered and len(answered) < len(batches)  # some got through, some did not

    async def resend() -> list[dict[str, int]]:
        async with httpx.AsyncClient(timeout=60) as client:
            responses = [await client.post(f"{gateways[n % 2]}/v1/usage/events",
                                           json=batches[n], headers=headers)
                         for n in range(len(batches))]
        assert [r.status_code for r in responses] == [200] * len(batches)
        return [r.json() for r in responses]

    again = asyncio.run(resend())
    for n, body in enumerate(again):
        if n in answered:  # stored whole when it was answered: nothing new now
            assert (answers[n], body) == ({"accepted": 400, "duplicates": 0},
                                         {"accepted": 0, "duplicates": 400}), n
        else:  # all or nothing, never a part
            assert body in ({"accepted": 400, "duplicates": 0},
                            {"accepted": 0, "duplicates": 400}), (n, body)

    async def stored() -> tuple[int, int, int]:
        from sqlalchemy import func, select

        from meterql.db.tables import EventKey, UsageDay, UsageEvent

        db = Database.from_settings(settings)
        try:
            async with db.engine.connect() as connection:
                events = await connection.scalar(select(func.count()).select_from(UsageEvent))
                keys = await connection.scalar(select(func.count()).select_from(EventKey))
                requests = await connection.scalar(select(func.sum(UsageDay.requests)))
        finally:
            await db.dispose()
        return int(events or 0), int(keys or 0), int(requests or 0)

    assert asyncio.run(stored()) == (40 * 400, 40 * 400, 40 * 400)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thresholds_alert_once_however_many_gateways_ingest(
    gateways: list[str], token: str, settings: Settings
) -> None:
    """Sixteen senders over two gateway processes of two workers each, every batch sent
    twice: each threshold of the budget is recorded once, by the write that crossed it
    (a batch, or the batches of a gateway's senders written together)."""
    from meterql.budgets import Measure, Period, Rule, Scope
    from meterql.db import budgets

    limit, size = 400, 5
    marks = tuple(range(10, 101, 10))

    async def add_budget() -> None:
        db = Database.from_settings(settings)
        try:
            async with db.write() as session, session.begin():
                await budgets.add(session, "acme", Rule(
                    budget_id="bud_gateways", name="gateways", scope=Scope.ACCOUNT, scope_key="",
                    measure=Measure.REQUESTS, limit=limit, period=Period.DAY, time_zone="UTC",
                    thresholds=marks, revision=1,
                    created_at=datetime.now(UTC) - timedelta(days=2),
                    watched_from=datetime.now(UTC) - timedelta(days=2)))
        finally:
            await db.dispose()

    asyncio.run(add_budget())
    headers = {"Authorization": f"Bearer {token}"}
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")

    async def send_all() -> None:
        async with httpx.AsyncClient(timeout=60) as client:

            async def sender(n: int) -> None:
                base = gateways[n % len(gateways)]
                for batch in range(5):
                    events = [{"event_id": f"a{n}-{batch}-{k}", "instance_id": "inst-0",
                               "model": "m", "timestamp": stamp, "tokens_in": 1,
                               "tokens_out": 1} for k in range(size)]
                    for _ in range(2):
                        response = await client.post(f"{base}/v1/usage/events", json=events,
                                                     headers=headers)
                        assert response.status_code == 200, response.text

            await asyncio.gather(*(sender(n) for n in range(16)))

    asyncio.run(send_all())
    found = httpx.post(f"{gateways[1]}/graphql", headers=headers, json={"query": """{ viewer {
        budgets { spent } alerts(first: 100) { edges { node { threshold spent } } } } }"""}
                       ).json()["data"]["viewer"]
    sent = 16 * 5 * size
    assert found["budgets"][0]["spent"] == str(sent)
    alerts = [edge["node"] for edge in found["alerts"]["edges"]]
    assert sorted(a["threshold"] for a in alerts) == list(marks)  # each once, all crossed
    # One write adds at most a batch from each sender of its gateway.
    most = size * 16 // GATEWAYS
    for alert in alerts:
        spent = int(alert["spent"])
        assert alert["threshold"] * limit <= spent * 100 < (alert["threshold"] * limit
                                                            + most * 100)
