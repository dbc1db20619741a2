"""One tenant must not be able to stop the service for everyone.

Cheap requests that once cost everyone: oversized ``usage`` answers sized
only after they were computed, documents whose validation doubled with each
fragment, uploads that held a database connection while the client
trickled or went away. Each test asserts on counts (statements run, points
charged, connections lent) and allows wall-clock time only generously.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import tracemalloc
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import UsageEventRecord
from tests.conftest import NOW, StatementCounter
from tests.golden import (
    ACME_INGEST_TOKEN,
    ACME_TOKEN,
    GLOBEX_TOKEN,
    auth,
    busy_account,
    seed,
)
from tests.servers import serving

# --- usage is charged from its arguments before anything is read ------------------------

YEAR_OF_HOURS = "days: 366, granularity: HOUR"
# Each asks for far more than the default budget (200,000 points); none may read usage.
OVERSIZED = {
    "models-by-instance": f"{{ viewer {{ models {{ usage({YEAR_OF_HOURS}, groupBy: INSTANCE) "
                          "{ totals { requests } } } } }",
    "page-of-instances": "{ viewer { instances(first: 100) { edges { node { "
                         + " ".join(f"a{n}: usage({YEAR_OF_HOURS}) {{ totals {{ requests }} }}"
                                    for n in range(5))
                         + " } } } } }",
    "root-by-instance": f"{{ usage({YEAR_OF_HOURS}, groupBy: INSTANCE) {{ totals {{ requests }} }} }}",
    "aliases": "{ " + " ".join(f"a{n}: usage({YEAR_OF_HOURS}) {{ totals {{ requests }} }}"
                               for n in range(25)) + " }",
    "instances-by-model": "{ viewer { instances(first: 30) { edges { node { "
                          "usage(days: 366, groupBy: MODEL) { totals { requests } } } } } } }",
}
# What reading usage looks like: sums over any rollup or the events themselves
# (the models list and the count of groups read rollup keys, never amounts).
USAGE_TABLES = ("usage_days", "usage_instance_", "usage_model_", "usage_quarter_hours",
                "usage_events")


def _reads_usage(statement: str) -> bool:
    return "sum(" in statement.lower() and any(table in statement for table in USAGE_TABLES)


@pytest.mark.parametrize("query", OVERSIZED.values(), ids=list(OVERSIZED))
async def test_oversized_usage_is_refused_before_it_is_read(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, query: str
) -> None:
    token = await busy_account(db, "big", instances=60, models=25)
    sql.reset()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = await client.post("/graphql", json={"query": query}, headers=auth(token))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    body = response.json()
    assert body["data"] is None, body
    assert {e["extensions"]["errors"][0]["type"] for e in body["errors"]} == {"too_many_points"}
    assert not [s for s in sql.statements if _reads_usage(s)], sql.statements
    assert sql.count <= 3, sql.statements  # the token, a list, the count of groups
    # Today's code built the answers first: hundreds of megabytes and seconds.
    assert peak < 8 * 1024 * 1024, peak
    assert elapsed < 5, elapsed


def _app(settings: Settings, db: Database, **changes: Any) -> Starlette:
    """The app on ``db`` at ``NOW``, with ``changes`` made to the settings."""
    return create_app(settings.model_copy(update=changes), database=db, clock=lambda: NOW)


async def _ask(settings: Settings, db: Database, points: int, query: str, token: str) -> Any:
    app = _app(settings, db, graphql_max_series_points=points)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as client:
        return (await client.post("/graphql", json={"query": query}, headers=auth(token))).json()


async def test_a_charge_is_the_most_an_answer_may_hold(settings: Settings, db: Database) -> None:
    """Grouped by instance, a day may hold one point per instance with usage around it.

    In Berlin, 2026-11-20 runs from 23:00 UTC on the 19th, so the count of
    groups spans the UTC days 19 and 20: seven instances, of which four had
    usage in the local day. Each answer is charged seven points, however
    many it holds, so whether a query fits never depends on the order its
    fields are read in.
    """
    token = await busy_account(db, "acct", instances=1, models=1)
    async with db.write() as session, session.begin():
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"x-{i}", instance_id=f"x-{i}", model="m-000",
                             timestamp=datetime(2026, 11, 20 if i < 3 else 19, 12, tzinfo=UTC),
                             tokens_in=1, tokens_out=1)
            for i in range(6)
        ], account_id="acct")
    one = ('usage(range: {from: "2026-11-20", to: "2026-11-20"}, tz: "Europe/Berlin", '
           "groupBy: INSTANCE) { groups { key } }")
    answered = await _ask(settings, db, 100, f"{{ {one} }}", token)
    keys = [g["key"] for g in answered["data"]["usage"]["groups"]]
    assert keys == ["i-000", "x-0", "x-1", "x-2"]  # busy_account's one instance, at NOW
    assert "errors" not in await _ask(settings, db, 7, f"{{ {one} }}", token)
    refused = await _ask(settings, db, 6, f"{{ {one} }}", token)
    assert refused["errors"][0]["extensions"]["errors"][0]["type"] == "too_many_points"
    twice = f"{{ a: {one} b: {one} }}"
    assert "errors" not in await _ask(settings, db, 14, twice, token)
    assert "errors" in await _ask(settings, db, 13, twice, token)


# --- validation costs time linear in the document -----------------------------------------


def _fan_out(levels: int, leaf: str = "accountId", spreads: int = 2) -> str:
    """``F0`` spreads ``F1`` twice, ``F1`` spreads ``F2`` twice...: 2^levels leaves."""
    fragments = [
        f"fragment F{n} on Viewer {{ {' '.join([f'...F{n + 1}'] * spreads)} }}"
        for n in range(levels)
    ]
    return "{ viewer { ...F0 } } " + " ".join(fragments) + f" fragment F{levels} on Viewer {{ {leaf} }}"


DEEP = "instances { edges { node { usage { series { groups { key } } } } } }"  # 7 levels
FAN_OUTS = {
    # (document, depth limit, the refusals): valid ones spread one field 2^60
    # times, which execution collects once.
    "leaf": (_fan_out(60), 10, []),
    "aliased": (_fan_out(60, "a: accountId"), 10,
                ["1152921504606846976 aliases found. Allowed: 50"]),
    "wide": (_fan_out(30, "plan { tierId }", spreads=4), 10, []),
    "deep": (_fan_out(40, DEEP), 10, []),
    "too-deep": (_fan_out(40, DEEP), 6, ["'anonymous' exceeds maximum operation depth of 6"]),
}


@pytest.mark.parametrize("name", list(FAN_OUTS))
def test_fragment_fan_out_is_validated_in_linear_time(name: str) -> None:
    from graphql import parse, specified_rules, validate

    from meterql.schema import build_schema, limits

    query, depth, refusals = FAN_OUTS[name]
    schema = build_schema()._schema
    measured: list[object] = []
    original = limits._Shape.of

    def counting(self: limits._Shape, selection_set: Any) -> tuple[int, int]:
        measured.append(selection_set)
        return original(self, selection_set)

    document = parse(query)
    started = time.perf_counter()
    try:
        limits._Shape.of = counting  # type: ignore[method-assign]
        errors = validate(schema, document, [*specified_rules, limits.shape_rule(depth, 50)])
    finally:
        limits._Shape.of = original  # type: ignore[method-assign]
    elapsed = time.perf_counter() - started
    # Each selection set measured once (every one opens with a brace): the
    # fragments are remembered, not walked again at every spread.
    assert len(measured) <= query.count("{"), (len(measured), query.count("{"))
    assert [e.message for e in errors] == refusals
    # 2^60 spreads once took longer than the universe has existed; 2^22 took 16 s.
    assert elapsed < 1, elapsed


async def test_an_ingest_token_gets_a_fan_out_refused_at_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    await seed(db)
    query = _fan_out(150, "a: accountId")
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": query},
                                 headers=auth(ACME_INGEST_TOKEN))
    assert time.perf_counter() - started < 2
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["message"].endswith("aliases found. Allowed: 50")


REPEATED = {
    # graphql-core's own field-merging rule compared every pair: up to a second
    # each, and the first one it refused outright ("Validation aborted").
    "same-field": "{ viewer { " + "plan { tierId } " * 490 + "} }",
    "same-alias": "{ viewer { " + "a: plan { tierId } " * 320 + "} }",
    "same-arguments": "{ viewer { " + "instances(first: 1) { totalCount } " * 215 + "} }",
    "side-by-side-fragments": "{ viewer { " + " ".join(f"...F{n}" for n in range(160)) + " } } "
                              + " ".join(f"fragment F{n} on Viewer {{ plan {{ tierId }} }}"
                                         for n in range(160)),
}


@pytest.mark.parametrize("name", list(REPEATED))
async def test_repeated_fields_are_validated_in_linear_time(
    settings: Settings, db: Database, name: str
) -> None:
    await seed(db)
    app = _app(settings, db, graphql_max_aliases=1_000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as client:
        started = time.perf_counter()
        response = await client.post("/graphql", json={"query": REPEATED[name]},
                                     headers=auth(ACME_INGEST_TOKEN))
        elapsed = time.perf_counter() - started
    body = response.json()
    assert "errors" not in body, body  # valid, and answered
    assert body["data"]["viewer"]
    assert elapsed < 1, elapsed


# --- bodies: no connection waits on a client -----------------------------------------------

Message = dict[str, Any]


async def _call(app: Any, method: str, path: str, headers: dict[str, str],
                receive: Any) -> list[Message]:
    """Run one request through the ASGI app; what it sent back."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("meterql.test", 80), "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    return sent


