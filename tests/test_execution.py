"""The leaf fast path of the executor changes speed, never answers or errors."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from meterql.config import Settings
from meterql.context import Context
from meterql.db.accounts import TokenGrant
from meterql.db.engine import Database
from meterql.schema import build_schema
from meterql.schema.execution import LeafFastExecutionContext
from tests.conftest import NOW
from tests.golden import seed

EVERYTHING = """
query Everything($instance: String) {
  metricsSummary(days: 30) { totalRequests totalTokens estimatedCostUsd uniqueModels periodDays }
  instanceUsage(days: 30) { totalCount instances { instanceId hostname status requestCount
                                                    totalTokens estimatedCostUsd } }
  modelBreakdown(days: 30) { totalRequests models { model provider pctOfTotal tokensIn } }
  usageTimeseries(days: 30) { points { date requests tokensIn tokensOut estimatedCostUsd } }
  billing { plan { planName trialEndsAt trialDaysRemaining priceCents }
            subscribedTierIds usage { totalCostUsd uniqueEndUsers webhostNodes } }
  trialStatus { planName trialEndsAt trialExpired upgradeUrl }
  billingUsage { periodStart periodEnd tokenUsagePct byInstance { instanceId costUsd } }
  chart: usageChart(days: 14, instanceId: $instance) { periodLabel points { date cost: costUsd } }
  again: usageTimeseries(days: 7) { periodDays ...Points __typename }
}
fragment Points on UsageTimeseries { points { requests date } }
"""


class CountingSlowPath(LeafFastExecutionContext):
    """Counts the fields that take graphql-core's own path (each gets a resolve info)."""

    slow_fields = 0

    def build_resolve_info(self, *args: Any, **kwargs: Any) -> Any:
        type(self).slow_fields += 1
        return super().build_resolve_info(*args, **kwargs)


async def _run(db: Database, settings: Settings, executor: type[Any], **variables: Any) -> Any:
    context = Context(db=db, settings=settings, grant=TokenGrant("acme", frozenset({"read"})),
                      now=NOW)
    return await build_schema(executor).execute(
        EVERYTHING, context_value=context, variable_values=variables
    )


@pytest.mark.parametrize("instance", [None, "inst-a"])
async def test_answers_equal_graphql_core_own(
    db: Database, settings: Settings, instance: str | None
) -> None:
    await seed(db)
    fast = await _run(db, settings, LeafFastExecutionContext, instance=instance)
    plain = await _run(db, settings, StrawberryGraphQLCoreExecutionContext, instance=instance)
    assert fast.errors is None and plain.errors is None
    assert fast.data == plain.data
    assert fast.data["usageTimeseries"]["points"][-1]["requests"] > 0  # not all zeros


async def test_leaves_skip_per_field_execution(db: Database, settings: Settings) -> None:
    await seed(db)
    CountingSlowPath.slow_fields = 0
    result = await _run(db, settings, CountingSlowPath)
    assert result.errors is None
    leaves = sum(len(point) for point in result.data["usageTimeseries"]["points"])
    assert leaves == 150
    # Root fields and object-valued fields go through graphql-core; the 30
    # points' 150 leaves (and every other all-leaf object) do not.
    assert CountingSlowPath.slow_fields < 60
    # Nor on the document's next operations, which find its collections and
    # their plans kept.
    counts = []
    for _ in range(3):
        CountingSlowPath.slow_fields = 0
        again = await _run_document(db, settings, CountingSlowPath, EVERYTHING)
        assert again.errors is None and again.data == result.data
        counts.append(CountingSlowPath.slow_fields)
    assert counts[0] < 60 and counts == [counts[0]] * 3


# A series by model: every bucket an object of leaves and a list of groups.
BY_MODEL = """
query ByModel($stream: Boolean!) {
  usage(days: 30, tz: "Europe/Berlin", granularity: DAY, groupBy: MODEL) {
    totals { requests estimatedCostUsd }
    series {
      start end requests estimatedCostUsd
      groups @include(if: $stream) { key requests tokensIn estimatedCostUsd }
      again: groups { requests }
    }
  }
}
"""


