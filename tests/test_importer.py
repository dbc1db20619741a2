"""``meterql.importer.load``: bulk import against the spec (import-and-ingest.md, section 1).

Every expectation below is worked out by hand from the file contents. "Now" is
2026-11-20T15:30Z (``conftest.NOW``); prices are USD per million tokens, so an
event costs ``tokens_in * in_price / 1e6 + tokens_out * out_price / 1e6``.

The example file (``example()``) holds, for account ``acme``:

| event | model       | timestamp (UTC)   | in    | out  | user   | cost USD                  |
|-------|-------------|-------------------|-------|------|--------|---------------------------|
| evt-1 | gpt-4o      | 2026-11-20 12:00  | 1200  | 300  | user-7 | 0.003 + 0.003 = 0.006     |
| evt-2 | gpt-4o-mini | 2026-11-18 09:00  | 2000  | 1000 | user-8 | 0.0003 + 0.0006 = 0.0009  |
| evt-3 | gpt-4o      | 2026-11-10 00:00  | 10000 | 2000 | user-7 | 0.025 + 0.02 = 0.045      |

evt-3 is outside the 7-day window (11-14..11-20) and inside the 30-day one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from meterql.db.engine import Database
from meterql.db.tables import ApiToken, Base, UsageEvent, UsageInstanceModelHour
from meterql.importer import ImportFileError, ImportReport, load
from tests.golden import auth

READ_TOKEN = "acme-read-token"
INGEST_TOKEN = "acme-ingest-token"

GPT_4O = {"model": "gpt-4o", "provider": "openai",
          "input_usd_per_mtok": "2.50", "output_usd_per_mtok": "10.00"}
GPT_4O_MINI = {"model": "gpt-4o-mini", "provider": "openai",
               "input_usd_per_mtok": "0.15", "output_usd_per_mtok": "0.60"}
PRO_TIER = {"tier_id": "tier_pro", "tier_slug": "pro", "product_name": "Agents",
            "plan_name": "Pro", "price_cents": 4900, "billing_cycle": "monthly",
            "api_call_limit": 50000, "conversation_limit": 5000, "instance_limit": 5,
            "max_sites_per_node": 25, "token_allowance": 5000000}


def event(event_id: str, model: str, timestamp: str, tokens_in: int, tokens_out: int,
          *, account: str = "acme", instance: str = "inst-1", **extra: Any) -> dict[str, Any]:
    return {"account_id": account, "event_id": event_id, "instance_id": instance,
            "model": model, "timestamp": timestamp, "tokens_in": tokens_in,
            "tokens_out": tokens_out, **extra}


def acme_account() -> dict[str, Any]:
    return {
        "account_id": "acme",
        "tokens": [{"token": READ_TOKEN, "scopes": ["read"]},
                   {"token": INGEST_TOKEN, "scopes": ["read", "ingest"]}],
        "instances": [{"instance_id": "inst-1", "hostname": "agent-1.acme.test",
                       "status": "running"}],
        "subscriptions": [{"tier_id": "tier_pro", "status": "trialing",
                           "current_period_start": "2026-11-01T00:00:00Z",
                           "current_period_end": "2026-12-01T00:00:00Z",
                           "trial_ends_at": "2026-11-30T00:00:00Z"}],
        "webhost_nodes": [{"node_id": "node-1", "hosted_sites": 3}],
    }


def example() -> dict[str, Any]:
    """The spec's example file, with the three events of the module docstring."""
    return {
        "models": [GPT_4O, GPT_4O_MINI],
        "tiers": [PRO_TIER],
        "accounts": [acme_account()],
        "usage_events": [
            event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300,
                  end_user_id="user-7", conversation_id="conv-3"),
            event("evt-2", "gpt-4o-mini", "2026-11-18T09:00:00Z", 2000, 1000,
                  end_user_id="user-8"),
            event("evt-3", "gpt-4o", "2026-11-10T00:00:00Z", 10000, 2000, end_user_id="user-7"),
        ],
    }


