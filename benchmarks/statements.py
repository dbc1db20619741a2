"""Statement times: every driver call a request makes, in-process, with its SQL and arguments.

The app is ``create_app(Settings(database_url=...))`` behind httpx's
ASGITransport (no HTTP server), and its read path's driver call,
``app.state.services.db.reads._driver.fetch(sql, arguments)`` (asyncpg's
``fetch`` on PostgreSQL, aiosqlite's ``execute_fetchall`` on SQLite), is
wrapped to time each call: what one statement costs a request, from the
call to its rows converted by the driver, a wait for a pooled connection or
for the SQLite thread included. Each request (a ``/v1`` route's GET or a
GraphQL-only query's POST) is sent after a warm-up a few times, one at a
time; a request's statements are told apart by their SQL and, for the same
SQL run more than once in a request, by the order it ran in.

A request may run statements concurrently (a page's batched loaders): a
call's time then includes waiting behind the others, and the request's
summed driver time exceeds its own. So for every statement whose median is
over the bound, it is also run alone, on a connection of its own with the
very arguments of its last run, and its plan read there:
``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL (asyncpg, planned for those
values as meterql's read connections do), ``EXPLAIN QUERY PLAN`` on SQLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

import asyncpg
import httpx


@dataclass(frozen=True)
class Request:
    """One request to time: a ``/v1`` route (GET ``path``) or a GraphQL-only query (``body``)."""

    name: str
    kind: str  # "rest" or "graphql"
    path: str
    body: dict[str, Any] | None = None

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        if self.body is None:
            return await client.get(self.path)
        return await client.post(self.path, json=self.body)


@dataclass(frozen=True)
class Call:
    """One driver call: its SQL, its positional arguments as the driver got them, its time."""

    sql: str
    arguments: tuple[Any, ...]
    ms: float


def sql_id(sql: str) -> str:
    """A short stable name for a statement's text (results keep each text once)."""
    return hashlib.sha1(sql.encode()).hexdigest()[:10]


def jsonable(value: Any) -> Any:
    """An argument as JSON can hold it (instants as ISO text, decimals as text)."""
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (datetime, date, clock_time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} s"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _failed(response: httpx.Response) -> bool:
    return not response.is_success or b'"errors"' in response.content


async def _measure(url: str, settings: dict[str, Any], headers: dict[str, str],
                   requests: Sequence[Request], warmup: int,
                   runs: int) -> tuple[dict[str, Any], dict[str, list[list[Call]]]]:
    from meterql.app import create_app
    from meterql.config import Settings

    app = create_app(Settings(database_url=url, **settings))
    driver = app.state.services.db.reads._driver
    fetch = driver.fetch
    # The calls of the request being recorded (none while warming up).
    recording: list[list[Call]] = []

    async def timed_fetch(sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        started = time.perf_counter()
        try:
            rows: Sequence[Sequence[Any]] = await fetch(sql, arguments)
            return rows
        finally:
            if recording:
                recording[-1].append(
                    Call(sql, tuple(arguments), (time.perf_counter() - started) * 1000))

    driver.fetch = timed_fetch
    out: dict[str, Any] = {}
    calls: dict[str, list[list[Call]]] = {}
    transport = httpx.ASGITransport(app=app)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120,
                                  headers=headers) as client):
        for request in requests:
            for _ in range(warmup):
                await request.send(client)
            samples, failures, made = [], 0, []
            for _ in range(runs):
                recording.append([])
                started = time.perf_counter()
                response = await request.send(client)
                samples.append((time.perf_counter() - started) * 1000)
                made.append(recording.pop())
                failures += _failed(response)
            out[request.name] = {"kind": request.kind, "runs": runs, "failures": failures,
                                 "request_median_ms": statistics.median(samples)}
            calls[request.name] = made
    return out, calls


def _statements(made: list[list[Call]]) -> list[tuple[str, int, list[Call]]]:
    """Each statement of a request with its runs: (SQL, occurrence in the request, calls)."""
    found: dict[tuple[str, int], list[Call]] = {}
    for run in made:
        seen: Counter[str] = Counter()
        for call in run:
            found.setdefault((call.sql, seen[call.sql]), []).append(call)
            seen[call.sql] += 1
    return [(sql, occurrence, runs) for (sql, occurrence), runs in found.items()]


