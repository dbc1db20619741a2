"""``usage(...)`` on ``viewer``, ``Instance`` and ``Model``: exact, zero-filled, batched.

A node's usage must be what the account's usage says of it (the root
field's group for that instance or model, bucket by bucket), must cost one
statement per distinct arguments whatever the number of nodes, and must
refuse bad arguments as the root field does.
"""

from __future__ import annotations

import gc
import random
import warnings
from datetime import date
from typing import Any

import httpx
import pytest

from meterql.buckets import Granularity
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.db.series import GroupBy
from meterql.money import format_usd, nanos_to_usd
from meterql.queries import page_query
from meterql.records import (
    AccountRecord,
    InstanceRecord,
    UsageEventRecord,
)
from meterql.schema import build_schema
from tests.conftest import NOW, StatementCounter
from tests.golden import auth, busy_account, seed
from tests.test_usage import (
    ACCOUNT,
    INSTANCES,
    MODELS,
    _context,
    _events,
    _random_query,
    _reference,
    _seed,
    _stored,
)

MEASURES = "requests tokensIn tokensOut totalTokens estimatedCostUsd"
USAGE_FIELDS = (f"from to timeZone granularity groupBy start end totals {{ {MEASURES} }} "
                f"groups {{ key {MEASURES} }} series {{ start end date label {MEASURES} "
                f"groups {{ key {MEASURES} }} }}")
IDLE = "inst-idle"  # an instance of the account that never had usage


# --- exactness: a node's usage is the account's usage of that node ---------------------------


NESTED = """query ($range: DateRange, $tz: String!, $g: Granularity!, $by: UsageGroupBy) {
  usage(range: $range, tz: $tz, granularity: $g, groupBy: $split) { FIELDS }
  viewer {
    instances(first: 100) { edges { node { id
      usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { FIELDS } } } }
    models { name usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { FIELDS } }
  }
}"""


def _as_group(node_usage: dict[str, Any]) -> dict[str, Any]:
    """An ungrouped node answer's numbers, shaped as its group of the root answer."""
    return {
        "totals": node_usage["totals"],
        "series": [{k: v for k, v in b.items() if k != "groups"} for b in node_usage["series"]],
    }


def _group_of(root: dict[str, Any], key: str) -> dict[str, Any]:
    """The root answer's group ``key`` (zeros if absent), per bucket."""
    zero = {"requests": 0, "tokensIn": 0, "tokensOut": 0, "totalTokens": 0,
            "estimatedCostUsd": "0.0000"}
    totals = next((g for g in root["groups"] if g["key"] == key), None)
    series = []
    for bucket in root["series"]:
        group = next((g for g in bucket["groups"] if g["key"] == key), None)
        series.append({**{k: bucket[k] for k in ("start", "end", "date", "label")},
                       **({k: v for k, v in group.items() if k != "key"} if group else zero)})
    return {"totals": {k: v for k, v in totals.items() if k != "key"} if totals else zero,
            "series": series}


async def _account_with_idle_instance(db: Database, seed_events: list[UsageEventRecord]) -> None:
    await _seed(db, seed_events)
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id=ACCOUNT, instances=[InstanceRecord(instance_id=IDLE)]))


async def test_each_node_equals_its_group_of_the_account_usage(
    db: Database, settings: Settings
) -> None:
    rng = random.Random(18)
    await _account_with_idle_instance(db, _events(rng, 1_500))
    schema = build_schema()
    queries = [_random_query(rng) for _ in range(12)]
    # ... and the cases that read most differently: hours off the UTC hour, weeks.
    queries += [(date(2026, 3, 26), date(2026, 3, 30), "Asia/Kathmandu", Granularity.HOUR, None),
                (date(2026, 9, 1), date(2026, 11, 20), "Pacific/Chatham", Granularity.WEEK,
                 None)]
    for first, last, zone, granularity, _ in queries:
        for split, field in ((GroupBy.INSTANCE, "instances"), (GroupBy.MODEL, "models")):
            query = NESTED.replace("FIELDS", USAGE_FIELDS).replace("$split", split.value)
            result = await schema.execute(query, variable_values={
                "range": {"from": first.isoformat(), "to": last.isoformat()}, "tz": zone,
                "g": granularity.value, "by": None,
            }, context_value=_context(db, settings))
            assert result.errors is None, result.errors
            assert result.data is not None
            root, viewer = result.data["usage"], result.data["viewer"]
            nodes = ({e["node"]["id"]: e["node"]["usage"] for e in viewer["instances"]["edges"]}
                     if field == "instances" else {m["name"]: m["usage"] for m in viewer["models"]})
            # The instances and IDLE; the priced models and the unpriced one.
            assert len(nodes) == len(INSTANCES if field == "instances" else MODELS) + 1, nodes
            where = (first, last, zone, granularity, split)
            for key, usage in nodes.items():
                assert _as_group(usage) == _group_of(root, key), (where, key)
                assert (usage["from"], usage["to"], usage["timeZone"], usage["groupBy"]) == (
                    root["from"], root["to"], root["timeZone"], None)
                assert usage["groups"] == [] and all(b["groups"] == [] for b in usage["series"])
            # A node without usage in the range has a whole series of zeros.
            assert len(nodes.get(IDLE, root)["series"]) == len(root["series"])