@pytest.mark.parametrize("stream", [True, False])
async def test_objects_of_leaves_and_lists_complete_in_one_loop(
    db: Database, settings: Settings, stream: bool
) -> None:
    await seed(db)
    plain = await _run_document(db, settings, StrawberryGraphQLCoreExecutionContext, BY_MODEL,
                                stream=stream)
    assert plain.errors is None
    series = plain.data["usage"]["series"]
    assert len(series) == 30 and len(series[-1]["again"]) >= 2
    assert any(group["requests"] for bucket in series for group in bucket["again"])
    counts = []
    for _ in range(3):
        CountingSlowPath.slow_fields = 0
        fast = await _run_document(db, settings, CountingSlowPath, BY_MODEL, stream=stream)
        assert fast.errors is None and fast.data == plain.data
        counts.append(CountingSlowPath.slow_fields)
    # The root field, ``totals`` and ``series`` themselves: not a field of a
    # bucket or of a group (each bucket alone has four leaves and two lists).
    assert counts == [counts[0]] * 3 and counts[0] < 10


# A page's instances: plain fields beside ``usage``, which takes arguments.
INSTANCES = """
query Instances {
  viewer {
    instances(first: 50) {
      totalCount
      edges { node { id hostname status usage(days: 30) { from totals { requests } } } }
    }
  }
}
"""


async def test_plain_fields_of_an_object_with_arguments_skip_graphql_core(
    db: Database, settings: Settings
) -> None:
    await seed(db)
    plain = await _run_document(db, settings, StrawberryGraphQLCoreExecutionContext, INSTANCES)
    assert plain.errors is None
    edges = plain.data["viewer"]["instances"]["edges"]
    assert len(edges) >= 2
    assert any(edge["node"]["usage"]["totals"]["requests"] for edge in edges)
    CountingSlowPath.slow_fields = 0
    fast = await _run_document(db, settings, CountingSlowPath, INSTANCES)
    assert fast.errors is None and fast.data == plain.data
    # Per instance, only the edge's node and its ``usage`` (which takes
    # arguments) go graphql-core's way; its id, hostname, status, the usage's
    # ``from`` and ``totals`` (a method of the object) do not.
    assert CountingSlowPath.slow_fields == 4 + 2 * len(edges)


# Which subfields are collected depends on ``@include``/``@skip`` and their
# variables, on fragments and on type conditions: shared between operations,
# it must still follow each operation's variables.
DIRECTED = """
query Directed($byInstance: Boolean!, $points: Boolean = true, $days: Int!) {
  billingUsage { periodStart byInstance @include(if: $byInstance) { instanceId costUsd } }
  usageTimeseries(days: $days) { periodDays ...Points @skip(if: false) }
  again: usageTimeseries(days: 30) { points @include(if: $points) { date } }
}
fragment Points on UsageTimeseries { points @include(if: $points) { requests date } }
"""


@pytest.mark.parametrize("variables", [
    {"byInstance": True, "days": 7},
    {"byInstance": False, "days": 7},
    {"byInstance": True, "points": False, "days": 14},
    {"byInstance": False, "points": True, "days": 14},
])
async def test_shared_collection_follows_each_operations_directives(
    db: Database, settings: Settings, variables: dict[str, Any]
) -> None:
    await seed(db)
    # Every other case first, so this one finds the collections of others kept.
    for other in ({"byInstance": b, "points": p, "days": 7} for b in (True, False)
                  for p in (True, False)):
        assert (await _run_document(db, settings, LeafFastExecutionContext, DIRECTED,
                                    **other)).errors is None
    fast = await _run_document(db, settings, LeafFastExecutionContext, DIRECTED, **variables)
    plain = await _run_document(db, settings, StrawberryGraphQLCoreExecutionContext, DIRECTED,
                                **variables)
    assert fast.errors is None and plain.errors is None
    assert fast.data == plain.data
    assert ("byInstance" in fast.data["billingUsage"]) is variables["byInstance"]
    assert ("points" in fast.data["again"]) is variables.get("points", True)


async def _run_document(db: Database, settings: Settings, executor: type[Any], document: str,
                        **variables: Any) -> Any:
    context = Context(db=db, settings=settings, grant=TokenGrant("acme", frozenset({"read"})),
                      now=NOW)
    return await _SCHEMAS.setdefault(executor, build_schema(executor)).execute(
        document, context_value=context, variable_values=variables)


# One schema per executor for the module: its parser cache hands each
# execution of a document the same nodes, as in the app.
_SCHEMAS: dict[type[Any], Any] = {}


