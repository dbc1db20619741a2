"""Raw-event retention: old months go, every answer stays, old events are refused.

Monthly partitions on PostgreSQL (made by the first write that needs one,
dropped whole), chunked deletes on SQLite; the rollups and the event keys
keep the history either way.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from meterql import retention
from meterql.app import create_app
from meterql.config import Settings
from meterql.db import partitions, writes
from meterql.db.engine import Database
from meterql.db.tables import EventKey, UsageEvent
from meterql.importer import ImportFileError, load
from meterql.records import EventRecord, UsageEventRecord
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, auth, seed

DAYS = 90
HORIZON = NOW - timedelta(days=DAYS)  # 2026-08-22T15:30:00Z


def _old_events(count: int) -> list[EventRecord]:
    """acme's events, one every 4 days and 7 hours from January 2025 to July 2026."""
    start = datetime(2025, 1, 3, 10, 0, tzinfo=UTC)
    return [
        EventRecord.model_validate({
            "account_id": "acme", "event_id": f"old-{n}", "instance_id": ("inst-a", "inst-b")[n % 2],
            "model": ("gpt-4o", "gpt-4o-mini")[n % 2],
            "timestamp": (start + n * timedelta(days=4, hours=7)).isoformat(),
            "tokens_in": 100 + n, "tokens_out": 10 + n, "end_user_id": f"old-user-{n % 5}",
        })
        for n in range(count)
    ]


async def _history(db: Database) -> None:
    await seed(db)
    async with db.write() as session, session.begin():
        result = await writes.record_events(session, _old_events(130))
    assert result.accepted == 130


async def _stored(db: Database) -> tuple[int, int]:
    """(raw events, event keys) stored."""
    async with db.engine.connect() as connection:
        events = await connection.scalar(select(func.count()).select_from(UsageEvent))
        keys = await connection.scalar(select(func.count()).select_from(EventKey))
    return int(events or 0), int(keys or 0)


ROUTES = (
    "/v1/metrics/summary?days=7", "/v1/metrics/summary?days=90", "/v1/metrics/instances?days=30",
    "/v1/metrics/models?days=90", "/v1/metrics/usage?days=30", "/v1/billing",
    "/v1/billing/usage", "/v1/billing/trial-status",
)
# Long series across the dropped months, in zones on whole and half hours.
USAGE = """
query($from: Date!, $to: Date!) {
  viewer {
    utc: usage(range: {from: $from, to: $to}, granularity: MONTH, tz: "UTC") {
      totals { requests tokensIn tokensOut estimatedCostUsd }
      series { start requests tokensIn estimatedCostUsd }
    }
    kolkata: usage(range: {from: $from, to: $to}, granularity: WEEK, tz: "Asia/Kolkata",
                   groupBy: MODEL) {
      totals { requests estimatedCostUsd }
      groups { key requests tokensOut }
      series { label requests groups { key requests } }
    }
  }
}
"""
# Two years: a range spans at most 366 days.
YEARS = (("2025-01-01", "2025-12-31"), ("2026-01-01", "2026-11-20"))


async def _answers(client: httpx.AsyncClient) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for route in ROUTES:
        response = await client.get(route, headers=auth(ACME_TOKEN))
        assert response.status_code == 200, (route, response.text)
        answers[route] = response.json()
    for first, last in YEARS:
        response = await client.post("/graphql", headers=auth(ACME_TOKEN), json={
            "query": USAGE, "variables": {"from": first, "to": last}})
        body = response.json()
        assert "errors" not in body, body
        answers[first] = body["data"]["viewer"]
    return answers


async def test_letting_old_months_go_keeps_every_answer(
    db: Database, client: httpx.AsyncClient
) -> None:
    await _history(db)
    before = await _answers(client)
    # The golden events but tomorrow's, and the old ones.
    assert sum(before[first]["utc"]["totals"]["requests"] for first, _ in YEARS) == 7 + 130
    stored = await _stored(db)

    applied = await retention.apply(db, DAYS, NOW)

    # The horizon's month starts 2026-08-01; acme's oldest running billing
    # period (2026-10-15) is later, so it is the horizon that decides.
    assert applied.before == datetime(2026, 8, 1, tzinfo=UTC)
    events, keys = await _stored(db)
    old_kept = sum(1 for e in _old_events(130) if e.timestamp >= applied.before)
    assert (events, keys) == (stored[0] - (130 - old_kept), stored[1])
    if db.dialect == "postgresql":
        assert applied.months == 19  # January 2025 to July 2026
    else:
        assert applied.events == 130 - old_kept
    assert await _answers(client) == before

    # Again: nothing left to let go, nothing changes.
    again = await retention.apply(db, DAYS, NOW)
    assert (again.months, again.events) == (0, 0)
    assert await _answers(client) == before


