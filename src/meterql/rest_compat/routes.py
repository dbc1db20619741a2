"""The route table: one row per legacy ``/v1`` route."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meterql.buckets import Granularity
from meterql.db.series import GroupBy
from meterql.errors import InstanceNotFound, MeterqlError, PayloadTooLarge
from meterql.ingest import MAX_BODY_BYTES, validate_batch
from meterql.rest_compat.body import JsonBody
from meterql.rest_compat.params import (
    QueryParam,
    choice,
    days,
    local_date,
    optional_str,
    time_zone,
)
from meterql.schema.execution import Prevalidated
from meterql.windows import CHART_DAYS, METRICS_DAYS


@dataclass(frozen=True)
class CompatRoute:
    path: str
    document: str  # a file in rest_compat/documents/, whose root field is aliased `body`
    params: tuple[QueryParam, ...] = ()
    method: str = "GET"
    body: JsonBody | None = None
    # Checked before the body is read, so a read-only token never learns
    # whether its payload would have been valid.
    scope: str = "read"
    # Errors this route answers beyond every route's (401, 403, 422, 503),
    # for the OpenAPI document.
    answers: tuple[type[MeterqlError], ...] = ()
    # "text/csv": a streamed export (``rest_compat/export.py``), whose
    # document has one operation per step instead of one `body` answer.
    media_type: str = "application/json"


def _events(document: Any, now: datetime, horizon: datetime | None) -> Prevalidated:
    # Validated here, with FastAPI's ``body`` locations, and not again: the
    # executor hands the records to the resolver as they are.
    return Prevalidated(validate_batch(document, now, ("body",), horizon))


# Query-string values are GraphQL's enum values in lower case (as REST
# parameters go), matched case-sensitively as FastAPI matched an Enum.
GRANULARITIES = {g.value.lower(): g.value for g in Granularity}
GROUP_BYS = {g.value.lower(): g.value for g in GroupBy}

ROUTES: tuple[CompatRoute, ...] = (
    CompatRoute("/v1/metrics/summary", "metrics_summary.graphql", (days(METRICS_DAYS),)),
    CompatRoute("/v1/metrics/instances", "metrics_instances.graphql", (days(METRICS_DAYS),)),
    CompatRoute("/v1/metrics/models", "metrics_models.graphql", (days(METRICS_DAYS),)),
    CompatRoute("/v1/metrics/usage", "metrics_usage.graphql", (days(METRICS_DAYS),)),
    CompatRoute("/v1/billing", "billing.graphql"),
    CompatRoute("/v1/billing/trial-status", "billing_trial_status.graphql"),
    CompatRoute("/v1/billing/usage", "billing_usage.graphql"),
    CompatRoute(
        "/v1/billing/usage/chart",
        "billing_usage_chart.graphql",
        (days(CHART_DAYS), optional_str("instance_id", "instanceId")),
        answers=(InstanceNotFound,),
    ),
    CompatRoute(
        "/v1/usage/events",
        "record_usage.graphql",
        method="POST",
        body=JsonBody("events", MAX_BODY_BYTES, _events),
        scope="ingest",
        answers=(PayloadTooLarge,),
    ),
    CompatRoute(
        "/v1/export/usage.csv",
        "export_usage.graphql",
        (
            local_date("from"),
            local_date("to"),
            time_zone("tz", "tz"),
            choice("granularity", "granularity", GRANULARITIES,
                   default=Granularity.DAY.value.lower()),
            choice("group_by", "groupBy", GROUP_BYS),
        ),
        media_type="text/csv",
    ),
)
