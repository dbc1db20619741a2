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

The GraphQL-only queries have no route: ``usage(...)`` at a daily
grain is rebuilt from one aggregate per UTC hour (or half or quarter hour,
whatever puts every local midnight of the zone on a slot edge) bucketed into
local days with ``zoneinfo`` (``expected_usage``), and a whole page is
walked along its document (``Walk``) against references for each root
field: a /v1 route's twin against that route's body, ``usage`` against the
naive answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from math import gcd
from typing import Any
from zoneinfo import ZoneInfo

from dataset import PRICE_CENTS, TOKEN_ALLOWANCE, Tenant
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    parse,
    value_from_ast_untyped,
)

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


# --- usage(...) at a daily grain in any zone, and whole pages -------------
#
# The naive usage answer is one aggregate over the events of the window,
# grouped by UTC slot (an hour, or the half or quarter hour a zone's offsets
# need, so that every local midnight is a slot edge) and by the group's
# column, then bucketed into local days in Python with ``zoneinfo``. No
# meterql code is used: the zone rules come from the standard library.

_SLOT_SQLITE = {
    3600: "substr(occurred_at, 1, 13)",
    1800: "substr(occurred_at, 1, 13) || ':' || (CAST(substr(occurred_at, 15, 2) AS INTEGER)"
          " / 30 * 30)",
    900: "substr(occurred_at, 1, 13) || ':' || (CAST(substr(occurred_at, 15, 2) AS INTEGER)"
         " / 15 * 15)",
}
# Epoch seconds of the slot's start; the same on any session time zone.
_SLOT_POSTGRESQL = "(floor(extract(epoch from occurred_at) / {step}) * {step})::bigint"
USAGE_GROUPS = {"MODEL": "model", "INSTANCE": "instance_id", "PROVIDER": "model"}


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant whose local date is ``day``: midnight, or the end of a gap."""
    moment = datetime.combine(day, time(0), tzinfo=zone)
    while moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment.replace(
            tzinfo=None):  # in a gap: the wall time does not exist
        moment += timedelta(minutes=15)
    return moment


def usage_days(tz: str, now: datetime, days: int | None = None,
               first: date | None = None, last: date | None = None) -> tuple[date, date]:
    """The local dates (both included) of ``usage(days:)`` or ``usage(range:)``."""
    if first is not None and last is not None:
        return first, last
    today = now.astimezone(ZoneInfo(tz)).date()
    return today - timedelta(days=(days or 30) - 1), today


def usage_slot(tz: str, first: date, last: date) -> int:
    """The UTC slot (seconds) that every local day edge of the range falls on."""
    zone, step = ZoneInfo(tz), 3600
    for k in range((last - first).days + 2):
        offset = day_start(first + timedelta(days=k), zone).utcoffset()
        assert offset is not None
        step = gcd(step, int(offset.total_seconds()))
    if step not in (3600, 1800, 900):
        raise ValueError(f"{tz}: offsets of {step} s are not supported by the naive SQL")
    return step


def usage_sql(backend: str, step: int, group_by: str | None, instance: str | None = None,
              model: str | None = None) -> str:
    """The naive statement: $1 account, $2/$3 window (half-open), then the filter's value."""
    slot = _SLOT_SQLITE[step] if backend == "sqlite" else _SLOT_POSTGRESQL.format(step=step)
    column = USAGE_GROUPS[group_by] if group_by else None
    keys = f"{slot}, {column}" if column else slot
    where = _FROM
    if instance is not None:
        where += " AND instance_id = $4"
    elif model is not None:
        where += " AND model = $4"
    label = column or "''"
    sql = (f"SELECT {slot}, {label}, COUNT(*), SUM(tokens_in), SUM(tokens_out),"
           f" SUM(cost_nanos){where} GROUP BY {keys}")
    return sql.replace("$", "?") if backend == "sqlite" else sql