async def _explain_postgresql(url: str, sql: str, arguments: tuple[Any, ...],
                              runs: int) -> tuple[str, float]:
    connection = await asyncpg.connect(
        url, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        statement = await connection.prepare(sql)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            await statement.fetch(*arguments)
            samples.append((time.perf_counter() - started) * 1000)
        rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *arguments)
        return "\n".join(str(row[0]) for row in rows), statistics.median(samples)
    finally:
        await connection.close()


def _explain_sqlite(path: str, sql: str, arguments: tuple[Any, ...],
                    runs: int) -> tuple[str, float]:
    """``EXPLAIN QUERY PLAN`` as the sqlite3 shell draws it: one line per step, nested."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            connection.execute(sql, arguments).fetchall()
            samples.append((time.perf_counter() - started) * 1000)
        rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", arguments).fetchall()
    finally:
        connection.close()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append(f"{'   ' * depth[node]}|--{detail}")
    return "QUERY PLAN\n" + "\n".join(lines), statistics.median(samples)


def explain(backend: str, target: str, sql: str, arguments: tuple[Any, ...],
            runs: int) -> dict[str, Any]:
    """The statement's plan with these arguments, and its median run alone.

    ``target`` is an asyncpg URL or a SQLite path; the statement is run
    ``runs`` times on that connection of its own (asyncpg prepared, or
    sqlite3 in this thread), nothing else running beside it, then explained.
    """
    try:
        if backend == "postgresql":
            plan, alone = asyncio.run(_explain_postgresql(target, sql, arguments, runs))
        else:
            plan, alone = _explain_sqlite(target, sql, arguments, runs)
        return {"plan": plan, "alone_median_ms": alone}
    except Exception as why:  # a plan we cannot read is recorded, not fatal
        return {"plan": f"EXPLAIN failed: {type(why).__name__}: {why}", "alone_median_ms": None}


def measure(backend: str, url: str, explain_target: str, settings: dict[str, Any],
            headers: dict[str, str], requests: Sequence[Request], warmup: int, runs: int,
            explain_over_ms: float) -> dict[str, Any]:
    """Round trips and statement times per request, and the plans of the slow statements.

    Every request carries ``headers`` (the token, and the encoding asked for).

    Returns ``requests`` (per name: round trips, request and driver-time
    medians, every statement's median, slowest first, with the arguments of
    the slowest), ``sql`` (each text once, by ``sql_id``) and ``plans``
    (statements over ``explain_over_ms``, with their arguments, plan and
    median alone).
    """
    measured, calls = asyncio.run(_measure(url, settings, headers, requests, warmup, runs))
    texts: dict[str, str] = {}
    slow: dict[tuple[str, str], dict[str, Any]] = {}
    for name, made in calls.items():
        row = measured[name]
        trips = Counter(len(run) for run in made)
        row["round_trips"] = trips.most_common(1)[0][0] if trips else 0
        row["round_trips_seen"] = sorted(trips)
        row["driver_median_ms"] = statistics.median(
            sum(call.ms for call in run) for run in made) if made else 0.0
        statements = []
        for sql, occurrence, runs_of in _statements(made):
            texts[sql_id(sql)] = sql
            median = statistics.median(call.ms for call in runs_of)
            last = runs_of[-1].arguments
            statements.append({"sql_id": sql_id(sql), "occurrence": occurrence,
                               "runs": len(runs_of), "median_ms": median,
                               "max_ms": max(call.ms for call in runs_of),
                               "arguments": jsonable(list(last))})
            if median > explain_over_ms:
                key = (sql_id(sql), repr(last))
                plan = slow.setdefault(key, {"sql_id": sql_id(sql), "arguments": last,
                                             "median_ms": median, "requests": []})
                plan["median_ms"] = max(plan["median_ms"], median)
                plan["requests"].append(name)
        statements.sort(key=lambda s: -s["median_ms"])
        # Arguments are kept for the slowest statement only (a series' spans are long).
        for statement in statements[1:]:
            del statement["arguments"]
        row["statements"] = statements
        row["slowest_ms"] = statements[0]["median_ms"] if statements else None
    plans = [{**plan, "arguments": jsonable(list(plan["arguments"])),
              **explain(backend, explain_target, texts[plan["sql_id"]], plan["arguments"],
                        runs)}
             for plan in sorted(slow.values(), key=lambda p: -p["median_ms"])]
    return {"runs": runs, "warmup": warmup, "explain_over_ms": explain_over_ms,
            "requests": measured, "sql": texts, "plans": plans}
