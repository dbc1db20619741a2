"""The naive answer and the exactness check: /v1 bodies against plain SQL.

The naive queries are what a hand-written service would run: plain
aggregates over the indexed raw events table (``usage_events``), one set
per route. They serve twice: timed, as a yardstick, and once, untimed, as
the reference for the route's body. What SQL over raw events cannot give
(hostnames, providers, prices, the plan) comes from the tenant the harness
wrote itself (``dataset.Tenant``), never from meterql's own tables, so a
wrong row in meterql shows up here rather than being read back.

Rules checked (``shared/spec/v1-contract.md``): money is the exact nano-USD
sum rounded half-up to 4 places, as a string; percentages are 100 × part /
whole rounded half-up to 2 places; lists in the contract's order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dataset import PRICE_CENTS, TOKEN_ALLOWANCE, Tenant

DAYS = 90
_FROM = " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
_END_USERS = "COUNT(DISTINCT CASE WHEN end_user_id <> '' THEN end_user_id END)"

# route → (window, statements). Each statement takes $1 account, $2 window
# start, $3 window end (half-open). The window is "days" (days=90 ending
# today, UTC) or "period" (the subscription's current period). A route's
# naive time is the sum of its statements' times.
NAIVE: dict[str, tuple[str, tuple[str, ...]]] = {
    f"/v1/metrics/summary?days={DAYS}": ("days", (
        "SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0),"
        " COALESCE(SUM(cost_nanos), 0), COUNT(DISTINCT model), COUNT(DISTINCT instance_id)"
        + _FROM,)),
    f"/v1/metrics/instances?days={DAYS}": ("days", (
        "SELECT instance_id, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
        + _FROM + " GROUP BY instance_id",)),
    f"/v1/metrics/models?days={DAYS}": ("days", (
        "SELECT model, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_nanos)"
        + _FROM + " GROUP BY model",)),
    f"/v1/metrics/usage?days={DAYS}": ("days", (
        "SELECT day, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_nanos)"
        + _FROM + " GROUP BY day",)),
    "/v1/billing": ("period", (
        "SELECT COUNT(*), COALESCE(SUM(tokens_in + tokens_out), 0),"
        f" COALESCE(SUM(cost_nanos), 0), {_END_USERS}, COUNT(DISTINCT instance_id)" + _FROM,)),
    "/v1/billing/usage": ("period", (
        "SELECT instance_id, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
        + _FROM + " GROUP BY instance_id",
        f"SELECT {_END_USERS}" + _FROM)),
    f"/v1/billing/usage/chart?days={DAYS}": ("days", (
        "SELECT day, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
        + _FROM + " GROUP BY day",)),
}


def days_window(today: date) -> tuple[datetime, datetime]:
    """``days=90`` as the contract reads it: 90 UTC days ending today, half-open."""
    return _midnight(today - timedelta(days=DAYS - 1)), _midnight(today + timedelta(days=1))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def bounds(route: str, today: date, tenant: Tenant) -> tuple[datetime, datetime]:
    """The half-open window a route's naive SQL covers."""
    if NAIVE[route][0] == "period":
        return tenant.period_start, tenant.period_end
    return days_window(today)


def plain(row: Any) -> list[Any]:
    """A database row as JSON-able values: numerics to int, dates to ISO text."""
    values = []
    for value in row:
        if isinstance(value, Decimal):
            value = int(value)
        elif isinstance(value, date):
            value = value.isoformat()
        values.append(value)
    return values


