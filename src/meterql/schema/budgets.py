"""Types of budgets and their alerts (the rules: ``meterql.budgets``)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from meterql.budgets import Measure, Period, Scope, Status
from meterql.schema.paging import PageInfo
from meterql.schema.scalars import BudgetAmount, OffsetDateTime

BudgetScope = strawberry.enum(
    Scope, name="BudgetScope", description="What a budget limits: the whole account, one "
    "instance, or one model.",
)
BudgetMeasure = strawberry.enum(
    Measure, name="BudgetMeasure", description="What a budget counts: estimated cost in USD "
    "(COST), tokens in and out (TOKENS), or requests (REQUESTS).",
)
BudgetPeriod = strawberry.enum(
    Period, name="BudgetPeriod", description="What a budget's spent is counted over, in its "
    "time zone: the plan's billing period (as the local dates it covers: from its start's "
    "date through the date before its end), or a calendar day, ISO week (from Monday) or "
    "month.",
)
BudgetStatus = strawberry.enum(
    Status, name="BudgetStatus", description="EXCEEDED from the limit on, WARNING from the "
    "lowest threshold on, else OK.",
)


@strawberry.type(description="A limit on what the account, one instance or one model spends "
                 "in a period, and where the current period stands against it.")
class Budget:
    id: strawberry.ID
    name: str
    scope: BudgetScope  # type: ignore[valid-type]
    instance_id: str | None = strawberry.field(description="The instance, for INSTANCE scope.")
    model: str | None = strawberry.field(description="The model, for MODEL scope.")
    measure: BudgetMeasure  # type: ignore[valid-type]
    limit: BudgetAmount
    period: BudgetPeriod  # type: ignore[valid-type]
    time_zone: str
    thresholds: list[int] = strawberry.field(
        description="Percentages of the limit that alert when crossed, ascending."
    )
    period_start: OffsetDateTime = strawberry.field(
        description="The current period's first instant, in the budget's zone."
    )
    period_end: OffsetDateTime = strawberry.field(
        description="The first instant after the current period."
    )
    spent: BudgetAmount = strawberry.field(
        description="Spent in the current period: `usage`'s total of the scope over the "
        "period's local dates, from the same rollups."
    )
    remaining: BudgetAmount = strawberry.field(description="The limit less spent, never below 0.")
    percent_used: float = strawberry.field(description="100 × spent / limit, 2 places.")
    forecast: BudgetAmount = strawberry.field(
        description="Spent at the period's end if it goes on as so far: spent × the period's "
        "length / the time elapsed in it (whole quarter hours; linear, nothing more). The "
        "spent itself once the period is over."
    )
    status: BudgetStatus  # type: ignore[valid-type]
    thresholds_crossed: list[int] = strawberry.field(
        description="The thresholds the current period's spent has reached."
    )
    created_at: datetime


@strawberry.input(description="A new budget.")
class BudgetInput:
    measure: BudgetMeasure  # type: ignore[valid-type]
    limit: BudgetAmount = strawberry.field(
        description='USD for COST (at most 4 places, e.g. "250.00"), else a whole number.'
    )
    scope: BudgetScope = Scope.ACCOUNT  # type: ignore[valid-type]
    instance_id: str | None = strawberry.field(
        default=None, description="For INSTANCE scope: one of the account's instances."
    )
    model: str | None = strawberry.field(default=None, description="For MODEL scope.")
    period: BudgetPeriod = Period.BILLING_PERIOD  # type: ignore[valid-type]
    time_zone: str = strawberry.field(default="UTC", description="An IANA time zone.")
    thresholds: list[int] | None = strawberry.field(
        default=None, description="Whole percentages, 1..1000, at most 10; 50, 80 and 100 "
        "when left out."
    )
    name: str | None = strawberry.field(default=None, description="At most 200 characters.")


@strawberry.input(description="What to change in a budget; what is left out stays. A new "
                  "limit or new thresholds re-arm the thresholds above the current spent, and "
                  "fire nothing themselves. Scope, measure, period and zone are the budget's "
                  "identity: make another budget to change them.")
class BudgetChanges:
    limit: BudgetAmount | None = None
    thresholds: list[int] | None = None
    name: str | None = None


@strawberry.type(description="A threshold a budget crossed in one of its periods, recorded "
                 "once, by the batch of usage that crossed it.")
class BudgetAlert:
    id: strawberry.ID
    budget_id: strawberry.ID
    budget_name: str | None = strawberry.field(
        description="The budget's name now; null once the budget is deleted."
    )
    scope: BudgetScope | None  # type: ignore[valid-type]
    instance_id: str | None
    model: str | None
    measure: BudgetMeasure  # type: ignore[valid-type]
    threshold: int = strawberry.field(description="The percentage crossed.")
    limit: BudgetAmount = strawberry.field(description="The limit when it was crossed.")
    spent: BudgetAmount = strawberry.field(
        description="The period's spent right after the batch that crossed it."
    )
    period_start: datetime
    period_end: datetime
    created_at: datetime


@strawberry.type
class BudgetAlertEdge:
    cursor: str = strawberry.field(description="Pass as `after` for the older alerts.")
    node: BudgetAlert


@strawberry.type(description="A page of the account's alerts, newest first.")
class BudgetAlertConnection:
    edges: list[BudgetAlertEdge]
    page_info: PageInfo
    total_count: int