def _slot_start(value: Any) -> datetime:
    """A slot key as the naive SQL returns it, as an aware UTC instant."""
    if isinstance(value, int):  # PostgreSQL: epoch seconds
        return datetime.fromtimestamp(value, UTC)
    hour, _, minute = str(value).partition(":")  # SQLite: '2026-11-20 13' [+ ':30']
    moment = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return moment + timedelta(minutes=int(minute or 0))


def _amounts(requests: int, tokens_in: int, tokens_out: int, nanos: int) -> dict[str, Any]:
    return {"requests": requests, "tokensIn": tokens_in, "tokensOut": tokens_out,
            "totalTokens": tokens_in + tokens_out, "estimatedCostUsd": money(nanos)}


def expected_usage(rows: list[list[Any]], tz: str, first: date, last: date,
                   group_by: str | None, tenant: Tenant) -> dict[str, Any]:
    """``usage(...)``'s answer (camelCase, DAY grain) from the naive slot rows.

    Buckets are the local days ``first``..``last``; groups are those with at
    least one request, by key in code-point order, and every bucket lists
    every group, zeros included.
    """
    zone = ZoneInfo(tz)
    size = (last - first).days + 1
    zero = (0, 0, 0, 0)
    sums: dict[str, list[tuple[int, ...]]] = {}
    for slot, key, *measures in rows:
        day = _slot_start(slot).astimezone(zone).date()
        index = (day - first).days
        if not 0 <= index < size:
            raise ValueError(f"slot {slot} is outside {first}..{last} in {tz}")
        if group_by == "PROVIDER":
            key = tenant.models[key][0] if key in tenant.models else ""
        per_day = sums.setdefault(key if group_by else "", [zero] * size)
        per_day[index] = tuple(a + int(b) for a, b in zip(per_day[index], measures, strict=True))
    keys = sorted(sums) if group_by else [""]
    if not group_by and "" not in sums:
        sums[""] = [zero] * size

    def total(values: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Column sums (requests, tokens in, tokens out, nano-USD); zeros when empty."""
        return tuple(sum(column) for column in zip(zero, *values, strict=False))

    def group(key: str, values: tuple[int, ...]) -> dict[str, Any]:
        return {"key": key, **_amounts(*values)}

    starts = [day_start(first + timedelta(days=k), zone) for k in range(size + 1)]
    series = []
    for n in range(size):
        bucket = total([sums[key][n] for key in keys])
        day = first + timedelta(days=n)
        series.append({
            "start": starts[n].isoformat(), "end": starts[n + 1].isoformat(),
            "date": day.isoformat(), "label": day.isoformat(), **_amounts(*bucket),
            "groups": [group(key, sums[key][n]) for key in keys] if group_by else []})
    return {
        "from": first.isoformat(), "to": last.isoformat(), "timeZone": tz,
        "granularity": "DAY", "groupBy": group_by,
        "start": starts[0].isoformat(), "end": starts[-1].isoformat(),
        "totals": _amounts(*total([total(sums[key]) for key in keys])),
        "groups": [group(key, total(sums[key])) for key in keys] if group_by else [],
        "series": series,
    }


def camel(name: str) -> str:
    """A REST body's key as the GraphQL field it aliases: ``by_instance`` → ``byInstance``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def camel_keys(value: Any) -> Any:
    """A REST body with the GraphQL field names of its twin document's aliases."""
    if isinstance(value, dict):
        return {camel(key): camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    return value


# A page's root fields that are a /v1 route's GraphQL twin: their part of the
# page must equal that route's body (its twin's aliases are the snake_case
# field names). Arguments map to the route's query parameters.
TWINS = {
    "metricsSummary": "/v1/metrics/summary", "instanceUsage": "/v1/metrics/instances",
    "modelBreakdown": "/v1/metrics/models", "usageTimeseries": "/v1/metrics/usage",
    "billing": "/v1/billing", "trialStatus": "/v1/billing/trial-status",
    "billingUsage": "/v1/billing/usage", "usageChart": "/v1/billing/usage/chart",
}
TWIN_PARAMETERS = {"days": "days", "instanceId": "instance_id"}


def twin_route(field: str, arguments: dict[str, Any]) -> str:
    query = "&".join(f"{TWIN_PARAMETERS[name]}={value}" for name, value in arguments.items()
                     if value is not None)
    return TWINS[field] + (f"?{query}" if query else "")


class Walk:
    """A page's answer walked along its document against a reference.

    ``reference`` is camelCase JSON keyed by field names (not aliases); a
    value may instead be a callable taking the field's arguments and
    returning the reference, for fields whose answer depends on them (a
    route's ``days``, ``usage``'s zone...). Fields the reference does not
    hold are listed as unchecked rather than counted as wrong.
    """

    def __init__(self, document: DocumentNode, operation: OperationDefinitionNode) -> None:
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.variables = {
            v.variable.name.value: (None if v.default_value is None
                                    else value_from_ast_untyped(v.default_value))
            for v in operation.variable_definitions or ()}
        self.mismatches: list[dict[str, Any]] = []
        self.unchecked: list[str] = []
        self.checked = 0

    def fields(self, selection: SelectionSetNode | None) -> Iterator[FieldNode]:
        for node in selection.selections if selection else ():
            if not self.included(node):
                continue
            if isinstance(node, FieldNode):
                yield node
            elif isinstance(node, InlineFragmentNode):
                yield from self.fields(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                yield from self.fields(self.fragments[node.name.value].selection_set)

    def included(self, node: SelectionNode) -> bool:
        """Whether ``@skip`` and ``@include`` keep ``node``, as the server decides.

        A page asks for some fields only when a variable says so (each
        bucket's groups with ``$grouped``): a field left out of the answer
        is not a field missing from it.
        """
        for directive in node.directives or ():
            name = directive.name.value
            if name in ("skip", "include"):
                condition = next(value_from_ast_untyped(a.value, self.variables)
                                 for a in directive.arguments or () if a.name.value == "if")
                if bool(condition) is (name == "skip"):
                    return False
        return True

    def arguments(self, node: FieldNode) -> dict[str, Any]:
        return {a.name.value: value_from_ast_untyped(a.value, self.variables)
                for a in node.arguments or ()}

    def walk(self, selection: SelectionSetNode | None, got: Any, want: Any, path: str) -> None:
        for node in self.fields(selection):
            name, key = node.name.value, (node.alias or node.name).value
            where = f"{path}.{key}" if path else key
            if name == "__typename":
                continue
            if not isinstance(got, dict) or key not in got:
                self.mismatches.append({"at": where, "route": "missing", "naive": "a value"})
                continue
            if not isinstance(want, dict) or name not in want:
                self.unchecked.append(where)
                continue
            reference = want[name]
            if callable(reference):
                try:
                    reference = reference(self.arguments(node))
                except NotImplementedError as why:
                    self.unchecked.append(f"{where} ({why})")
                    continue
            self.value(node, got[key], reference, where)

    def value(self, node: FieldNode, got: Any, want: Any, where: str) -> None:
        if node.selection_set is None:
            self.checked += 1
            if got != want or type(got) is not type(want):
                self.mismatches.append({"at": where, "route": got, "naive": want})
        elif isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                size = len(got) if isinstance(got, list) else got
                self.mismatches.append({"at": where, "route": f"{size} items",
                                        "naive": f"{len(want)} items"})
                return
            for k, (item, reference) in enumerate(zip(got, want, strict=True)):
                self.value(node, item, reference, f"{where}[{k}]")
        else:
            self.walk(node.selection_set, got, want, where)


def parse_operation(text: str) -> tuple[DocumentNode, OperationDefinitionNode]:
    """A page's document and its one (named) operation; its variables must have defaults."""
    document = parse(text)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].name is None:
        raise ValueError("a page document holds exactly one named operation")
    for variable in operations[0].variable_definitions or ():
        if variable.default_value is None and isinstance(variable.type, NonNullTypeNode):
            raise ValueError(f"${variable.variable.name.value} is required and has no default")
    return document, operations[0]
