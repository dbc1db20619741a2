"""One tenant must not be able to stop the service for everyone.

Cheap requests that once cost everyone: oversized ``usage`` answers sized
only after they were computed, documents whose validation doubled with each
fragment, uploads that held a database connection while the client
trickled or went away. Each test asserts on counts (statements run, points
charged, connections lent) and allows wall-clock time only generously.
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import UsageEventRecord
from tests.conftest import NOW, StatementCounter
from tests.golden import ACME_INGEST_TOKEN, auth, busy_account, seed

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


async def _ask(settings: Settings, db: Database, points: int, query: str, token: str) -> Any:
    app = create_app(settings.model_copy(update={"graphql_max_series_points": points}),
                     database=db, clock=lambda: NOW)
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