async def test_grouped_node_usage_equals_a_recount_of_its_events(
    db: Database, settings: Settings
) -> None:
    """``instance.usage(groupBy: MODEL)``, ``model.usage(groupBy: INSTANCE)``...: two keys."""
    rng = random.Random(81)
    await _account_with_idle_instance(db, _events(rng, 1_200))
    events = await _stored(db)
    schema = build_schema()
    query = NESTED.replace("FIELDS", USAGE_FIELDS).replace("$split", "null")
    for n in range(10):
        first, last, zone, granularity, _ = _random_query(rng)
        group_by = list(GroupBy)[n % 3]
        result = await schema.execute(query, variable_values={
            "range": {"from": first.isoformat(), "to": last.isoformat()}, "tz": zone,
            "g": granularity.value, "by": group_by.value,
        }, context_value=_context(db, settings))
        assert result.errors is None, result.errors
        assert result.data is not None
        viewer = result.data["viewer"]
        nodes = [("instance_id", e["node"]["id"], e["node"]["usage"])
                 for e in viewer["instances"]["edges"]]
        nodes += [("model", m["name"], m["usage"]) for m in viewer["models"]]
        for column, key, usage in nodes:
            mine = [e for e in events if e[column] == key]
            keys, sums = _reference(mine, first, last, zone, granularity, group_by)
            groups = sorted(g for g, v in sums.items() if v)
            where = (first, last, zone, granularity, group_by, key)
            assert usage["groupBy"] == group_by.value
            assert [g["key"] for g in usage["groups"]] == groups, where
            assert len(usage["series"]) == len(keys), where
            for bucket_key, bucket in zip(keys, usage["series"], strict=True):
                assert [g["key"] for g in bucket["groups"]] == groups, where
                for group in bucket["groups"]:
                    cell = sums[group["key"]].get(bucket_key, [0, 0, 0, 0])
                    assert [group["requests"], group["tokensIn"], group["tokensOut"],
                            group["estimatedCostUsd"]] == [
                        *cell[:3], format_usd(nanos_to_usd(cell[3]))], where
            total = [sum(c[i] for v in sums.values() for c in v.values()) for i in range(4)]
            assert [usage["totals"]["requests"], usage["totals"]["tokensIn"],
                    usage["totals"]["tokensOut"]] == total[:3], where


async def test_viewer_usage_is_the_root_usage(client: httpx.AsyncClient, db: Database) -> None:
    await seed(db)
    for arguments in ["", '(days: 7, tz: "Asia/Kolkata", groupBy: MODEL)',
                      '(range: {from: "2026-11-01", to: "2026-11-20"}, granularity: WEEK, '
                      "groupBy: PROVIDER)"]:
        response = await client.post("/graphql", json={"query": (
            f"{{ usage{arguments} {{ {USAGE_FIELDS} }} "
            f"viewer {{ usage{arguments} {{ {USAGE_FIELDS} }} }} }}")}, headers=auth())
        body = response.json()
        assert "errors" not in body, body
        assert body["data"]["viewer"]["usage"] == body["data"]["usage"], arguments
        assert body["data"]["usage"]["totals"]["requests"] > 0