async def test_a_running_billing_period_keeps_its_months(db: Database) -> None:
    """A yearly plan's period started before the horizon: its raw events stay."""
    await _history(db)
    async with db.write() as session, session.begin():
        await session.execute(text(
            "UPDATE subscriptions SET current_period_start = :start "
            "WHERE account_id = 'acme' AND tier_id = 'tier_pro'"
        ), {"start": datetime(2026, 3, 9, 12, tzinfo=UTC)})
    applied = await retention.apply(db, DAYS, NOW)
    assert applied.before == datetime(2026, 3, 1, tzinfo=UTC)
    async with db.engine.connect() as connection:
        oldest = await connection.scalar(select(func.min(UsageEvent.occurred_at)))
    assert oldest is not None and oldest >= applied.before


# PostgreSQL drops whole partitions; SQLite deletes rows, a chunk a transaction.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_deletes_in_chunks(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _history(db)
    monkeypatch.setattr(partitions, "RETENTION_CHUNK", 7)
    applied = await retention.apply(db, DAYS, NOW)
    assert applied.events == sum(1 for e in _old_events(130) if e.timestamp < applied.before)


async def test_an_event_resent_after_its_month_went_is_still_a_duplicate(db: Database) -> None:
    await _history(db)
    await retention.apply(db, DAYS, NOW)
    async with db.write() as session, session.begin():
        again = await writes.record_events(session, _old_events(3))
    assert (again.accepted, again.duplicates) == (0, 3)


@pytest.fixture
def retaining_app(settings: Settings, db: Database) -> Any:
    return create_app(settings.model_copy(update={"raw_event_retention_days": DAYS}),
                      database=db, clock=lambda: NOW)


def _event(event_id: str, at: datetime) -> dict[str, Any]:
    return {"event_id": event_id, "instance_id": "inst-a", "model": "gpt-4o",
            "timestamp": at.isoformat().replace("+00:00", "Z"), "tokens_in": 1, "tokens_out": 1}


async def test_ingest_refuses_an_event_older_than_the_horizon(
    db: Database, retaining_app: Any
) -> None:
    await seed(db)
    transport = httpx.ASGITransport(app=retaining_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as client:
        old = _event("too-old", HORIZON - timedelta(seconds=1))
        fresh = _event("just-in", HORIZON + timedelta(seconds=1))
        response = await client.post("/v1/usage/events", headers=auth(ACME_INGEST_TOKEN),
                                     json=[fresh, old])
        assert response.status_code == 422
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", 1, "timestamp"]
        assert "retention horizon 2026-08-22T15:30:00Z" in detail["msg"]
        # The same through GraphQL, and nothing of the batch was written.
        response = await client.post("/graphql", headers=auth(ACME_INGEST_TOKEN), json={
            "query": "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted } }",
            "variables": {"e": [{"eventId": "too-old", "instanceId": "inst-a", "model": "gpt-4o",
                                 "timestamp": old["timestamp"], "tokensIn": 1, "tokensOut": 1}]},
        })
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "retention horizon 2026-08-22T15:30:00Z" in error["message"]
        response = await client.post("/v1/usage/events", headers=auth(ACME_INGEST_TOKEN),
                                     json=[fresh])
        assert response.json() == {"accepted": 1, "duplicates": 0}


async def test_import_refuses_an_event_older_than_the_horizon(
    db: Database, tmp_path: Path
) -> None:
    await seed(db)
    stored = await _stored(db)
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"usage_events": [
        {"account_id": "acme", **_event("in", HORIZON)},
        {"account_id": "acme", **_event("out", HORIZON - timedelta(microseconds=1))},
    ]}))
    with pytest.raises(ImportFileError) as caught:
        await load(db, path, horizon=HORIZON)
    assert caught.value.path == "$.usage_events[1].timestamp"
    assert "retention horizon 2026-08-22T15:30:00Z" in str(caught.value)
    assert await _stored(db) == stored
    # Without a horizon the same file loads.
    report = await load(db, path)
    assert report.events_accepted == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_writers_meeting_a_new_month_make_it_once(db: Database) -> None:
    """Eight batches at once into a month nobody wrote before: all stored, one partition."""
    await seed(db)
    moment = datetime(2031, 5, 17, 12, tzinfo=UTC)

    async def send(n: int) -> writes.IngestResult:
        batch = [UsageEventRecord.model_validate(_event(f"may-{n}-{k}", moment))
                 for k in range(20)]
        async with db.write() as session, session.begin():
            return await writes.record_events(session, batch, account_id="acme")

    results = await asyncio.gather(*(send(n) for n in range(8)))
    assert sum(r.accepted for r in results) == 160
    async with db.engine.connect() as connection:
        months = (await connection.scalars(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'usage_events'::regclass AND c.relname LIKE 'usage_events_2031%'"
        ))).all()
    assert months == ["usage_events_2031_05"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_first_and_last_months_are_open_ended(db: Database) -> None:
    """The driver sends the first and last instants as -infinity and infinity: stored too."""
    await seed(db)
    ends = [UsageEventRecord.model_validate(_event(name, at)) for name, at in (
        ("first", datetime(1, 1, 1, tzinfo=UTC)),
        ("last", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)))]
    async with db.write() as session, session.begin():
        result = await writes.record_events(session, ends, account_id="acme")
    assert result.accepted == 2