def _aborted(first: bytes) -> Any:
    """A client that sends ``first`` of its body, then closes the connection."""
    messages = [{"type": "http.request", "body": first, "more_body": True},
                {"type": "http.disconnect"}]

    async def receive() -> Message:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    return receive


def _trickle(interval_s: float, reading: asyncio.Event) -> Any:
    """A client that sends one byte every ``interval_s``, for ever; ``reading`` is set
    once the app asks for its body."""

    async def receive() -> Message:
        reading.set()
        await asyncio.sleep(interval_s)
        return {"type": "http.request", "body": b" ", "more_body": True}

    return receive


UPLOADS = {"/graphql": ACME_TOKEN, "/v1/usage/events": ACME_INGEST_TOKEN}


def _checked_out(db: Database) -> int:
    status = db.pool_status()
    assert status is not None
    return status.checked_out


@pytest.mark.parametrize("path", list(UPLOADS))
async def test_aborted_uploads_leave_no_connection_behind(
    app: Any, db: Database, client: httpx.AsyncClient, path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await seed(db)
    headers = {**auth(UPLOADS[path]), "content-type": "application/json",
               "content-length": "1000"}
    for _ in range(25):  # more than the pool has connections, overflow included
        sent = await _call(app, "POST", path, headers, _aborted(b"["))
        # Nobody is left to read an answer; the log and metrics call it 499.
        assert sent[0]["status"] == 499
    assert _checked_out(db) == 0
    assert (await client.get("/v1/billing", headers=auth())).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("path", list(UPLOADS))
async def test_a_trickled_body_gets_408_and_holds_nothing_meanwhile(
    settings: Settings, db: Database, path: str
) -> None:
    await seed(db)
    app = _app(settings, db, body_timeout_s=0.6)
    headers = {**auth(UPLOADS[path]), "content-type": "application/json",
               "content-length": "1000"}
    reading = [asyncio.Event() for _ in range(25)]
    uploads = [asyncio.create_task(_call(app, "POST", path, headers, _trickle(0.05, event)))
               for event in reading]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as other:
        # Every upload past its token check and waiting for its body: a fixed
        # pause instead counted token reads still in flight on a busy machine.
        async with asyncio.timeout(10):
            await asyncio.gather(*(event.wait() for event in reading))
        # Another tenant's reads while 25 uploads trickle: answered, nothing held.
        for _ in range(5):
            assert _checked_out(db) == 0
            answer = await other.get("/v1/billing", headers=auth(GLOBEX_TOKEN))
            assert answer.status_code == 200
    started = time.perf_counter()
    for sent in await asyncio.gather(*uploads):
        assert sent[0]["status"] == 408
        assert (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"]) == {"detail": "Request body not received in time"}
    assert time.perf_counter() - started < 5


# --- the same over real sockets -------------------------------------------------------------


def _post(url: str, body: bytes, token: str) -> tuple[int, bytes]:
    """POST as Python's urllib does: the whole body first, then the answer."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_plain_clients_read_the_413_and_aborted_sockets_hold_nothing(
    settings: Settings, db: Database
) -> None:
    await seed(db)
    app = create_app(settings, clock=lambda: NOW)
    with serving(app) as base:
        host, port = base.removeprefix("http://").split(":")
        too_big = {
            "/v1/usage/events": b"[" + b" " * (11 * 1024 * 1024) + b"]",
            "/graphql": b'{"query": "' + b" " * (2 * 1024 * 1024) + b'{ billing { plan { planName } } }"}',
        }
        for path, body in too_big.items():
            status, answer = await asyncio.to_thread(_post, base + path, body, ACME_INGEST_TOKEN)
            assert (status, json.loads(answer)) == (413, {"detail": "Request entity too large"})

        def abort(path: str) -> None:
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{ACME_INGEST_TOKEN}\r\nContent-Type: application/json\r\n"
                    "Content-Length: 1000\r\n\r\n[".encode())
                time.sleep(0.05)

        for _ in range(15):
            for path in UPLOADS:
                await asyncio.to_thread(abort, path)
        await asyncio.sleep(0.3)
        status, _ = await asyncio.to_thread(_get, base + "/readyz")
        assert status == 200
        status, metrics = await asyncio.to_thread(_get, base + "/metrics")
        assert b"\nmeterql_db_pool_checked_out 0.0\n" in metrics
        status, _ = await asyncio.to_thread(_get, base + "/v1/billing", ACME_TOKEN)
        assert status == 200


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- every date a Date accepts is an answer or a refusal ------------------------------------

EDGE_ZONES = ["Etc/GMT+12", "Etc/GMT-14", "Pacific/Kiritimati", "America/St_Johns", "UTC"]


@pytest.mark.parametrize("zone", EDGE_ZONES)
async def test_the_ends_of_the_calendar_answer_or_refuse(
    client: httpx.AsyncClient, db: Database, zone: str
) -> None:
    await seed(db)
    spans = [("0001-01-01", "0001-01-01"), ("0001-01-02", "0001-01-03"),
             ("9999-12-28", "9999-12-29"), ("9999-12-29", "9999-12-30"),
             ("9999-12-31", "9999-12-31")]
    for first, last in spans:
        accepted = first >= "0001-01-02" and last <= "9999-12-29"
        for granularity in ("HOUR", "DAY", "WEEK", "MONTH"):
            query = (f'{{ usage(range: {{from: "{first}", to: "{last}"}}, tz: "{zone}", '
                     f"granularity: {granularity}, groupBy: MODEL) {{ totals {{ requests }} }} }}")
            body = (await client.post("/graphql", json={"query": query}, headers=auth())).json()
            if accepted:
                assert body.get("errors") is None, (first, granularity, body)
                assert body["data"]["usage"]["totals"] == {"requests": 0}
            else:
                assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
            export = await client.get("/v1/export/usage.csv", headers=auth(), params={
                "from": first, "to": last, "tz": zone, "granularity": granularity.lower()})
            assert export.status_code == (200 if accepted else 422), export.text