async def test_a_node_without_usage_is_zero_filled(client: httpx.AsyncClient, db: Database) -> None:
    await seed(db)
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id="acme", instances=[InstanceRecord(instance_id="inst-zzz-new")]))
    response = await client.post("/graphql", json={"query": """{ viewer { instances {
        edges { node { id
          plain: usage(days: 3) { totals { requests estimatedCostUsd } series { date requests } }
          grouped: usage(days: 3, groupBy: MODEL) { groups { key } series { groups { key } } }
        } } } } }"""}, headers=auth())
    body = response.json()
    assert "errors" not in body, body
    node = body["data"]["viewer"]["instances"]["edges"][-1]["node"]
    assert node == {
        "id": "inst-zzz-new",
        "plain": {"totals": {"requests": 0, "estimatedCostUsd": "0.0000"},
                  "series": [{"date": d, "requests": 0}
                             for d in ("2026-11-18", "2026-11-19", "2026-11-20")]},
        "grouped": {"groups": [], "series": [{"groups": []}] * 3},
    }


# --- errors: the same as the root field's ----------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('(tz: "Mars/Olympus")', "tz: Unknown time zone"),
        ("(days: 0)", "days: Input should be greater than or equal to 1"),
        ('(range: {from: "2026-01-02", to: "2026-01-01"})', "range.to: Must not be before"),
        ('(range: {from: "2026-01-01", to: "2026-01-02"}, days: 7)',
         "days: Give either range or days, not both"),
    ],
)
@pytest.mark.parametrize("where", ["instances", "models", "viewer"])
async def test_bad_arguments_are_refused_as_on_the_root_field(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, arguments: str,
    message: str, where: str,
) -> None:
    await seed(db)
    field = f"usage{arguments} {{ totals {{ requests }} }}"
    query = {
        "instances": f"{{ viewer {{ instances {{ edges {{ node {{ id {field} }} }} }} }} }}",
        "models": f"{{ viewer {{ models {{ name {field} }} }} }}",
        "viewer": f"{{ viewer {{ {field} }} }}",
    }[where]
    root = (await client.post("/graphql", json={"query": f"{{ {field} }}"},
                              headers=auth())).json()
    sql.reset()
    await client.post("/graphql", json={"query": query.replace(field, "__typename")},
                      headers=auth())
    without_usage = sql.count
    sql.reset()
    body = (await client.post("/graphql", json={"query": query}, headers=auth())).json()
    assert body["data"] is None
    assert body["errors"], body
    for error in body["errors"]:
        assert error["message"].startswith(message), error
        assert error["message"] == root["errors"][0]["message"]
        assert error["extensions"] == root["errors"][0]["extensions"]
        assert error["path"][-1] == "usage"
    # Refused before any usage is read.
    assert sql.count == without_usage, sql.statements


# --- cost: one statement per distinct arguments, never per node ------------------------------


INSTANCES_PAGE = """{ viewer { instances(first: 50) { edges { node { id
  usage(days: 30) { totals { requests } series { date requests } } } } } } }"""
MODELS_PAGE = """{ viewer { models { name
  usage(days: 7, tz: "Europe/Berlin") { totals { requests } series { date requests } } } } }"""
# Two argument sets on aliases, and the first again spelled otherwise (the
# same resolved range: one key), and a grouping of another key.
MIXED_PAGE = """{ viewer {
  instances(first: 50) { edges { node { id
    a: usage(days: 30) { totals { requests } }
    b: usage(range: {from: "2026-10-22", to: "2026-11-20"}, tz: "UTC") { totals { requests } }
    c: usage(days: 7, tz: "Asia/Kolkata", granularity: HOUR) { totals { requests } }
    d: usage(days: 30, groupBy: MODEL) { groups { key requests } }
  } } }
  models { name
    a: usage(days: 7, tz: "Europe/Berlin") { totals { requests } }
    b: usage(days: 7, tz: "Europe/Berlin", groupBy: INSTANCE) { groups { key } }
  }
} }"""
# token, the page (or the models), then one statement per distinct arguments
# (and the count of groups grouped usage may have: one batch, or one per list
# when the two lists arrive in different ticks, so 9 or 10 for the mixed page):
COSTS = {"instances": (INSTANCES_PAGE, {3}), "models": (MODELS_PAGE, {3}),
         "mixed": (MIXED_PAGE, {1 + 2 + 3 + 2 + 1, 1 + 2 + 3 + 2 + 2})}


