"""``GET /v1/export/usage.csv``: GraphQL's ``usage`` numbers as CSV, streamed chunk by chunk.

The reference is GraphQL itself (``usage`` is checked against the raw events
in ``test_usage.py``): every CSV row must be the row its bucket and group make
in the GraphQL answer, whatever the chunking. Streaming is observed at the
ASGI level (``httpx.ASGITransport`` collects a body before handing it over):
one body message per chunk, memory flat from a month to a year of hours.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import itertools
import logging
import random
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from meterql import buckets
from meterql.app import create_app
from meterql.buckets import Granularity, LocalRange
from meterql.config import Settings
from meterql.db import series, writes
from meterql.db.engine import Database
from meterql.errors import DatabaseUnavailable
from meterql.records import AccountRecord, TokenRecord, UsageEventRecord
from meterql.rest_compat.export import ExportInterrupted, spreadsheet_safe
from tests.conftest import NOW
from tests.golden import ACME_TOKEN, auth, seed

PATH = "/v1/export/usage.csv"
INGEST_ONLY_TOKEN = "initech-ingest-only-0001"
# Instance ids a spreadsheet would run, and ids that need CSV quoting.
INSTANCES = [
    "inst-a", "inst-b", '=HYPERLINK("http://evil.test","click")', "-2+3", "+1", "@SUM(A1)",
    "\tTab", "\rCR", "'quoted", "comma, inside", 'quote " inside', "line\nbreak",
]
MODELS = ["gpt-4o", "gpt-4o-mini", "mystery"]  # golden prices; mystery is unpriced
YEAR = (date(2025, 11, 20), date(2026, 11, 20))  # 366 days ending "today" (NOW)


def _events() -> list[UsageEventRecord]:
    """A year of events, denser around the 2026 clock changes of the zones tested."""
    rng = random.Random(8)
    start = datetime(2025, 11, 19, tzinfo=UTC)
    moments = [start + timedelta(seconds=rng.randrange(366 * 86_400)) for _ in range(1_200)]
    for first in (datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)):
        moments += [first + timedelta(seconds=rng.randrange(14 * 86_400)) for _ in range(300)]
    return [
        UsageEventRecord(
            event_id=f"x{n}", instance_id=rng.choice(INSTANCES), model=rng.choice(MODELS),
            timestamp=moment, tokens_in=rng.randrange(5_000), tokens_out=rng.randrange(5_000),
        )
        for n, moment in enumerate(moments)
    ]


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    async with db.write() as session, session.begin():
        await writes.record_events(session, _events(), account_id="acme")
        await writes.upsert_account(session, AccountRecord(
            account_id="initech", tokens=[TokenRecord(token=INGEST_ONLY_TOKEN,
                                                      scopes=["ingest"])]))
    return db


@pytest.fixture
def app(settings: Settings, seeded: Database) -> Starlette:
    """The app over the seeded database (``client`` takes this one): tests of
    chunk arithmetic alone take neither, and run once, without a database."""
    return create_app(settings, database=seeded, clock=lambda: NOW)


USAGE = """query ($range: DateRange!, $tz: String!, $g: Granularity!, $by: UsageGroupBy) {
  usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) {
    series { start end label requests tokensIn tokensOut totalTokens estimatedCostUsd
             groups { key requests tokensIn tokensOut totalTokens estimatedCostUsd } }
  }
}"""
MEASURES = ["requests", "tokensIn", "tokensOut", "totalTokens", "estimatedCostUsd"]


def _safe(key: str) -> str:
    # Written out again here rather than imported: OWASP's list, plus the apostrophe.
    return "'" + key if key[:1] in {"=", "+", "-", "@", "\t", "\r", "'"} else key


async def graphql_rows(
    client: httpx.AsyncClient, first: date, last: date, tz: str, granularity: str,
    group_by: str | None,
) -> list[list[str]]:
    """The CSV rows GraphQL's answer makes: header, then bucket (x group) rows."""
    response = await client.post("/graphql", headers=auth(), json={"query": USAGE, "variables": {
        "range": {"from": first.isoformat(), "to": last.isoformat()}, "tz": tz,
        "g": granularity.upper(), "by": group_by and group_by.upper()}})
    body = response.json()
    assert "errors" not in body, body
    rows = [["start", "end", "label", *([group_by] if group_by else []), "requests",
             "tokens_in", "tokens_out", "total_tokens", "estimated_cost_usd"]]
    for bucket in body["data"]["usage"]["series"]:
        when = [bucket["start"], bucket["end"], bucket["label"]]
        if group_by is None:
            rows.append([*when, *(str(bucket[m]) for m in MEASURES)])
        for group in bucket["groups"]:
            rows.append([*when, _safe(group["key"]), *(str(group[m]) for m in MEASURES)])
    return rows


def csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    # RFC 4180: every record ends with CRLF (a quoted cell may hold a bare LF).
    assert response.content.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


def _query(first: date, last: date, tz: str, granularity: str, group_by: str | None) -> str:
    query = f"?from={first}&to={last}&tz={tz}&granularity={granularity}"
    return query + (f"&group_by={group_by}" if group_by else "")


class Calls:
    """Counts ``usage_series`` calls (one per executed usage document)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None,
                 error: Exception | None = None) -> None:
        self.count = 0
        real = series.usage_series

        async def counted(*args: Any, **kwargs: Any) -> series.Series:
            self.count += 1
            if fail_at is not None and self.count >= fail_at:
                raise error or DatabaseUnavailable()
            return await real(*args, **kwargs)

        monkeypatch.setattr(series, "usage_series", counted)


# --- chunks -------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", list(Granularity))
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "Europe/Berlin", "America/New_York",
                                  "Australia/Lord_Howe", "America/Santiago"])
def test_chunks_are_whole_buckets_of_the_range(zone: str, granularity: Granularity) -> None:
    """Planned one by one, the chunks give the whole range's buckets, edges and labels."""
    hourly = granularity is Granularity.HOUR
    local = LocalRange(date(2026, 3, 20) if hourly else YEAR[0],
                       date(2026, 4, 19) if hourly else YEAR[1], buckets.zone(zone))
    whole = buckets.plan(local, granularity)
    for groups, points in [(1, buckets.CHUNK_POINTS), (40, 2_000), (10_000, 1)]:
        parts = buckets.chunks(local, granularity, groups, points=points)
        plans = [buckets.plan(part, granularity) for part in parts]
        assert parts[0].first == local.first and parts[-1].last == local.last
        assert all(a.last + timedelta(days=1) == b.first for a, b in itertools.pairwise(parts))
        bounds = [*plans[0].bounds, *(b for plan in plans[1:] for b in plan.bounds[1:])]
        assert tuple(bounds) == whole.bounds, (groups, points)
        assert [b.label for p in plans for b in p.buckets] == [b.label for b in whole.buckets]
        for part, plan in zip(parts, plans, strict=True):
            # A month of days at most, about `points` series points, and at least
            # one bucket (for hours, one day of them).
            assert part.days <= buckets.CHUNK_DAYS
            assert (len(plan.buckets) * groups <= points or part.days == 1
                    or len(plan.buckets) == 1), (part, len(plan.buckets))
    if granularity is Granularity.DAY:
        assert len(buckets.chunks(local, granularity)) == 12  # 366 days in 31s


# --- the same numbers as GraphQL ----------------------------------------------------------

