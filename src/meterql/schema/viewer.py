"""``viewer``: the token's account as a graph, so one query renders a whole page.

Everything under ``viewer`` is the account's own; the shared catalogue of
tiers is the root field ``plans`` (one query may ask for both). The flat
root fields of the /v1 routes stay as they are, beside it.
"""

from __future__ import annotations

import strawberry
from strawberry import Info

from meterql.context import Context
from meterql.resolvers import budgets as budget_resolvers
from meterql.resolvers import usage as usage_resolvers
from meterql.resolvers import viewer as resolvers
from meterql.resolvers import webhooks as webhook_resolvers
from meterql.schema.billing import Plan
from meterql.schema.budgets import Budget, BudgetAlertConnection
from meterql.schema.nodes import AccountSubscription, InstanceConnection, Model, WebhostNode
from meterql.schema.usage import Usage
from meterql.schema.webhooks import Webhook, WebhookDeliveryConnection


@strawberry.type(description="The account the token belongs to, and what it has.")
class Viewer:
    account_id: str
    instances: InstanceConnection = strawberry.field(
        resolver=resolvers.instances,
        description="The account's instances, a page at a time, in instance id order.",
    )
    models: list[Model] = strawberry.field(
        resolver=resolvers.models,
        description="Every model the account has usage of, by name, with its current price.",
    )
    plan: Plan = strawberry.field(
        resolver=resolvers.plan,
        description="The primary subscription and its tier, or the free defaults: "
        "the same as `billing.plan`.",
    )
    subscriptions: list[AccountSubscription] = strawberry.field(
        resolver=resolvers.subscriptions,
        description="Every subscription, live or not: live first, then latest period first, "
        "then tier id. `plan.tierId` names the primary one.",
    )
    webhost_nodes: list[WebhostNode] = strawberry.field(
        resolver=resolvers.webhost_nodes, description="The account's hosting nodes, by node id."
    )
    budgets: list[Budget] = strawberry.field(
        resolver=budget_resolvers.viewer_budgets,
        description="Every budget of the account (its own, its instances', its models'), "
        "oldest first, with where its current period stands.",
    )
    alerts: BudgetAlertConnection = strawberry.field(
        resolver=budget_resolvers.viewer_alerts,
        description="The thresholds the account's budgets crossed, newest first.",
    )
    webhooks: list[Webhook] = strawberry.field(
        resolver=webhook_resolvers.viewer_webhooks,
        description="Where the account's alerts are sent, oldest first.",
    )
    webhook_deliveries: WebhookDeliveryConnection = strawberry.field(
        resolver=webhook_resolvers.viewer_deliveries,
        description="Every alert sent to every webhook, and how it went, newest first.",
    )
    usage: Usage = strawberry.field(
        resolver=usage_resolvers.usage,
        description="The account's usage: the same as the root `usage`, beside the account's "
        "instances' and models' own.",
    )


def resolve_viewer(info: Info[Context, None]) -> Viewer:
    context = info.context.require("read")
    return Viewer(account_id=context.account_id)