async def test_subfields_and_entries_are_made_once_per_document_and_directive_values(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphql.execution.executor as executor

    from meterql.schema import execution

    await seed(db)
    # How often subfields are collected, and how often a field's entry is made.
    made = {"collections": 0, "entries": 0}
    collect = executor.collect_subfields
    new_entry = LeafFastExecutionContext._new_entry

    def collecting(*args: Any, **kwargs: Any) -> Any:
        made["collections"] += 1
        return collect(*args, **kwargs)

    def entry(self: Any, *args: Any) -> Any:
        made["entries"] += 1
        return new_entry(self, *args)

    monkeypatch.setattr(executor, "collect_subfields", collecting)
    monkeypatch.setattr(LeafFastExecutionContext, "_new_entry", entry)
    # What other tests left does not count.
    monkeypatch.setattr(execution, "_SHARED_SUBFIELDS", {})
    monkeypatch.setattr(execution, "_SHARED_ENTRIES", {})

    async def run(**variables: Any) -> tuple[dict[str, int], Any]:
        made.update(collections=0, entries=0)
        result = await _run_document(db, settings, LeafFastExecutionContext, EVERYTHING_AGAIN,
                                     **variables)
        assert result.errors is None
        return dict(made), result.data

    first, with_points = await run(instance="inst-a", points=True)
    assert first["collections"] > 0 and first["entries"] > 0
    # A variable no directive reads changes nothing that is worked out.
    assert (await run(instance="inst-b", points=True))[0] == {"collections": 0, "entries": 0}
    # One that a directive reads gets its own, once for each value.
    again, without_points = await run(instance="inst-a", points=False)
    assert again["collections"] > 0 and again["entries"] > 0
    assert (await run(instance="inst-b", points=False))[0] == {"collections": 0, "entries": 0}
    # And each operation's answer follows its own directives.
    assert with_points != without_points
    assert (await run(instance="inst-a", points=True))[1] == with_points


EVERYTHING_AGAIN = EVERYTHING.replace(
    "query Everything($instance: String)", "query EverythingAgain($instance: String, $points: "
    "Boolean!)").replace("fragment Points on UsageTimeseries { points {",
                         "fragment Points on UsageTimeseries { points @include(if: $points) {")


@pytest.mark.parametrize(("document", "collecting"), [
    ("{ a { b } }", ()),
    ("query($x: Boolean!) { a @include(if: $x) { b @skip(if: true) } }", ("x",)),
    ("query($x: Boolean!) { ...F } fragment F on Q { a @skip(if: $x) }", ("x",)),
    ("{ a { ... @defer { b } } }", None),
    ("{ a @custom }", None),
])
def test_what_collecting_subfields_depends_on(
    document: str, collecting: tuple[str, ...] | None
) -> None:
    from graphql import OperationDefinitionNode, parse
    from graphql.execution.collect_fields import FragmentDetails

    from meterql.schema.execution import _collecting

    definitions = parse(document).definitions
    (operation,) = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: FragmentDetails(d) for d in definitions  # type: ignore[attr-defined]
                 if not isinstance(d, OperationDefinitionNode)}
    assert _collecting(operation, fragments) == collecting


@strawberry.type
class Item:
    name: str
    size: int | None


@strawberry.type
class _Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        # A None where the schema promises a string, and a size that is not an Int.
        return [Item(name="ok", size=None), Item(name=None, size=1),  # type: ignore[arg-type]
                Item(name="big", size=2**40)]


@strawberry.type
class Shelf:
    label: str
    items: list[Item | None]
    first: Item


@strawberry.type
class _Shelves:
    @strawberry.field
    def shelves(self) -> list[Shelf | None]:
        good = Item(name="ok", size=1)
        bad = Item(name=None, size=1)  # type: ignore[arg-type]
        return [Shelf(label="fine", items=[good, None], first=good),
                Shelf(label="bad item", items=[good, bad], first=good),
                Shelf(label="bad first", items=[good], first=bad),
                Shelf(label="no list", items=None, first=good)]  # type: ignore[arg-type]


def test_bad_values_in_nested_objects_give_graphql_core_errors() -> None:
    """A shelf whose item or first item fails falls back whole, and errors as graphql-core."""
    document = "{ shelves { label items { name size } first { name } } }"
    results = [strawberry.Schema(query=_Shelves, execution_context_class=executor)
               .execute_sync(document)
               for executor in (LeafFastExecutionContext, StrawberryGraphQLCoreExecutionContext)]
    fast, plain = ((r.data, sorted((e.path, e.message) for e in r.errors or [])) for r in results)
    assert fast == plain
    data, errors = fast
    # A bad item is null in its shelf's list; a bad first item or list is the shelf's end.
    assert data == {"shelves": [
        {"label": "fine", "items": [{"name": "ok", "size": 1}, None], "first": {"name": "ok"}},
        {"label": "bad item", "items": [{"name": "ok", "size": 1}, None],
         "first": {"name": "ok"}},
        None, None]}
    assert [path for path, _ in errors] == [["shelves", 1, "items", 1, "name"],
                                            ["shelves", 2, "first", "name"],
                                            ["shelves", 3, "items"]]