COMBOS = [
    (date(2026, 10, 1), date(2026, 11, 20), "UTC", "day", None),
    (date(2026, 11, 10), date(2026, 11, 20), "Asia/Kolkata", "hour", "model"),
    (date(2026, 10, 20), date(2026, 11, 5), "Europe/Berlin", "hour", "instance"),
    (date(2026, 10, 28), date(2026, 11, 3), "America/New_York", "hour", "provider"),
    (date(2026, 3, 4), date(2026, 5, 13), "America/New_York", "week", "provider"),
    (date(2026, 1, 15), date(2026, 4, 10), "Europe/Berlin", "month", "instance"),
    (date(2026, 3, 30), date(2026, 4, 10), "Australia/Lord_Howe", "day", "model"),
    (YEAR[0], YEAR[1], "Asia/Kathmandu", "week", "instance"),
    (YEAR[0], YEAR[1], "Pacific/Chatham", "month", None),
]


@pytest.mark.parametrize(("first", "last", "tz", "granularity", "group_by"), COMBOS,
                         ids=[f"{c[2]}-{c[3]}-{c[4]}" for c in COMBOS])
async def test_rows_are_graphqls_whatever_the_chunks(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, first: date, last: date,
    tz: str, granularity: str, group_by: str | None,
) -> None:
    expected = await graphql_rows(client, first, last, tz, granularity, group_by)
    assert len(expected) > 2
    for chunk_days in (buckets.CHUNK_DAYS, 2):
        monkeypatch.setattr(buckets, "CHUNK_DAYS", chunk_days)
        calls = Calls(monkeypatch)
        response = await client.get(PATH + _query(first, last, tz, granularity, group_by),
                                    headers=auth())
        assert csv_rows(response) == expected, chunk_days
        local = LocalRange(first, last, buckets.zone(tz))
        groups = len({row[3] for row in expected[1:]}) if group_by else 0
        chunks = buckets.chunks(local, Granularity(granularity.upper()), groups)
        # A group query when grouped, then one usage per chunk.
        assert calls.count == len(chunks) + (1 if group_by else 0)
        if chunk_days == 2 and granularity in ("hour", "day"):
            assert len(chunks) > 1
        monkeypatch.undo()