def write(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    """Write ``doc`` (a document, or raw text) to a new file and return its path."""
    path = tmp_path / f"import-{len(list(tmp_path.glob('import-*.json')))}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


async def get(client: httpx.AsyncClient, url: str, token: str = READ_TOKEN) -> Any:
    response = await client.get(url, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def snapshot(db: Database, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (columns named in ``skip`` left out), in a stable order."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in skip]
            rows = (await session.execute(select(*columns))).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables


# ---------------------------------------------------------------------------
# The example file, end to end through the REST routes


SUMMARY_7 = {"active_instances": 1, "estimated_cost_usd": "0.0069", "period_days": 7,
             "total_requests": 2, "total_tokens": 4500, "total_tokens_in": 3200,
             "total_tokens_out": 1300, "unique_models": 2}
# + evt-3: 0.0069 + 0.045 = 0.0519
SUMMARY_30 = {"active_instances": 1, "estimated_cost_usd": "0.0519", "period_days": 30,
              "total_requests": 3, "total_tokens": 16500, "total_tokens_in": 13200,
              "total_tokens_out": 3300, "unique_models": 2}
PRO_PLAN = {
    "api_call_limit": 50000, "billing_cycle": "monthly", "conversation_limit": 5000,
    "current_period_end": "2026-12-01T00:00:00Z", "current_period_start": "2026-11-01T00:00:00Z",
    "instance_limit": 5, "max_sites_per_node": 25, "plan_name": "Pro", "price_cents": 4900,
    "product_name": "Agents", "status": "trialing", "tier_id": "tier_pro", "tier_slug": "pro",
    "token_allowance": 5000000,
    # 2026-11-30T00:00Z - 2026-11-20T15:30Z = 9 days 8.5 hours → 9
    "trial_days_remaining": 9, "trial_ends_at": "2026-11-30T00:00:00Z",
}
BILLING = {
    "plan": PRO_PLAN,
    "subscribed_tier_ids": ["tier_pro"],
    "usage": {
        # Period [11-01, 12-01): all three events; users user-7 and user-8.
        "active_instances": 1, "api_call_limit": 50000, "conversation_limit": 5000,
        "instance_limit": 5, "max_sites_per_node": 25, "platform_cost_usd": "49.0000",
        "token_allowance": 5000000, "total_cost_usd": "49.0519", "total_hosted_sites": 3,
        "total_requests": 3, "total_tokens": 16500, "unique_end_users": 2, "webhost_nodes": 1,
    },
}
MODELS_30 = {
    "models": [
        # gpt-4o: evt-1 + evt-3 = 0.051; 2 of 3 requests → 66.67 %
        {"estimated_cost_usd": "0.0510", "model": "gpt-4o", "pct_of_total": 66.67,
         "provider": "openai", "request_count": 2, "tokens_in": 11200, "tokens_out": 2300},
        {"estimated_cost_usd": "0.0009", "model": "gpt-4o-mini", "pct_of_total": 33.33,
         "provider": "openai", "request_count": 1, "tokens_in": 2000, "tokens_out": 1000},
    ],
    "total_requests": 3,
}
INSTANCES_30 = {
    "instances": [{"estimated_cost_usd": "0.0519", "hostname": "agent-1.acme.test",
                   "instance_id": "inst-1", "request_count": 3, "status": "running",
                   "total_tokens": 16500}],
    "total_count": 1,
}
EXPECTED_ANSWERS = {
    "/v1/metrics/summary?days=7": SUMMARY_7,
    "/v1/metrics/summary?days=30": SUMMARY_30,
    "/v1/metrics/models?days=30": MODELS_30,
    "/v1/metrics/instances?days=30": INSTANCES_30,
    "/v1/billing": BILLING,
}


async def test_example_file_loads_and_reports_counts(db: Database, tmp_path: Path) -> None:
    report = await load(db, write(tmp_path, example()))
    assert report == ImportReport(models=2, tiers=1, accounts=1, events_seen=3,
                                  events_accepted=3, events_duplicate=0, events_unpriced=0)


# VACUUM is PostgreSQL's: SQLite keeps no dead row versions behind.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_load_leaves_postgresql_vacuumed_and_analyzed(
    db: Database, tmp_path: Path
) -> None:
    """After the load's transaction: the rollups' dead row versions gone, statistics fresh."""
    await load(db, write(tmp_path, example()))
    async with db.read() as connection:
        rows = (await connection.execute(text(
            "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL "
            "FROM pg_stat_user_tables WHERE relname IN ('usage_days', 'event_keys', "
            "'usage_events_2026_11', 'usage_instance_days', 'end_users')"))).all()
    # The example's events are November's: their month's partition of the events.
    assert sorted(rows) == [(name, True, True) for name in (
        "end_users", "event_keys", "usage_days", "usage_events_2026_11", "usage_instance_days")]


@pytest.mark.parametrize("url", sorted(EXPECTED_ANSWERS))
async def test_example_file_shows_in_the_api(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, url: str
) -> None:
    await load(db, write(tmp_path, example()))
    assert await get(client, url) == EXPECTED_ANSWERS[url]


async def test_usage_points_fall_on_the_utc_day(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await load(db, write(tmp_path, example()))
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    busy = {p["date"]: p for p in points if p["requests"]}
    assert busy == {
        "2026-11-18": {"date": "2026-11-18", "estimated_cost_usd": "0.0009", "requests": 1,
                       "tokens_in": 2000, "tokens_out": 1000},
        "2026-11-20": {"date": "2026-11-20", "estimated_cost_usd": "0.0060", "requests": 1,
                       "tokens_in": 1200, "tokens_out": 300},
    }


@pytest.mark.parametrize(
    ("timestamp", "day"),
    [
        ("2026-11-20T00:00:00Z", "2026-11-20"),
        ("2026-11-20T01:00:00+05:00", "2026-11-19"),  # 2026-11-19T20:00Z
        ("2026-11-19T23:30:00-01:00", "2026-11-20"),  # 2026-11-20T00:30Z
    ],
)
async def test_offset_timestamps_are_counted_on_their_utc_day(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, timestamp: str, day: str
) -> None:
    doc = example()
    doc["usage_events"] = [event("evt-tz", "gpt-4o", timestamp, 1, 1)]
    await load(db, write(tmp_path, doc))
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert [p["date"] for p in points if p["requests"]] == [day]


# ---------------------------------------------------------------------------
# Idempotence


async def test_loading_twice_changes_nothing(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = write(tmp_path, example())
    await load(db, path)
    answers = {url: await get(client, url) for url in EXPECTED_ANSWERS}
    # created_at is compared in its own test below; every import replaces the
    # accounts' data version (answers' ETags), as prices and plans may change.
    rows = await snapshot(db, skip=("created_at", "data_version"))

    again = await load(db, path)

    assert again == ImportReport(models=2, tiers=1, accounts=1, events_seen=3,
                                 events_accepted=0, events_duplicate=3, events_unpriced=0)
    assert {url: await get(client, url) for url in EXPECTED_ANSWERS} == answers
    assert await snapshot(db, skip=("created_at", "data_version")) == rows


async def test_loading_twice_keeps_creation_times(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, example())
    await load(db, path)
    rows = await snapshot(db, skip=("data_version",))
    await load(db, path)
    assert await snapshot(db, skip=("data_version",)) == rows


async def test_events_are_deduplicated_by_account_and_event_id(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    doc = example()
    doc["accounts"].append({"account_id": "globex", "tokens": [{"token": "globex-read-token"}]})
    doc["usage_events"] = [
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300),
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300),  # same key: duplicate
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1, 1, account="globex"),  # other key
    ]
    report = await load(db, write(tmp_path, doc))
    assert (report.events_seen, report.events_accepted, report.events_duplicate) == (3, 2, 1)
    acme = await get(client, "/v1/metrics/summary?days=7")
    globex = await get(client, "/v1/metrics/summary?days=7", "globex-read-token")
    assert (acme["total_requests"], acme["total_tokens"]) == (1, 1500)
    assert (globex["total_requests"], globex["total_tokens"]) == (1, 2)


async def test_a_repeated_event_counts_its_first_copy_across_batches(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that repeats an event (here in a later batch, changed): the first copy counts."""
    from meterql import importer

    monkeypatch.setattr(importer, "BATCH", 2)
    doc = example()
    doc["usage_events"] = [
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300),
        event("evt-2", "gpt-4o", "2026-11-20T12:00:00Z", 10, 10),
        event("evt-3", "gpt-4o", "2026-11-20T12:00:00Z", 20, 20),
        event("evt-1", "gpt-4o", "2026-11-21T12:00:00Z", 5, 5, instance="inst-9"),
        event("evt-1", "gpt-4o", "2026-11-21T12:00:00Z", 7, 7),
    ]
    report = await load(db, write(tmp_path, doc))
    assert (report.events_seen, report.events_accepted, report.events_duplicate) == (5, 3, 2)
    summary = await get(client, "/v1/metrics/summary?days=7")
    assert (summary["total_requests"], summary["total_tokens"]) == (3, 1500 + 20 + 40)
    # The later copies registered nothing either.
    instances = await get(client, "/v1/metrics/instances?days=30")
    assert [i["instance_id"] for i in instances["instances"]] == ["inst-1"]


async def test_an_event_stored_before_registers_no_instance(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await load(db, write(tmp_path, example()))
    doc = example()
    doc["usage_events"] = [
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300, instance="inst-9"),
        event("evt-4", "gpt-4o", "2026-11-20T12:00:00Z", 1, 1, instance="inst-8"),
    ]
    report = await load(db, write(tmp_path, doc))
    assert (report.events_accepted, report.events_duplicate) == (1, 1)
    instances = await get(client, "/v1/metrics/instances?days=30")
    assert sorted(i["instance_id"] for i in instances["instances"]) == ["inst-1", "inst-8"]


# SQLite has one writer: no gateway can store an event while an import runs.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_event_a_gateway_stores_during_the_import_counts_once(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway commits one of the file's events after it was staged: it is the gateway's."""
    from meterql.db import rollups, writes
    from meterql.db.staging import StagedEvents
    from meterql.records import UsageEventRecord

    await load(db, write(tmp_path, {**example(), "usage_events": []}))
    write_stage = StagedEvents._write

    async def gateway_first(stage: StagedEvents) -> None:
        async with db.write() as session, session.begin():
            evt_2 = event("evt-2", "gpt-4o-mini", "2026-11-18T09:00:00Z", 2000, 1000,
                          end_user_id="user-8")
            del evt_2["account_id"]  # live ingest: the token's account
            stored = await writes.record_events(
                session, [UsageEventRecord.model_validate(evt_2)], account_id="acme")
        assert stored.accepted == 1
        await write_stage(stage)

    monkeypatch.setattr(StagedEvents, "_write", gateway_first)
    # Events alone: a file's account sections would hold the account's rows
    # (upserted) until the import commits, and the gateway would wait for it.
    report = await load(db, write(tmp_path, {"usage_events": example()["usage_events"]}))
    assert (report.events_accepted, report.events_duplicate) == (2, 1)
    assert await get(client, "/v1/billing") == BILLING
    # The rollups hold each event once: what a recount of the events gives.
    before = await snapshot(db)
    async with db.write() as session, session.begin():
        await rollups.rebuild(session)
    assert await snapshot(db) == before


async def test_imports_into_rollups_already_holding_their_hours_equal_a_recount(
    db: Database, tmp_path: Path
) -> None:
    """A second file adds to the same hours, days and keys, and to new ones, across
    instances, models and an end user: every rollup is what a recount of the events gives."""
    from meterql.db import rollups

    rng = random.Random(5)

    def events(prefix: str, count: int) -> list[dict[str, Any]]:
        return [
            event(f"{prefix}-{n}", rng.choice(["gpt-4o", "gpt-4o-mini", "unpriced"]),
                  f"2026-11-{rng.randint(17, 20)}T{rng.randrange(24):02d}:"
                  f"{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
                  rng.randrange(5_000), rng.randrange(5_000),
                  instance=rng.choice(["inst-1", "inst-2", "inst-3"]),
                  end_user_id=rng.choice(["user-1", "user-2", ""]))
            for n in range(count)
        ]

    await load(db, write(tmp_path, {**example(), "usage_events": events("a", 300)}))
    await load(db, write(tmp_path, {"usage_events": events("b", 300)}))
    before = await snapshot(db)
    assert len(before["usage_instance_model_hours"]) > 100
    async with db.write() as session, session.begin():
        assert await rollups.rebuild(session) == 600
    assert await snapshot(db) == before


async def test_an_import_makes_a_fixed_number_of_statements_besides_one_per_batch(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events reach the store in set-based statements: more events add no statements,
    more batches one each (SQLite's executemany; PostgreSQL's COPY is not a statement)."""
    from sqlalchemy import event as sa_event

    from meterql import importer

    monkeypatch.setattr(importer, "BATCH", 100)
    counted: list[str] = []

    def count(*args: Any) -> None:
        counted.append(args[2])

    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    statements = []
    for batches in (2, 6):
        doc = example()
        doc["usage_events"] = [
            event(f"b{batches}-{n}", "gpt-4o", "2026-11-20T12:00:00Z", 1, 1,
                  instance=f"inst-{n % 7}", end_user_id=f"user-{batches}-{n % 13}")
            for n in range(100 * batches)
        ]
        counted.clear()
        report = await load(db, write(tmp_path, doc))
        assert report.events_accepted == 100 * batches
        statements.append(len([s for s in counted if not s.startswith("VACUUM")]))
    sa_event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    per_batch = 1 if db.dialect == "sqlite" else 0
    assert statements[1] - statements[0] == 4 * per_batch, statements


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_sums_the_finest_rollup_by_sorting_and_only_it(
    db: Database, tmp_path: Path
) -> None:
    """The finest rollup has about a row per event, which PostgreSQL hashed at great cost:
    its statement alone runs with hashing off, which is put back as it was right after."""
    from sqlalchemy import event as sa_event

    ran: list[tuple[str, Any]] = []

    def note(*args: Any) -> None:
        ran.append((args[2], args[3]))

    doc = example()
    doc["usage_events"] = [
        event(f"s-{n}", "gpt-4o", f"2026-11-20T{n % 20:02d}:00:00Z", 1, 1, instance=f"i-{n // 20}")
        for n in range(60)
    ]
    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        assert (await load(db, write(tmp_path, doc))).events_accepted == 60
    finally:
        sa_event.remove(db.engine.sync_engine, "before_cursor_execute", note)
    hashing = [n for n, (sql, params) in enumerate(ran)
               if "set_config" in sql and "enable_hashagg" in str(params)]
    (finest,) = [n for n, (sql, _) in enumerate(ran)
                 if sql.startswith("INSERT INTO usage_instance_model_hours")]
    assert hashing == [finest - 1, finest + 1], ran[finest - 3:finest + 2]
    assert tuple(ran[finest - 1][1]) == ("enable_hashagg", "off", True)
    assert tuple(ran[finest + 1][1]) == ("enable_hashagg", "on", True)  # as it was
    async with db.read() as connection:
        rows = await connection.execute(select(
            func.sum(UsageInstanceModelHour.requests), func.count()))
        assert tuple(rows.one()) == (60, 60)  # 3 instances x 20 hours: a row per event


# ---------------------------------------------------------------------------
# Ordering, upserts, unregistered instances, unpriced models, reported costs


async def test_events_listed_first_are_priced_with_the_files_prices(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Same content, usage_events first in the text: the catalogue and accounts are
    # still applied before any event (otherwise: unknown account, or cost 0).
    doc = example()
    reordered = {key: doc[key] for key in ("usage_events", "accounts", "tiers", "models")}
    text = json.dumps(reordered)
    assert text.index('"usage_events"') < text.index('"models"')
    report = await load(db, write(tmp_path, text))
    assert (report.events_accepted, report.events_unpriced) == (3, 0)
    assert await get(client, "/v1/metrics/summary?days=30") == SUMMARY_30


async def test_second_file_updates_hostname_tier_and_prices_for_new_events_only(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await load(db, write(tmp_path, example()))
    second = {
        "models": [{**GPT_4O, "input_usd_per_mtok": "5.00", "output_usd_per_mtok": "20.00"}],
        "tiers": [{**PRO_TIER, "plan_name": "Pro Plus", "price_cents": 9900}],
        "accounts": [{"account_id": "acme", "instances": [
            {"instance_id": "inst-1", "hostname": "agent-1.acme.example", "status": "stopped"}]}],
        # At the new price: 1000 × 5 / 1e6 + 1000 × 20 / 1e6 = 0.025
        "usage_events": [event("evt-4", "gpt-4o", "2026-11-19T10:00:00Z", 1000, 1000)],
    }
    report = await load(db, write(tmp_path, second))
    assert (report.models, report.tiers, report.accounts, report.events_accepted) == (1, 1, 1, 1)

    billing = await get(client, "/v1/billing")
    assert (billing["plan"]["plan_name"], billing["plan"]["price_cents"]) == ("Pro Plus", 9900)
    # The subscription and node of the first file are untouched by the second.
    assert billing["plan"]["status"] == "trialing"
    assert billing["usage"]["webhost_nodes"] == 1
    # 99 + old events as priced then (0.0519) + evt-4 at the new price (0.025)
    assert billing["usage"]["platform_cost_usd"] == "99.0000"
    assert billing["usage"]["total_cost_usd"] == "99.0769"

    instances = await get(client, "/v1/metrics/instances?days=30")
    assert instances == {"instances": [
        {"estimated_cost_usd": "0.0769", "hostname": "agent-1.acme.example",
         "instance_id": "inst-1", "request_count": 4, "status": "stopped",
         "total_tokens": 18500}], "total_count": 1}
    # The first file's tokens still work though the second lists none.
    await get(client, "/v1/metrics/summary", INGEST_TOKEN)


async def test_event_for_unregistered_instance_registers_it(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    doc = example()
    # 100 × 2.5 / 1e6 + 100 × 10 / 1e6 = 0.00125 → 0.0013 half-up
    doc["usage_events"] = [
        event("evt-new", "gpt-4o", "2026-11-19T08:00:00Z", 100, 100, instance="inst-new"),
        event("evt-1", "gpt-4o", "2026-11-20T12:00:00Z", 1200, 300),
    ]
    await load(db, write(tmp_path, doc))
    # A later file with events only: a registered instance keeps its hostname and status.
    await load(db, write(tmp_path, {"usage_events": [
        event("evt-9", "gpt-4o", "2026-11-20T13:00:00Z", 1200, 300)]}))

    assert await get(client, "/v1/metrics/instances?days=7") == {
        "instances": [
            {"estimated_cost_usd": "0.0120", "hostname": "agent-1.acme.test",
             "instance_id": "inst-1", "request_count": 2, "status": "running",
             "total_tokens": 3000},
            {"estimated_cost_usd": "0.0013", "hostname": "", "instance_id": "inst-new",
             "request_count": 1, "status": "unknown", "total_tokens": 200},
        ],
        "total_count": 2,
    }


async def test_unpriced_model_costs_zero_and_a_later_price_does_not_rewrite_it(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    doc = example()
    doc["usage_events"].append(event("evt-m1", "mystery", "2026-11-19T10:00:00Z", 500, 500))
    report = await load(db, write(tmp_path, doc))
    assert (report.events_accepted, report.events_unpriced) == (4, 1)

    models = (await get(client, "/v1/metrics/models?days=7"))["models"]
    assert models[-1] == {"estimated_cost_usd": "0.0000", "model": "mystery",
                          "pct_of_total": 33.33, "provider": "", "request_count": 1,
                          "tokens_in": 500, "tokens_out": 500}
    # evt-1 + evt-2 only: mystery adds nothing.
    assert (await get(client, "/v1/metrics/summary?days=7"))["estimated_cost_usd"] == "0.0069"

    later = {
        "models": [{"model": "mystery", "provider": "acme-labs",
                    "input_usd_per_mtok": "1.00", "output_usd_per_mtok": "1.00"}],
        # 1000 × 1 / 1e6 + 1000 × 1 / 1e6 = 0.002
        "usage_events": [event("evt-m2", "mystery", "2026-11-20T10:00:00Z", 1000, 1000)],
    }
    report = await load(db, write(tmp_path, later))
    assert (report.events_accepted, report.events_unpriced) == (1, 0)

    mystery = {m["model"]: m for m in (await get(client, "/v1/metrics/models?days=7"))["models"]}
    # evt-m1 stays at 0; only evt-m2 is priced.
    assert (mystery["mystery"]["request_count"], mystery["mystery"]["estimated_cost_usd"]) == (
        2, "0.0020")
    assert (await get(client, "/v1/metrics/summary?days=7"))["estimated_cost_usd"] == "0.0089"


async def _stored_costs(db: Database) -> dict[str, int]:
    async with db.read() as session:
        rows = await session.execute(select(UsageEvent.event_id, UsageEvent.cost_nanos))
        return {event_id: cost for event_id, cost in rows}


@pytest.mark.parametrize(
    ("model", "cost_usd", "nanos"),
    [
        ("gpt-4o", "1.5", 1_500_000_000),  # estimate would be 0.0125
        ("gpt-4o", "0", 0),  # a reported zero is kept, not replaced by the estimate
        ("mystery", "0.25", 250_000_000),  # no price needed when the cost is reported
        ("gpt-4o", "0.0000123456789", 12_346),  # 12345.6789 nanos, half-up
        ("gpt-4o", "0.0000000005", 1),  # half a nano rounds up
    ],
)
async def test_cost_usd_overrides_the_estimate(
    db: Database, tmp_path: Path, model: str, cost_usd: str, nanos: int
) -> None:
    doc = example()
    doc["usage_events"] = [
        event("evt-c", model, "2026-11-20T12:00:00Z", 1000, 1000, cost_usd=cost_usd),
        # Without cost_usd: 1000 × 2.5 / 1e6 + 1000 × 10 / 1e6 = 0.0125
        event("evt-e", "gpt-4o", "2026-11-20T12:00:00Z", 1000, 1000),
    ]
    await load(db, write(tmp_path, doc))
    assert await _stored_costs(db) == {"evt-c": nanos, "evt-e": 12_500_000}


async def test_cost_usd_shows_in_the_summary(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    doc = example()
    doc["usage_events"] = [event("evt-c", "gpt-4o", "2026-11-20T12:00:00Z", 1000, 1000,
                                 cost_usd="1.23456")]
    await load(db, write(tmp_path, doc))
    # 1.23456 → 1.2346 on the wire (half-up at 4 places)
    assert (await get(client, "/v1/metrics/summary?days=7"))["estimated_cost_usd"] == "1.2346"


# ---------------------------------------------------------------------------
# Tokens


async def test_tokens_are_stored_hashed(db: Database, tmp_path: Path) -> None:
    await load(db, write(tmp_path, example()))
    async with db.read() as session:
        tokens = (await session.execute(
            select(ApiToken.account_id, ApiToken.token_hash, ApiToken.scopes,
                   ApiToken.revoked_at))).all()
    assert sorted(tuple(t) for t in tokens) == sorted([
        ("acme", hashlib.sha256(READ_TOKEN.encode()).hexdigest(), "read", None),
        ("acme", hashlib.sha256(INGEST_TOKEN.encode()).hexdigest(), "ingest,read", None),
    ])
    # The clear text appears in no column of any table.
    for table, rows in (await snapshot(db)).items():
        for row in rows:
            for value in row:
                assert READ_TOKEN not in str(value), table
                assert INGEST_TOKEN not in str(value), table


@pytest.mark.parametrize("token", [READ_TOKEN, INGEST_TOKEN])
async def test_file_tokens_authenticate(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, token: str
) -> None:
    await load(db, write(tmp_path, example()))
    assert await get(client, "/v1/metrics/summary?days=30", token) == SUMMARY_30


async def test_unknown_token_is_refused_after_a_load(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await load(db, write(tmp_path, example()))
    response = await client.get("/v1/metrics/summary", headers=auth("acme-read-token-x"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid authentication credentials"}


# ---------------------------------------------------------------------------
# Invalid files: refused whole, the first bad value named, nothing written


def second_file() -> dict[str, Any]:
    """A file that would change a lot if any of it were written.

    A new model, a tier price change, a new account with a token, a hostname
    change for acme and new events: every one of them visible in a snapshot.
    """
    acme = acme_account()
    acme["instances"][0]["hostname"] = "changed.acme.test"
    return {
        "models": [{"model": "claude-x", "provider": "anthropic",
                    "input_usd_per_mtok": "3", "output_usd_per_mtok": "15"}, GPT_4O],
        "tiers": [{**PRO_TIER, "price_cents": 1}],
        "accounts": [acme, {"account_id": "initech",
                            "tokens": [{"token": "initech-read-token"}]}],
        "usage_events": [
            event("new-0", "claude-x", "2026-11-20T01:00:00Z", 10, 10),
            event("new-1", "gpt-4o", "2026-11-20T02:00:00Z", 10, 10, instance="inst-2"),
            event("new-2", "gpt-4o", "2026-11-20T03:00:00Z", 10, 10, account="initech"),
            event("new-3", "mystery", "2026-11-20T04:00:00Z", 10, 10),
        ],
    }


def changed(edit: Any) -> Any:
    def build() -> dict[str, Any]:
        doc = second_file()
        edit(doc)
        return doc
    return build


def many_events_then(edit: Any, count: int = 12_000) -> Any:
    """``count`` good events (more than two 5,000-event batches), then one edited event."""
    def build() -> dict[str, Any]:
        doc = second_file()
        doc["usage_events"] = [event(f"bulk-{n}", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1)
                               for n in range(count)]
        last = event("bulk-last", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1)
        edit(last)
        doc["usage_events"].append(last)
        return doc
    return build


def _set(*keys: Any, value: Any) -> Any:
    def edit(doc: Any) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value
    return edit


def _delete(*keys: Any) -> Any:
    def edit(doc: Any) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        del doc[keys[-1]]
    return edit


INVALID = [
    # (id, builder of the file: a document or raw text, JSON path of the first bad value)
    ("not-an-object", lambda: "[]", "$"),
    ("null-document", lambda: "null", "$"),
    ("empty-file", lambda: "", "$"),
    ("malformed-json", lambda: json.dumps(second_file())[:-2], "$"),
    ("trailing-garbage", lambda: json.dumps(second_file()) + " {}", "$"),
    ("unknown-top-level-key", changed(_set("usage", value=[])), "$.usage"),
    ("section-not-an-array", changed(_set("models", value=GPT_4O)), "$.models"),
    ("events-not-an-array", changed(_set("usage_events", value={})), "$.usage_events"),
    ("negative-tokens-in", changed(_set("usage_events", 2, "tokens_in", value=-1)),
     "$.usage_events[2].tokens_in"),
    ("string-tokens-out", changed(_set("usage_events", 3, "tokens_out", value="10")),
     "$.usage_events[3].tokens_out"),
    ("missing-account-id", changed(_delete("usage_events", 1, "account_id")),
     "$.usage_events[1].account_id"),
    ("unknown-account", changed(_set("usage_events", 2, "account_id", value="nobody")),
     "$.usage_events[2].account_id"),
    ("naive-timestamp", changed(_set("usage_events", 0, "timestamp",
                                     value="2026-11-20T01:00:00")),
     "$.usage_events[0].timestamp"),
    ("negative-cost", changed(_set("usage_events", 1, "cost_usd", value="-0.01")),
     "$.usage_events[1].cost_usd"),
    ("unknown-event-field", changed(_set("usage_events", 0, "tokens", value=1)),
     "$.usage_events[0].tokens"),
    ("unknown-tier", changed(_set("accounts", 0, "subscriptions", 0, "tier_id",
                                  value="tier_gold")),
     "$.accounts[0].subscriptions[0].tier_id"),
    ("price-with-10-decimals", changed(_set("models", 0, "input_usd_per_mtok",
                                            value="2.5000000001")),
     "$.models[0].input_usd_per_mtok"),
    ("bad-scope", changed(_set("accounts", 1, "tokens", 0, "scopes", value=["admin"])),
     "$.accounts[1].tokens[0].scopes[0]"),
    ("bad-event-after-12000", many_events_then(_set("tokens_in", value=-1)),
     "$.usage_events[12000].tokens_in"),
    ("unknown-account-after-12000", many_events_then(_set("account_id", value="nobody")),
     "$.usage_events[12000].account_id"),
    # 0001-01-01T00:00+01:00 is 0000-12-31T23:00Z, before anything datetime can hold.
    ("timestamp-out-of-range-after-12000",
     many_events_then(_set("timestamp", value="0001-01-01T00:00:00+01:00")),
     "$.usage_events[12000].timestamp"),
    ("unknown-key-after-12000-events",
     lambda: {**many_events_then(lambda _: None)(), "usage": []}, "$.usage"),
    ("bad-model-after-12000-events", lambda: _events_first(changed(
        _set("models", 0, "input_usd_per_mtok", value="-1"))()), "$.models[0].input_usd_per_mtok"),
    ("malformed-json-in-the-events", lambda: json.dumps(many_events_then(lambda _: None)())
     .replace('"bulk-9000"', '"bulk-9000'), "$"),
]


def _events_first(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with 12,000 good events, written before every other section."""
    events = [event(f"bulk-{n}", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1) for n in range(12_000)]
    return {"usage_events": events, **{k: v for k, v in doc.items() if k != "usage_events"}}


@pytest.mark.parametrize(("build", "path"), [(b, p) for _, b, p in INVALID],
                         ids=[case for case, _, _ in INVALID])
async def test_invalid_file_is_refused_whole(
    db: Database, client: httpx.AsyncClient, tmp_path: Path, build: Any, path: str
) -> None:
    await load(db, write(tmp_path, example()))
    before = await snapshot(db)
    answers = {url: await get(client, url) for url in EXPECTED_ANSWERS}

    with pytest.raises(ImportFileError) as caught:
        await load(db, write(tmp_path, build()))

    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")
    assert await snapshot(db) == before
    assert {url: await get(client, url) for url in EXPECTED_ANSWERS} == answers
    # The new account's token was never stored.
    response = await client.get("/v1/metrics/summary", headers=auth("initech-read-token"))
    assert response.status_code == 401


async def test_invalid_file_leaves_an_empty_database_empty(db: Database, tmp_path: Path) -> None:
    doc = changed(_set("usage_events", 3, "tokens_in", value=-5))()
    with pytest.raises(ImportFileError) as caught:
        await load(db, write(tmp_path, doc))
    assert caught.value.path == "$.usage_events[3].tokens_in"
    assert all(rows == [] for rows in (await snapshot(db)).values())


async def test_unknown_account_before_a_bad_field_is_reported_first(
    db: Database, tmp_path: Path
) -> None:
    doc = second_file()
    doc["usage_events"][0]["account_id"] = "nobody"
    doc["usage_events"][3]["tokens_in"] = -1
    with pytest.raises(ImportFileError) as caught:
        await load(db, write(tmp_path, doc))
    assert caught.value.path == "$.usage_events[0].account_id"


async def test_first_bad_event_in_a_later_batch_is_reported_before_a_later_account(
    db: Database, tmp_path: Path
) -> None:
    doc = many_events_then(_set("tokens_out", value=-1))()
    doc["usage_events"][12_000 - 1]["timestamp"] = "2026-11-19T12:00:00"  # no time zone
    doc["usage_events"].append(event("after", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1,
                                     account="nobody"))
    with pytest.raises(ImportFileError) as caught:
        await load(db, write(tmp_path, doc))
    assert str(caught.value) == "$.usage_events[11999].timestamp: Input should have timezone info"
    assert all(rows == [] for rows in (await snapshot(db)).values())


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("0001-01-01T00:00:00+00:01", "Value error, timestamp is out of range"),
        ("9999-12-31T23:59:59-00:01", "Value error, timestamp is out of range"),
        ("9999-12-31T23:59:59", "Input should have timezone info"),
        # Seconds since 1970 are no ISO 8601 text: refused as ingest refuses them.
        (1763640000, "Input should be an ISO 8601 date and time with a UTC offset, "
                     "e.g. 2026-11-20T12:00:00Z"),
    ],
)
async def test_timestamp_errors_name_the_event(
    db: Database, tmp_path: Path, timestamp: str | int, message: str
) -> None:
    doc = second_file()
    doc["usage_events"][2]["timestamp"] = timestamp
    doc["usage_events"][3]["tokens_in"] = -1  # later in the file: not the one reported
    with pytest.raises(ImportFileError) as caught:
        await load(db, write(tmp_path, doc))
    assert str(caught.value) == f"$.usage_events[2].timestamp: {message}"


async def test_timestamps_near_the_ends_of_the_range_are_accepted(
    db: Database, tmp_path: Path
) -> None:
    # Refused by the quick check of every event, then accepted by the full one.
    doc = example()
    doc["usage_events"] = [
        event("evt-first", "gpt-4o", "0001-01-01T00:00:00Z", 1, 1),
        event("evt-last", "gpt-4o", "9999-12-31T23:59:59.999999Z", 1, 1),
        event("evt-offset", "gpt-4o", "0001-01-01T23:00:00+23:00", 1, 1),
        event("evt-now", "gpt-4o", "2026-11-20T12:00:00Z", 1, 1),
    ]
    report = await load(db, write(tmp_path, doc))
    assert (report.events_seen, report.events_accepted) == (4, 4)
    async with db.read() as session:
        stored = set((await session.execute(select(UsageEvent.event_id))).scalars())
    assert stored == {"evt-first", "evt-last", "evt-offset", "evt-now"}


async def test_sections_after_many_events_are_applied_first(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Pass 1 skips 12,000 events to find the catalogue and the account behind them.
    doc = _events_first(example())
    assert next(iter(doc)) == "usage_events"
    report = await load(db, write(tmp_path, doc))
    assert report == ImportReport(models=2, tiers=1, accounts=1, events_seen=12_000,
                                  events_accepted=12_000, events_duplicate=0, events_unpriced=0)
    summary = await get(client, "/v1/metrics/summary?days=7")
    # 12,000 × (2.5 + 10) / 1e6 = 0.15 USD: priced with the file's prices.
    assert (summary["total_requests"], summary["estimated_cost_usd"]) == (12_000, "0.1500")


async def test_garbage_collector_is_restored(db: Database, tmp_path: Path) -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    await load(db, write(tmp_path, example()))
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, frozen)
    with pytest.raises(ImportFileError):
        await load(db, write(tmp_path, changed(_set("usage_events", 3, "tokens_in", value=-5))()))
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, frozen)


# ---------------------------------------------------------------------------
# A large file: several batches, progress reported


async def test_large_file_loads_across_batches_with_progress(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    doc = example()
    # 12,000 events of 1 in / 1 out on gpt-4o: 12,000 × 12.5e-6 = 0.15 USD
    doc["usage_events"] = [event(f"bulk-{n}", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1)
                           for n in range(12_000)]
    path = write(tmp_path, doc)
    seen: list[int] = []

    report = await load(db, path, progress=seen.append)

    assert (report.events_seen, report.events_accepted, report.events_duplicate) == (
        12_000, 12_000, 0)
    summary = await get(client, "/v1/metrics/summary?days=7")
    assert (summary["total_requests"], summary["total_tokens"]) == (12_000, 24_000)
    assert summary["estimated_cost_usd"] == "0.1500"
    # One call per full batch and one at the end, bytes never going backwards.
    assert len(seen) >= 3
    assert seen == sorted(seen)
    size = path.stat().st_size
    assert size > 1024 * 1024
    assert seen[-1] == 2 * size  # two passes over the file
    # The first pass reports as it reads (every MiB), up to the whole file.
    first = [done for done in seen if done <= size]
    assert len(first) >= 2
    assert first[-1] == size


async def test_a_load_leaves_postgresql_fresh_statistics(db: Database, tmp_path: Path) -> None:
    """Right after a load the planner knows the tables' sizes (ANALYZE in the load)."""
    from sqlalchemy import text

    report = await load(db, write(tmp_path, example()))
    assert report.events_accepted > 0
    if db.dialect != "postgresql":
        return  # SQLite's planner needs no statistics for these reads
    async with db.read() as connection:
        tuples = await connection.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'usage_instance_days'")
        )
        stored = await connection.scalar(text("SELECT count(*) FROM usage_instance_days"))
    # Never analysed, reltuples is -1; analysed, it is the row count.
    assert tuples == stored > 0