@pytest.mark.parametrize("page", list(COSTS))
async def test_nested_usage_costs_the_same_for_5_and_50_nodes(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, page: str
) -> None:
    query, statements = COSTS[page]
    counts = {}
    for n in (5, 50):
        token = await busy_account(db, f"acct-{n}", instances=n, models=n)
        sql.reset()
        response = await client.post("/graphql", json={"query": query}, headers=auth(token))
        body = response.json()
        assert "errors" not in body, body
        viewer = body["data"]["viewer"]
        nodes = viewer["models"] if "instances" not in viewer else viewer["instances"]["edges"]
        assert len(nodes) == n
        counts[n] = sql.count
        if page == "mixed":
            # The same range spelled twice is the same answer, from one read.
            for edge in viewer["instances"]["edges"]:
                assert edge["node"]["a"] == edge["node"]["b"]
                assert edge["node"]["a"]["totals"]["requests"] == sum(
                    g["requests"] for g in edge["node"]["d"]["groups"])
    assert {counts[5], counts[50]} <= statements, sql.statements


async def test_every_node_spends_the_request_points(settings: Settings, db: Database) -> None:
    # Two days of hours under each instance: 48 points a node. A budget of
    # exactly that for every instance answers; one point less refuses.
    from meterql.app import create_app

    await seed(db)
    query = ("{ viewer { instances { edges { node { id "
             "usage(days: 2, granularity: HOUR) { series { requests } } } } } } }")

    async def ask(points: int) -> Any:
        app = create_app(settings.model_copy(update={"graphql_max_series_points": points}),
                         database=db, clock=lambda: NOW)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
            return (await c.post("/graphql", json={"query": query}, headers=auth())).json()

    answered = await ask(1_000_000)
    edges = answered["data"]["viewer"]["instances"]["edges"]
    assert len(edges) >= 2
    assert all(len(e["node"]["usage"]["series"]) == 48 for e in edges)
    assert "errors" not in await ask(48 * len(edges))
    refused = await ask(48 * len(edges) - 1)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["BAD_USER_INPUT"]


# --- read ahead: a list answers its nodes' usage together, exactly as node by node ------------

# {usage} is replaced by a node's usage selection; the second form reaches the
# same fields through an inline fragment, which is never read ahead.
AHEAD_FORMS = (
    "{ viewer { instances(first: 50) { edges { node { id {usage} } } } models { name {usage} } } }",
    "{ viewer { instances(first: 50) { edges { node { ... on Instance { id {usage} } } } } "
    "models { ... on Model { name {usage} } } } }",
)


def _located_nowhere(body: dict[str, Any]) -> dict[str, Any]:
    """The answer with its errors' messages and codes alone.

    Their places in the query text differ by form; and which of several
    refused nodes is reported first (its path) is the order in which the
    lists happened to resolve, node by node as well.
    """
    errors = body.pop("errors", None)
    if errors is not None:
        body["errors"] = sorted((e["message"], e["extensions"]["code"]) for e in errors)
    return body


# A node's usage selection, and how many node fields answer on their own when
# read ahead and node by node (12 instances and 4 models: 16 nodes).
AHEAD_USAGES = {
    "days, zone, series": ('usage(days: 30, tz: "Asia/Kolkata") { totals { requests '
                           "estimatedCostUsd } series { label requests } }", 0, 16),
    "totals only": ('usage(days: 40, tz: "Europe/Berlin") { totals { totalTokens } }', 0, 16),
    # Instances grouped by model need the groups' counts first: node by node.
    "hours, grouped by model": ("usage(days: 2, granularity: HOUR, groupBy: MODEL) "
                                "{ groups { key requests } }", 12, 16),
    # One response key: graphql-core resolves it once a node, with both selections.
    "same key twice, series in the second": ("usage(days: 7) { totals { requests } } "
                                             "usage(days: 7) { series { requests } }", 0, 16),
    "two ranges": ("a: usage(days: 3) { totals { requests } } "
                   "b: usage(days: 30, granularity: WEEK) { series { label requests } }", 0, 32),
    "a zone refused": ('usage(days: 3, tz: "Mars/Olympus") { totals { requests } }', None, None),
}


@pytest.mark.parametrize(("usage", "ahead", "by_node"), AHEAD_USAGES.values(),
                         ids=list(AHEAD_USAGES))