async def test_every_group_in_every_bucket_zeros_included(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group used only in the first chunk still has its rows, zeros, in the others."""
    monkeypatch.setattr(buckets, "CHUNK_DAYS", 1)
    rows = csv_rows(await client.get(
        PATH + "?from=2026-11-12&to=2026-11-21&group_by=model", headers=auth()))
    header, body = rows[0], rows[1:]
    assert header == ["start", "end", "label", "model", "requests", "tokens_in", "tokens_out",
                      "total_tokens", "estimated_cost_usd"]
    models = sorted({row[3] for row in body})
    assert len(body) == 10 * len(models)
    for day in range(10):
        assert [row[3] for row in body[day * len(models):(day + 1) * len(models)]] == models
    zeros = [row for row in body if row[4:] == ["0", "0", "0", "0", "0.0000"]]
    assert zeros and len(zeros) < len(body)


async def test_defaults_are_the_last_30_days_daily_in_utc(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH, headers=auth())
    today = date(2026, 11, 20)
    first = today - timedelta(days=29)
    assert csv_rows(response) == await graphql_rows(client, first, today, "UTC", "day", None)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="usage-{first}-{today}.csv"')


# --- formula injection ------------------------------------------------------------------


def test_spreadsheet_safe() -> None:
    for risky in ["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "\nx", "'x", " =1", "  +1",
                  "\u00a0-1", "\u3000@A1", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20A1",
                  " \uff1dSUM(A1)"]:
        assert spreadsheet_safe(risky) == "'" + risky
    for plain in ["inst-a", "", "a=1", " a=1", "gpt-4o", "x\n=1", "\uff21"]:
        assert spreadsheet_safe(plain) == plain


async def test_formula_keys_are_neutralised_and_quoted(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH + f"?from={YEAR[0]}&to={YEAR[1]}&granularity=month"
                                "&group_by=instance", headers=auth())
    keys = {row[3] for row in csv_rows(response)[1:]}
    assert keys == {_safe(key) for key in INSTANCES}
    assert {"'=HYPERLINK(\"http://evil.test\",\"click\")", "'-2+3", "'+1", "'@SUM(A1)",
            "'\tTab", "'\rCR", "''quoted"} <= keys
    text = response.content.decode()
    assert '"\'=HYPERLINK(""http://evil.test"",""click"")"' in text
    assert '"line\nbreak"' in text and '"comma, inside"' in text
    assert not any(line.startswith(("=", "+", "@")) for line in text.split("\r\n"))


# --- refusals, all before the first byte ------------------------------------------------

BAD = [
    ("?from=2026-11-01", [("missing", ["query", "to"])]),
    ("?to=2026-11-01", [("missing", ["query", "from"])]),
    ("?from=2026-11-02&to=2026-11-01", [("date_order", ["query", "to"])]),
    ("?from=2025-11-19&to=2026-11-20", [("range_too_long", ["query"])]),
    ("?from=0001-01-01&to=0001-01-05", [("date_bounds", ["query", "from"])]),
    ("?from=yesterday&to=2026-11-01", [("date_from_datetime_parsing", ["query", "from"])]),
    ("?from=2026-02-30&to=2026-03-01", [("date_from_datetime_parsing", ["query", "from"])]),
    ("?tz=Mars/Olympus", [("time_zone", ["query", "tz"])]),
    ("?tz=../../../etc/passwd", [("time_zone", ["query", "tz"])]),
    ("?tz=europe/berlin", [("time_zone", ["query", "tz"])]),
    ("?granularity=HOUR", [("enum", ["query", "granularity"])]),
    ("?granularity=minute", [("enum", ["query", "granularity"])]),
    ("?group_by=Model", [("enum", ["query", "group_by"])]),
    ("?group_by=", [("enum", ["query", "group_by"])]),
    ("?tz=x&granularity=y&group_by=z&from=w",
     [("date_from_datetime_parsing", ["query", "from"]), ("time_zone", ["query", "tz"]),
      ("enum", ["query", "granularity"]), ("enum", ["query", "group_by"])]),
]


@pytest.mark.parametrize(("query", "errors"), BAD, ids=[b[0] for b in BAD])
async def test_bad_parameters_are_422_not_a_half_csv(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, query: str,
    errors: list[tuple[str, list[str]]],
) -> None:
    calls = Calls(monkeypatch)
    response = await client.get(PATH + query, headers=auth())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert "content-disposition" not in response.headers
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == errors
    assert calls.count == 0


async def test_refusals_read_as_fastapis(client: httpx.AsyncClient) -> None:
    # pydantic's words for an Enum parameter, and the range's own, located in the query.
    response = await client.get(PATH + "?granularity=Hour&from=2026-11-02&to=2026-11-01",
                                headers=auth())
    assert response.json() == {"detail": [
        {"type": "enum", "loc": ["query", "granularity"],
         "msg": "Input should be 'hour', 'day', 'week' or 'month'", "input": "Hour",
         "ctx": {"expected": "'hour', 'day', 'week' or 'month'"}},
    ]}
    response = await client.get(PATH + "?from=2026-11-02&to=2026-11-01", headers=auth())
    assert response.json() == {"detail": [
        {"type": "date_order", "loc": ["query", "to"], "msg": "Must not be before from",
         "input": "2026-11-01"},
    ]}


async def test_tokens_and_scopes(client: httpx.AsyncClient) -> None:
    missing = await client.get(PATH)
    assert (missing.status_code, missing.json()) == (401, {"detail": "Not authenticated"})
    assert missing.headers["www-authenticate"] == "Bearer"
    # The token is checked before the parameters.
    assert (await client.get(PATH + "?granularity=nope")).status_code == 401
    forbidden = await client.get(PATH + "?granularity=nope", headers=auth(INGEST_ONLY_TOKEN))
    assert (forbidden.status_code, forbidden.json()) == (403, {"detail": "This token lacks the 'read' scope"})


async def test_a_database_down_before_the_first_byte_is_a_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fail_at, query in [(1, "?group_by=model"), (2, "?group_by=model"), (1, "")]:
        Calls(monkeypatch, fail_at=fail_at)
        response = await client.get(PATH + query, headers=auth())
        assert response.status_code == 503, (fail_at, query)
        assert response.json() == {"detail": "Database unavailable"}
        assert response.headers["retry-after"] == "5"


async def test_a_bug_before_the_first_byte_is_a_masked_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    Calls(monkeypatch, fail_at=1, error=RuntimeError("SELECT secret FROM somewhere"))
    with caplog.at_level(logging.ERROR, "meterql.rest_compat"):
        response = await client.get(PATH, headers=auth())
    assert response.status_code == 500
    assert response.json()["detail"] == "Internal Server Error"
    assert "SELECT" not in response.text
    assert "export document failed" in caplog.text


# --- streaming, at the ASGI level ---------------------------------------------------------


async def asgi_get(
    app: Starlette, target: str, token: str = ACME_TOKEN,
    on_body: Callable[[bytes], Awaitable[None]] | None = None,
    leave: asyncio.Event | None = None,
) -> tuple[list[Message], list[bytes]]:
    """Call the app as a server would; body messages go to ``on_body`` (else kept).

    The client stays connected until ``leave`` is set, if given.
    """
    path, _, query = target.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"meterql.test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("meterql.test", 80),
    }
    requested = False
    gone = leave or asyncio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()  # the client stays connected until it leaves
        return {"type": "http.disconnect"}

    messages: list[Message] = []
    bodies: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            messages.append({**message, "body": len(body)})
            if on_body is not None:
                await on_body(body)
            else:
                bodies.append(body)
        else:
            messages.append(message)

    await app(scope, receive, send)
    return messages, bodies


async def test_a_year_of_hours_streams_in_chunks(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    messages, bodies = await asgi_get(app, PATH + _query(*YEAR, "UTC", "hour", None))
    start = messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"content-disposition", b'attachment; filename="usage-2025-11-20-2026-11-20.csv"'
            ) in start["headers"]
    chunks = buckets.chunks(LocalRange(*YEAR, buckets.zone("UTC")), Granularity.HOUR)
    assert len(chunks) == 12 and calls.count == 12
    # One body message per chunk, then the end.
    assert [bool(m.get("more_body")) for m in messages[1:]] == [True] * 12 + [False]
    rows = list(csv.reader(io.StringIO(b"".join(bodies).decode(), newline="")))
    assert len(rows) == 1 + 366 * 24
    assert rows[1][0] == "2025-11-20T00:00:00+00:00" and rows[-1][1] == "2026-11-21T00:00:00+00:00"
    # The same numbers as GraphQL's daily series of the year, hour by hour summed.
    daily = await graphql_rows(client, *YEAR, "UTC", "day", None)
    summed: dict[str, list[int]] = {}
    for row in rows[1:]:
        cell = summed.setdefault(row[0][:10], [0, 0, 0, 0])
        for n in range(4):
            cell[n] += int(row[3 + n])
    assert [[*map(str, summed[row[2]])] for row in daily[1:]] == [row[3:7] for row in daily[1:]]
    assert sum(int(row[3]) for row in rows[1:]) > 1_000


async def test_memory_stays_flat_from_a_month_to_a_year_of_hours(app: Starlette) -> None:
    sizes: dict[int, int] = {}

    async def discard(body: bytes) -> None:
        sizes[0] = sizes.get(0, 0) + len(body)

    month = PATH + _query(date(2026, 10, 21), YEAR[1], "UTC", "hour", "instance")
    year = PATH + _query(*YEAR, "UTC", "hour", "instance")
    # Warm caches (statements, zones, schema) on every path a year takes: the
    # first chunk's, and the later chunks' (each checks the token again).
    await asgi_get(app, PATH + _query(date(2026, 8, 21), YEAR[1], "UTC", "hour", "instance"),
                   on_body=discard)
    peaks = {}
    for name, target in [("month", month), ("year", year)]:
        sizes.clear()
        gc.collect()  # what earlier tests left for the collector is not this export's
        tracemalloc.start()
        try:
            await asgi_get(app, target, on_body=discard)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        peaks[name + "_bytes"] = sizes[0]
    # A year is 12 months of rows: were it held whole, its peak would be the CSV
    # alone, some 12 times the month's. One chunk at a time, it is the month's.
    assert peaks["year_bytes"] > 11 * peaks["month_bytes"]
    assert peaks["year"] < 1.5 * peaks["month"], peaks
    assert peaks["year"] < peaks["year_bytes"], peaks


async def test_a_failure_mid_stream_cuts_the_stream(
    app: Starlette, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    Calls(monkeypatch, fail_at=3)  # the third chunk's read fails
    received: list[bytes] = []

    async def keep(body: bytes) -> None:
        received.append(body)

    with caplog.at_level(logging.INFO), pytest.raises(ExportInterrupted):
        await asgi_get(app, PATH + _query(*YEAR, "UTC", "day", None), on_body=keep)
    text = b"".join(received).decode()
    # Two whole chunks of rows went out; no end of body, no error text in it.
    assert len(received) == 2 and text.endswith("\r\n")
    assert "Database" not in text and "Traceback" not in text
    assert "usage export cut short after 2 of" in caplog.text
    (line,) = [r for r in caplog.records if r.name == "meterql.web.access"]
    assert (line.fields["route"], line.fields["status"]) == (PATH, 200)  # type: ignore[attr-defined]


async def test_a_token_revoked_mid_stream_stops_the_export(
    app: Starlette, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[bytes] = []

    async def revoke_after_the_first_chunk(body: bytes) -> None:
        received.append(body)
        if len(received) == 1:
            async with db.write() as session, session.begin():
                assert await writes.revoke_token(session, ACME_TOKEN)

    with caplog.at_level(logging.INFO), pytest.raises(ExportInterrupted):
        await asgi_get(app, PATH + _query(*YEAR, "UTC", "day", None),
                       on_body=revoke_after_the_first_chunk)
    # The first chunk went out before the revocation; the next was refused.
    assert len(received) == 1
    assert "usage export cut short after 1 of" in caplog.text
    assert "Invalid authentication credentials" in caplog.text


async def test_the_access_line_times_the_whole_stream(
    app: Starlette, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(buckets, "CHUNK_DAYS", 5)
    sent = 0

    async def slow_client(_body: bytes) -> None:
        nonlocal sent
        sent += 1
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO, "meterql.web.access"):
        await asgi_get(app, PATH + "?from=2026-10-01&to=2026-11-19", on_body=slow_client)
    (line,) = [r for r in caplog.records if r.name == "meterql.web.access"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["route"], fields["status"], fields["account_id"]) == (PATH, 200, "acme")
    assert sent == 11  # ten chunks and the end
    assert fields["duration_ms"] >= sent * 50


async def test_a_client_leaving_mid_stream_stops_the_export_cleanly(app: Starlette) -> None:
    # A browser that cancels a download: the server cancels the stream while a
    # later chunk is being answered. The export stops there, and leaves no
    # coroutine of graphql-core's or of a resolver never awaited (a warning
    # each in the server's log).
    leave = asyncio.Event()
    received: list[bytes] = []

    async def leave_after_the_first_chunk(body: bytes) -> None:
        received.append(body)
        leave.set()
        await asyncio.sleep(0)  # the server hears of it while reading the next chunk

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await asgi_get(app, PATH + _query(*YEAR, "UTC", "hour", "model"),
                       on_body=leave_after_the_first_chunk, leave=leave)
        gc.collect()
    assert 1 <= len(received) < 12  # the export stopped early
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
