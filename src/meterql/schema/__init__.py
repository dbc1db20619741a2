"""The one GraphQL schema: root fields, scalars and extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLInputObjectType, GraphQLObjectType, get_named_type
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import ExecutionContext

from meterql.resolvers import billing as billing_resolvers
from meterql.resolvers import budgets as budget_resolvers
from meterql.resolvers import catalogue as catalogue_resolvers
from meterql.resolvers import ingest as ingest_resolvers
from meterql.resolvers import metrics as metrics_resolvers
from meterql.resolvers import usage as usage_resolvers
from meterql.resolvers import webhooks as webhook_resolvers
from meterql.schema.billing import Billing, BillingUsage, TrialStatus, UsageChart
from meterql.schema.budgets import Budget
from meterql.schema.catalogue import Tier
from meterql.schema.errors import MaskUnexpected, hide_suggestions, log_unexpected
from meterql.schema.execution import LeafFastExecutionContext
from meterql.schema.ingest import RecordUsageResult, UsageEventInput
from meterql.schema.limits import GraphQLLimits
from meterql.schema.metrics import (
    InstanceUsageList,
    MetricsSummary,
    ModelBreakdown,
    UsageTimeseries,
)
from meterql.schema.operations import RecordOperation
from meterql.schema.scalars import SCALAR_MAP
from meterql.schema.usage import Usage
from meterql.schema.viewer import Viewer, resolve_viewer
from meterql.schema.webhooks import CreatedWebhook, WebhookDelivery

GRAPHQL_CACHE_SIZE = 256  # distinct query texts kept parsed and validated


@strawberry.type
class Query:
    metrics_summary: MetricsSummary = strawberry.field(
        resolver=metrics_resolvers.metrics_summary,
        description="Totals over the last `days` (7..90).",
    )
    instance_usage: InstanceUsageList = strawberry.field(
        resolver=metrics_resolvers.instance_usage,
        description="Usage per instance over `days` (7..90).",
    )
    model_breakdown: ModelBreakdown = strawberry.field(
        resolver=metrics_resolvers.model_breakdown,
        description="Usage per model over `days` (7..90).",
    )
    usage_timeseries: UsageTimeseries = strawberry.field(
        resolver=metrics_resolvers.usage_timeseries,
        description="Daily usage over `days` (7..90).",
    )
    billing: Billing = strawberry.field(
        resolver=billing_resolvers.billing, description="The plan and the billing period's usage."
    )
    trial_status: TrialStatus = strawberry.field(resolver=billing_resolvers.trial_status)
    billing_usage: BillingUsage = strawberry.field(
        resolver=billing_resolvers.billing_usage,
        description="The billing period's usage against the allowance, per instance.",
    )
    usage_chart: UsageChart = strawberry.field(
        resolver=billing_resolvers.usage_chart,
        description="Daily usage over `days` (1..366), of the account or one instance.",
    )
    # The graph (docs/graphql.md): the account's own data, and the catalogue.
    viewer: Viewer = strawberry.field(
        resolver=resolve_viewer,
        description="The token's account and what it has: plan, subscriptions, instances...",
    )
    plans: list[Tier] = strawberry.field(
        resolver=catalogue_resolvers.plans,
        description="The tier catalogue, the same for every account: cheapest first, then id.",
    )
    usage: Usage = strawberry.field(
        resolver=usage_resolvers.usage,
        description="Usage over local dates in any time zone: totals, per group, and a "
        "zero-filled series by hour, day, ISO week or month.",
    )


@strawberry.type
class Mutation:
    record_usage: RecordUsageResult = strawberry.field(
        resolver=ingest_resolvers.record_usage,
        description="Record usage events (ingest scope). A batch is all-or-nothing; "
        "an event id already known is a duplicate, never counted twice.",
    )
    create_budget: Budget = strawberry.field(
        resolver=budget_resolvers.create_budget,
        description="Make a budget (manage scope). Thresholds its current period has already "
        "crossed fire nothing.",
    )
    update_budget: Budget = strawberry.field(
        resolver=budget_resolvers.update_budget,
        description="Change a budget's limit, thresholds or name (manage scope).",
    )
    delete_budget: bool = strawberry.field(
        resolver=budget_resolvers.delete_budget,
        description="Delete a budget (manage scope); its alerts stay. False if there was none.",
    )
    create_webhook: CreatedWebhook = strawberry.field(
        resolver=webhook_resolvers.create_webhook,
        description="Send the account's alerts to `url` (manage scope), signed with the "
        "secret this returns once. http(s) only; loopback and private addresses are refused "
        "unless the server allows them.",
    )
    delete_webhook: bool = strawberry.field(
        resolver=webhook_resolvers.delete_webhook,
        description="Delete a webhook (manage scope); its pending deliveries fail. False if "
        "there was none.",
    )
    redeliver: WebhookDelivery = strawberry.field(
        resolver=webhook_resolvers.redeliver,
        description="Send a delivery again (manage scope): due now, with a new day of attempts.",
    )


class MeterqlSchema(strawberry.Schema):
    def __init__(self, *args: Any, limits: GraphQLLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        if not self.limits.introspection:
            hide_suggestions(errors)
        log_unexpected(errors, execution_context)


def build_schema(
    execution_context_class: type[Any] = LeafFastExecutionContext,
    *,
    limits: GraphQLLimits | None = None,
    raw_ingest: bool = True,
    **kwargs: Any,
) -> MeterqlSchema:
    """The schema; ``raw_ingest=False`` leaves ``recordUsage`` to Strawberry (for tests)."""
    limits = limits or GraphQLLimits()
    schema = MeterqlSchema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(
            scalar_map=SCALAR_MAP,  # type: ignore[arg-type]
            batching_config={"max_operations": limits.max_batch} if limits.max_batch else None,
        ),
        # Factories, so each operation gets fresh extension instances. The
        # limits run as validation rules, before anything executes. The caches
        # (module-level LRUs, bounded) spare a frontend's repeated queries
        # their parse and validation, as the /v1 documents are spared; they
        # key on the parse options and validation rules, so limits still hold.
        extensions=[
            MaskUnexpected,
            RecordOperation,
            *limits.extensions(),
            lambda: ParserCache(maxsize=GRAPHQL_CACHE_SIZE),
            lambda: ValidationCache(maxsize=GRAPHQL_CACHE_SIZE),
        ],
        execution_context_class=execution_context_class,
        limits=limits,
        **kwargs,
    )
    if raw_ingest:
        _resolve_record_usage_in_graphql_core(schema)
    _resolve_plain_fields_directly(schema)
    _resolve_usage_in_graphql_core(schema)
    return schema


def _resolve_usage_in_graphql_core(schema: strawberry.Schema) -> None:
    """Every ``usage`` field resolved by graphql-core itself (``resolvers/usage.py``)."""
    types = schema._schema.type_map
    for type_name, node_of in (
        ("Query", None), ("Viewer", None),
        ("Instance", lambda instance: (usage_resolvers.INSTANCE_NODE, str(instance.id))),
        ("Model", lambda model: (usage_resolvers.MODEL_NODE, model.name)),
    ):
        graphql_type = types[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        graphql_type.fields["usage"].resolve = usage_resolvers.graphql_resolver(node_of)


def _resolve_plain_fields_directly(schema: strawberry.Schema) -> None:
    """Fields that are an attribute of their object, or a method taking nothing else,
    read directly by graphql-core.

    ``Usage.totals`` (and ``groups``, ``series``) are made when asked for; a
    page asks for the totals of seventy usages, and Strawberry's resolver
    machinery (its ``Info``, argument conversion, awaitable checks) cost ten
    times the method itself each time; an attribute, several times a
    ``getattr``. Fields with extensions of their own keep Strawberry's.
    """
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for field in graphql_type.fields.values():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is None or definition.extensions:
                continue
            resolver = definition.base_resolver
            if resolver is None:
                field.resolve = _attribute(definition.python_name)
            elif not (
                resolver.is_async or resolver.arguments or resolver.info_parameter
                or resolver.root_parameter or resolver.self_parameter is None
            ):
                field.resolve = _method(resolver.wrapped_func)


def _method(method: Any) -> Any:
    def resolve(source: Any, _info: Any) -> Any:
        return method(source)

    # What the executor's shortcut calls instead, with the object alone.
    resolve.plain_method = method  # type: ignore[attr-defined]
    return resolve


def _attribute(name: str) -> Any:
    def resolve(source: Any, _info: Any) -> Any:
        return getattr(source, name)

    # As Strawberry marks its own: the executor's leaf shortcut looks for it.
    resolve._is_default = True  # type: ignore[attr-defined]
    return resolve


def _resolve_record_usage_in_graphql_core(schema: strawberry.Schema) -> None:
    field = schema._schema.mutation_type.fields["recordUsage"]  # type: ignore[union-attr]
    event_type = get_named_type(field.args["events"].type)
    assert isinstance(event_type, GraphQLInputObjectType)
    definition = UsageEventInput.__strawberry_definition__  # type: ignore[attr-defined]
    python_names = {
        schema.config.name_converter.from_field(f): f.python_name for f in definition.fields
    }
    assert set(python_names) == set(event_type.fields), "UsageEventInput fields drifted"
    field.resolve = ingest_resolvers.raw_resolver(python_names)