async def test_reading_ahead_answers_as_node_by_node(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch, usage: str,
    ahead: int | None, by_node: int | None,
) -> None:
    from meterql.resolvers import usage as usage_resolvers

    token = await busy_account(db, "busy", instances=12, models=4)
    answer = usage_resolvers.answer
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls[-1] += 1
        return answer(*args)

    monkeypatch.setattr(usage_resolvers, "answer", counted)
    bodies = []
    for form in AHEAD_FORMS:
        calls.append(0)
        response = await client.post("/graphql", json={"query": form.replace("{usage}", usage)},
                                     headers=auth(token))
        bodies.append(_located_nowhere(response.json()))
    assert bodies[0] == bodies[1]
    if ahead is None:
        # Refused: nodes answer (and are refused) on their own, both ways,
        # until the first refusal nulls the answer.
        assert "errors" in bodies[0] and calls[0] > 0 and calls[1] > 0
    else:
        assert "errors" not in bodies[0], bodies[0]
        assert calls == [ahead, by_node]


@pytest.mark.parametrize("spare", [0, -1])
async def test_reading_ahead_spends_and_refuses_points_as_node_by_node(
    settings: Settings, db: Database, spare: int
) -> None:
    from meterql.app import create_app

    token = await busy_account(db, "busy", instances=6, models=2)
    usage = "usage(days: 2, granularity: HOUR) { series { requests } }"
    bodies = []
    for form in AHEAD_FORMS:
        app = create_app(settings.model_copy(
            update={"graphql_max_series_points": 48 * 8 + spare}), database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://meterql.test") as client:
            response = await client.post(
                "/graphql", json={"query": form.replace("{usage}", usage)}, headers=auth(token))
        bodies.append(_located_nowhere(response.json()))
    # 48 points a node, 8 nodes: exactly enough answers, one point less refuses.
    assert bodies[0]["data"] == bodies[1]["data"]
    if spare == 0:
        assert "errors" not in bodies[0] and "errors" not in bodies[1]
    else:
        # Which node runs out first, and whether another's batch was skipped
        # for it (which says the same refusal), is the order the lists
        # resolved in, node by node too: both ways, the refusal is said.
        for body in bodies:
            assert any(message.startswith("This request asks for more usage points")
                       for message, _code in body["errors"]), body


# --- a refusal leaves nothing behind ---------------------------------------------------------

# A page whose nodes' usage is refused, beside fields that read: graphql-core
# cancels the pending siblings of a field that fails inside a coroutine, and
# a sibling cancelled before it ran never awaits the coroutines it holds
# (a RuntimeWarning each, raised in the garbage collector).
METRICS_PAGE = page_query("metrics-page")
REFUSED_PAGES = {
    "a range refused": ('(range: {from: "2026-11-20", to: "2026-11-01"})', {}, 1_000_000),
    "the points run out": ("(days: 2, granularity: HOUR)", {}, 48 * 5),
    "grouped, the points run out": ("(days: 2, granularity: HOUR, groupBy: MODEL)", {}, 48 * 5),
    "the metrics page, a range refused": (
        None, {"days": None, "range": {"from": "2026-11-20", "to": "2026-11-01"}}, 1_000_000),
    "the metrics page, the points run out": (
        None, {"days": 3, "granularity": "HOUR"}, 100),
}


# Each node selection in both forms (plain, fragments); the page as it is.
REFUSED_CASES = [
    pytest.param(form, *case, id=f"{name}, {form_name}")
    for name, case in REFUSED_PAGES.items()
    for form, form_name in zip(AHEAD_FORMS, ("plain", "fragments"), strict=True)
    if case[0] is not None or form is AHEAD_FORMS[0]
]


@pytest.mark.parametrize(("form", "arguments", "variables", "points"), REFUSED_CASES)
async def test_a_refused_page_leaves_no_coroutine_unawaited(
    settings: Settings, db: Database, form: str, arguments: str | None,
    variables: dict[str, Any], points: int,
) -> None:
    from meterql.app import create_app

    token = await busy_account(db, "busy", instances=12, models=4)
    if arguments is None:
        query = METRICS_PAGE
    else:
        usage = f"usage{arguments} {{ totals {{ requests }} series {{ requests }} }}"
        query = form.replace("{ viewer {", "{ a: usage(days: 3) { totals { requests } } viewer { "
                             "usage(days: 4) { totals { requests } } ").replace("{usage}", usage)
    app = create_app(settings.model_copy(update={"graphql_max_series_points": points}),
                     database=db, clock=lambda: NOW)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://meterql.test") as client:
            for _ in range(5):
                body = (await client.post("/graphql", json={"query": query, "variables": variables},
                                          headers=auth(token))).json()
                assert body["errors"], body
                assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