@pytest.mark.parametrize(
    "executor", [LeafFastExecutionContext, StrawberryGraphQLCoreExecutionContext]
)
def test_bad_values_give_graphql_core_errors(executor: type[Any]) -> None:
    schema = strawberry.Schema(query=_Query, execution_context_class=executor)
    result = schema.execute_sync("{ items { name size } }")
    assert result.data == {"items": [{"name": "ok", "size": None}, None, {"name": "big",
                                                                         "size": None}]}
    assert sorted((e.path, e.message.split(":")[0]) for e in result.errors or []) == [
        (["items", 1, "name"], "Cannot return null for non-nullable field Item.name."),
        (["items", 2, "size"], "Int cannot represent non 32-bit signed integer value"),
    ]


RECORD = """mutation($events: [UsageEventInput!]!) {
  recordUsage(events: $events) { accepted duplicates }
}"""


def _events(prefix: str, **patch: Any) -> list[dict[str, Any]]:
    return [
        {"eventId": f"{prefix}-{n}", "instanceId": "inst-a", "model": "gpt-4o",
         "timestamp": "2026-11-20T12:00:00Z", "tokensIn": 10 + n, "tokensOut": 5,
         "costUsd": "0.0000000015" if n == 1 else None, "endUserId": "u" if n else None,
         **patch}
        for n in range(3)
    ]


@pytest.mark.parametrize("raw_ingest", [True, False])
async def test_record_usage_resolved_by_either_library_answers_alike(
    db: Database, settings: Settings, raw_ingest: bool
) -> None:
    """graphql-core resolves recordUsage in production; Strawberry's own resolver agrees."""
    await seed(db)
    context = Context(db=db, settings=settings,
                      grant=TokenGrant("acme", frozenset({"read", "ingest"})), now=NOW)
    schema = build_schema(raw_ingest=raw_ingest)

    async def run(events: list[dict[str, Any]]) -> Any:
        return await schema.execute(RECORD, context_value=context,
                                    variable_values={"events": events})

    first = await run(_events("x"))
    again = await run(_events("x"))
    bad = await run(_events("y", tokensIn=-1))
    assert first.errors is None and again.errors is None
    assert first.data == {"recordUsage": {"accepted": 3, "duplicates": 0}}
    assert again.data == {"recordUsage": {"accepted": 0, "duplicates": 3}}
    assert bad.data is None and bad.errors is not None
    assert [e.message for e in bad.errors] == [
        "events.0.tokens_in: Input should be greater than or equal to 0"
    ]
    summary = await schema.execute("{ metricsSummary(days: 7) { totalRequests } }",
                                   context_value=context)
    assert summary.data == {"metricsSummary": {"totalRequests": 5 + 3}}


async def test_a_prevalidated_variable_reaches_the_resolver_as_it_is(
    db: Database, settings: Settings
) -> None:
    """What the REST layer validated is written without graphql-core coercing it again."""
    from meterql.ingest import validate_batch
    from meterql.schema.execution import Prevalidated

    await seed(db)
    context = Context(db=db, settings=settings,
                      grant=TokenGrant("acme", frozenset({"read", "ingest"})), now=NOW)
    schema = build_schema()
    records = validate_batch(
        [{"event_id": f"pre-{n}", "instance_id": "inst-a", "model": "gpt-4o",
          "timestamp": "2026-11-20T12:00:00Z", "tokens_in": 10, "tokens_out": 5}
         for n in range(2)],
        NOW, ("body",),
    )
    result = await schema.execute(RECORD, context_value=context,
                                  variable_values={"events": Prevalidated(records)})
    assert result.errors is None
    assert result.data == {"recordUsage": {"accepted": 2, "duplicates": 0}}
    # The operation's variable definitions are still checked: its placeholder
    # must fit the declared type.
    refused = await schema.execute(
        RECORD, context_value=context,
        variable_values={"events": Prevalidated(records, placeholder=[{"eventId": 1}])},
    )
    assert refused.data is None and refused.errors is not None
    assert refused.errors[0].message.startswith("Variable '$events' has invalid value")