def money(nanos: int) -> str:
    """Nano-USD to the contract's string: exact, half-up, 4 places."""
    return str(Decimal(nanos).scaleb(-9).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def percent(part: int, whole: int) -> Decimal:
    """100 × part / whole, half-up to 2 places, in integers (no float, no context)."""
    if whole == 0:
        return Decimal("0.00")
    hundredths = (20_000 * part + whole) // (2 * whole)
    return Decimal(hundredths).scaleb(-2)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expected(route: str, rows: list[list[list[Any]]], today: date,
             tenant: Tenant) -> dict[str, Any]:
    """The body (the fields checked) that the naive rows and the tenant imply."""
    path = route.split("?")[0]
    days = [(today - timedelta(days=DAYS - 1 - k)).isoformat() for k in range(DAYS)]
    first = rows[0]
    if path == "/v1/metrics/summary":
        requests, tokens_in, tokens_out, cost, models, instances = first[0]
        return {"total_requests": requests, "total_tokens_in": tokens_in,
                "total_tokens_out": tokens_out, "total_tokens": tokens_in + tokens_out,
                "estimated_cost_usd": money(cost), "unique_models": models,
                "active_instances": instances, "period_days": DAYS}
    if path == "/v1/metrics/instances":
        used = {row[0]: row[1:] for row in first}
        listed = [(instance, *used.get(instance, (0, 0, 0))) for instance in tenant.instances]
        listed.sort(key=lambda row: (-row[1], row[0]))
        return {"instances": [
            {"instance_id": instance, "hostname": tenant.instances[instance][0],
             "status": tenant.instances[instance][1], "request_count": count,
             "total_tokens": tokens, "estimated_cost_usd": money(cost)}
            for instance, count, tokens, cost in listed], "total_count": len(listed)}
    if path == "/v1/metrics/models":
        total = sum(row[1] for row in first)
        ordered = sorted(first, key=lambda row: (-row[1], row[0]))
        return {"models": [
            {"model": model, "provider": tenant.models[model][0], "request_count": count,
             "tokens_in": tokens_in, "tokens_out": tokens_out,
             "estimated_cost_usd": money(cost), "pct_of_total": percent(count, total)}
            for model, count, tokens_in, tokens_out, cost in ordered], "total_requests": total}
    if path == "/v1/metrics/usage":
        by_day = {row[0]: row[1:] for row in first}
        points = []
        for day in days:
            count, tokens_in, tokens_out, cost = by_day.get(day, (0, 0, 0, 0))
            points.append({"date": day, "requests": count, "tokens_in": tokens_in,
                           "tokens_out": tokens_out, "estimated_cost_usd": money(cost)})
        return {"period_days": DAYS, "points": points}
    if path == "/v1/billing/usage/chart":
        by_day = {row[0]: row[1:] for row in first}
        points = []
        for day in days:
            count, tokens, cost = by_day.get(day, (0, 0, 0))
            points.append({"date": day, "requests": count, "tokens": tokens,
                           "cost_usd": money(cost)})
        return {"period_label": f"Last {DAYS} days", "points": points}
    platform = PRICE_CENTS * 10_000_000  # cents → nano-USD
    if path == "/v1/billing":
        requests, tokens, cost, end_users, instances = first[0]
        return {"usage": {"total_requests": requests, "total_tokens": tokens,
                          "unique_end_users": end_users, "active_instances": instances,
                          "platform_cost_usd": money(platform),
                          "total_cost_usd": money(platform + cost)}}
    if path == "/v1/billing/usage":
        ordered = sorted(first, key=lambda row: (-row[1], row[0]))
        tokens = sum(row[2] for row in first)
        return {
            "period_start": _iso(tenant.period_start), "period_end": _iso(tenant.period_end),
            "total_requests": sum(row[1] for row in first), "total_tokens": tokens,
            "unique_end_users": rows[1][0][0], "platform_cost_usd": money(platform),
            "total_cost_usd": money(platform + sum(row[3] for row in first)),
            "token_allowance_monthly": TOKEN_ALLOWANCE,
            "token_usage_pct": percent(tokens, TOKEN_ALLOWANCE),
            "by_instance": [
                {"instance_id": instance, "hostname": tenant.instances[instance][0],
                 "requests": count, "tokens": tokens, "cost_usd": money(cost)}
                for instance, count, tokens, cost in ordered],
        }
    raise KeyError(route)


def mismatches(got: Any, want: Any, path: str = "") -> list[dict[str, Any]]:
    """Where ``got`` (a parsed body) differs from ``want``; only ``want``'s keys count.

    A ``Decimal`` in ``want`` is a percentage: the body's JSON number must
    have that exact decimal value (``6.4`` matches ``6.40``).
    """
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [{"at": path or ".", "route": got, "naive": "an object"}]
        found = []
        for key, value in want.items():
            found += mismatches(got.get(key), value, f"{path}.{key}" if path else key)
        return found
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            size = len(got) if isinstance(got, list) else got
            return [{"at": path, "route": f"{size} items", "naive": f"{len(want)} items"}]
        found = []
        for k, (item, value) in enumerate(zip(got, want, strict=True)):
            found += mismatches(item, value, f"{path}[{k}]")
        return found
    if isinstance(want, Decimal):
        same = isinstance(got, int | float) and not isinstance(got, bool) and (
            Decimal(str(got)) == want)
        return [] if same else [{"at": path, "route": got, "naive": str(want)}]
    same = got == want and type(got) is type(want)
    return [] if same else [{"at": path, "route": got, "naive": want}]


def check(route: str, body: Any, rows: list[list[list[Any]]], today: date,
          tenant: Tenant, limit: int = 10) -> dict[str, Any]:
    """One route's verdict: exact or not, and the first ``limit`` mismatches."""
    found = mismatches(body, expected(route, rows, today, tenant))
    return {"exact": not found, "mismatches": found[:limit], "mismatch_count": len(found)}


def check_pricing(rows: list[list[Any]], tenant: Tenant) -> dict[str, Any]:
    """meterql's stored per-event cost against the harness's own prices.

    The models route's naive rows hold, per model, the token sums and the sum
    of ``cost_nanos``. Prices are whole cents per Mtok, so every event's cost
    is an exact number of nano-USD: 10 × (tokens × cents) summed.
    """
    wrong = []
    for model, _, tokens_in, tokens_out, cost in rows:
        _, cents_in, cents_out = tenant.models[model]
        priced = 10 * (tokens_in * cents_in + tokens_out * cents_out)
        if priced != cost:
            wrong.append({"model": model, "stored_nanos": cost, "priced_nanos": priced})
    return {"exact": not wrong, "mismatches": wrong}
