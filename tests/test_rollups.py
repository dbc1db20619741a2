"""Rollups: ranges cut on their grains, period sums and end users equal to raw events.

The routes read rollups, never the events of a whole window; these tests pin
the pieces that make that exact: how an arbitrary range is cut into days,
hours and leftover instants, sums over arbitrary ranges, the distinct end-user
count on both of its paths, duplicates, and the migration that fills the
rollups of a database that already holds events.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from meterql.db import rollups, series, usage, writes
from meterql.db.engine import Database
from meterql.db.migrate import alembic_config, upgrade
from meterql.db.tables import (
    EndUser,
    EndUsersLastSeenDay,
    EndUsersLastSeenHour,
    InstanceLastDay,
    ModelLastDay,
    UsageDay,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageInstanceModelHour,
    UsageModelDay,
    UsageModelHour,
    UsageQuarterHour,
)
from meterql.db.usage import Totals
from meterql.records import AccountRecord, InstanceRecord, UsageEventRecord
from meterql.windows import (
    HOUR,
    DayWindow,
    epoch_hour,
    hour_start,
    split_range,
    start_of_day,
)
from tests.golden import seed

BASE = datetime(2026, 10, 1, tzinfo=UTC)
instants = st.integers(min_value=0, max_value=10 * 86_400 * 1000).map(
    lambda ms: BASE + timedelta(milliseconds=ms)
)


@given(instants, instants)
def test_split_range_covers_the_range_exactly_once(a: datetime, b: datetime) -> None:
    start, end = min(a, b), max(a, b)
    parts = split_range(start, end)
    spans: list[tuple[datetime, datetime]] = []
    if parts.days is not None:
        first, last = parts.days
        assert first <= last
        spans.append((start_of_day(first), start_of_day(last) + timedelta(days=1)))
    spans += [(hour_start(h0), hour_start(h1)) for h0, h1 in parts.hours]
    spans += list(parts.instants)
    spans.sort()
    assert all(s < e for s, e in spans)
    if start == end:
        assert spans == []
        return
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(spans))
    # No whole hour is left among the instants: the coarser grains took those.
    for s, e in parts.instants:
        hour = hour_start(epoch_hour(s))
        first_whole_hour = hour if hour == s else hour + HOUR
        assert first_whole_hour + HOUR > e
    assert len(parts.instants) <= 4 and len(parts.hours) <= 2


@pytest.mark.parametrize(
    ("moment", "hour"),
    [
        ("1970-01-01T00:00:00+00:00", 0),
        ("1970-01-01T00:59:59.999999+00:00", 0),
        ("1969-12-31T23:59:59.999999+00:00", -1),
        ("2026-11-20T15:30:00+00:00", 498_663),  # calendar.timegm(...) // 3600
        ("2026-11-20T17:30:00+02:00", 498_663),
    ],
)
def test_epoch_hour(moment: str, hour: int) -> None:
    instant = datetime.fromisoformat(moment)
    assert epoch_hour(instant) == hour
    assert hour_start(hour) <= instant < hour_start(hour) + HOUR


# --- sums against the raw events -------------------------------------------------

ACCOUNT = "acme"
INSTANCES = ["i0", "i1", "i2", "i3"]


def _events(rng: random.Random, count: int, prefix: str) -> list[UsageEventRecord]:
    """Events over ten days, many near midnights and hour boundaries."""
    events = []
    for n in range(count):
        moment = BASE + timedelta(seconds=rng.randrange(10 * 86_400))
        if n % 3 == 0:  # pull a third onto the edges the range cutting cares about
            moment = moment.replace(minute=rng.choice([0, 59]), second=rng.choice([0, 59]))
        events.append(
            UsageEventRecord(
                event_id=f"{prefix}{n}",
                instance_id=rng.choice(INSTANCES),
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "unpriced"]),
                timestamp=moment,
                tokens_in=rng.randrange(5_000),
                tokens_out=rng.randrange(5_000),
                end_user_id=rng.choice([None, "", "u1", "u2", "u3", "u4", "u5"]),
            )
        )
    return events


async def _record(db: Database, events: list[UsageEventRecord]) -> writes.IngestResult:
    async with db.write() as session, session.begin():
        await writes.upsert_account(
            session,
            AccountRecord(
                account_id=ACCOUNT, instances=[InstanceRecord(instance_id=i) for i in INSTANCES]
            ),
        )
        return await writes.record_events(session, events, account_id=ACCOUNT)


async def _stored(db: Database) -> list[dict[str, Any]]:
    """Every stored event of the account, as the raw truth."""
    from meterql.db.tables import UsageEvent as E

    async with db.read() as session:
        rows = await session.execute(
            select(E.instance_id, E.occurred_at, E.tokens_in, E.tokens_out, E.cost_nanos,
                   E.end_user_id).where(E.account_id == ACCOUNT)
        )
        return [r._asdict() for r in rows]


def _raw_period(events: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, Any]:
    inside = [e for e in events if start <= e["occurred_at"] < end]
    per: dict[str, list[int]] = {}
    for e in inside:
        sums = per.setdefault(e["instance_id"], [0, 0, 0, 0])
        sums[0] += 1
        sums[1] += e["tokens_in"]
        sums[2] += e["tokens_out"]
        sums[3] += e["cost_nanos"]
    return {
        "per": per,
        "end_users": len({e["end_user_id"] for e in inside if e["end_user_id"]}),
    }


async def test_period_usage_totals_and_end_users_equal_the_raw_events(db: Database) -> None:
    rng = random.Random(7)
    await seed(db)  # prices for gpt-4o and gpt-4o-mini
    await _record(db, _events(rng, 400, "a"))
    raw = await _stored(db)
    ranges = [
        (BASE + timedelta(hours=13, minutes=27), BASE + timedelta(days=6, hours=2, seconds=1)),
        (BASE, BASE + timedelta(days=10)),  # whole days only
        (BASE + timedelta(hours=5), BASE + timedelta(hours=9)),  # whole hours only
        (BASE + timedelta(minutes=59, seconds=59), BASE + timedelta(hours=1)),  # one second
        (BASE + timedelta(days=9, hours=23, minutes=30), BASE + timedelta(days=12)),
    ]
    ranges += [
        tuple(sorted(BASE + timedelta(seconds=rng.randrange(11 * 86_400)) for _ in range(2)))
        for _ in range(15)
    ]
    # Ranges ending after the last event: counted from last-seen buckets.
    ranges += [
        (BASE + timedelta(seconds=rng.randrange(10 * 86_400)), BASE + timedelta(days=10, hours=7))
        for _ in range(10)
    ]
    for start, end in ranges:
        got = await usage.period_usage(db.reads, ACCOUNT, start, end)
        expected = _raw_period(raw, start, end)
        assert {
            r.instance_id: [r.requests, r.tokens_in, r.tokens_out, r.cost_nanos]
            for r in got.by_instance
        } == expected["per"], (start, end)
        assert got.totals.requests == sum(v[0] for v in expected["per"].values())
        assert got.totals.instances == len(expected["per"])
        # Ranges ending in the past (events after them) take the counting path,
        # those ending after the last event the last-seen path: both exact.
        assert got.end_users == expected["end_users"]
        # The totals alone (the account's own rollups, instances probed): the same.
        totals = await usage.period_totals(db.reads, ACCOUNT, start, end)
        assert totals.totals == Totals(
            *(sum(v[n] for v in expected["per"].values()) for n in range(4)),
            instances=len(expected["per"]),
        ), (start, end)
        assert totals.end_users == expected["end_users"]


async def test_a_late_event_moves_last_seen_only_forward(db: Database) -> None:
    late, early = BASE + timedelta(days=5), BASE + timedelta(days=1)
    for event_id, moment in (("late", late), ("early", early)):
        await _record(db, [UsageEventRecord(event_id=event_id, instance_id="i0", model="m",
                                            timestamp=moment, tokens_in=1, tokens_out=1,
                                            end_user_id="u1")])
    async with db.read() as session:
        assert await session.scalar(select(EndUser.last_seen_at)) == late
        # Only the early event lies in this range; the late one is after it.
        in_range = await usage.period_usage(db.reads, ACCOUNT, BASE, BASE + timedelta(days=2))
        before = await usage.period_usage(db.reads, ACCOUNT, BASE, early)
        assert (in_range.end_users, before.end_users) == (1, 0)


async def _rollup_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    tables = {"days": UsageDay, "instance_days": UsageInstanceDay, "model_days": UsageModelDay,
              "instance_hours": UsageInstanceHour,
              "instance_model_hours": UsageInstanceModelHour, "end_users": EndUser,
              "seen_days": EndUsersLastSeenDay, "seen_hours": EndUsersLastSeenHour,
              "quarter_hours": UsageQuarterHour, "model_hours": UsageModelHour,
              "instance_last_days": InstanceLastDay, "model_last_days": ModelLastDay}
    # Every table derived from the events is compared: a new rollup joins here.
    assert {t.__tablename__ for t in tables.values()} == {  # type: ignore[attr-defined]
        table.name for table in rollups.DERIVED_TABLES}
    found = {}
    async with db.read() as session:
        for name, table in tables.items():
            rows = await session.execute(select(table.__table__))  # type: ignore[attr-defined]
            found[name] = sorted(tuple(r) for r in rows)
    return found


async def test_duplicates_never_reach_the_rollups(db: Database) -> None:
    events = _events(random.Random(3), 60, "d")
    first = await _record(db, events)
    before = await _rollup_rows(db)
    again = await _record(db, events[:30] + _events(random.Random(3), 60, "d")[30:])
    assert (first.accepted, again.accepted, again.duplicates) == (60, 0, 60)
    assert await _rollup_rows(db) == before
    assert sum(r[2] for r in before["days"]) == 60  # requests, after (account, day)


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
async def test_migration_fills_rollups_from_stored_events(db: Database, revision: str) -> None:
    """A database with events from before the rollups gets the very rows ingest writes."""
    await _record(db, _events(random.Random(11), 300, "m"))
    written = await _rollup_rows(db)
    assert all(written.values())
    async with db.engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.downgrade(alembic_config(sync), revision)
        )
    await upgrade(db.engine)
    assert await _rollup_rows(db) == written


async def test_days_window_reads_match_the_period_reader(db: Database) -> None:
    """The days=N readers and the arbitrary-range reader agree on whole days."""
    await _record(db, _events(random.Random(5), 200, "w"))
    window = DayWindow(first_day=BASE.date() + timedelta(days=2),
                       last_day=BASE.date() + timedelta(days=8))
    totals = await usage.totals(db.reads, ACCOUNT, window)
    period = await usage.period_usage(db.reads, ACCOUNT, window.start, window.end)
    days = await usage.per_day(db.reads, ACCOUNT, window)
    instances = await usage.per_instance(db.reads, ACCOUNT, window)
    assert totals.requests == period.totals.requests == sum(d.requests for d in days)
    assert totals.cost_nanos == period.totals.cost_nanos == sum(d.cost_nanos for d in days)
    assert totals.instances == period.totals.instances
    assert [(i.instance_id, i.requests) for i in instances if i.requests] == [
        (i.instance_id, i.requests) for i in period.by_instance
    ]


async def _assert_used_in_every_window(
    db: Database, days: dict[str, list[int]], counted: str
) -> None:
    """Each window of the eleven days counts the keys of ``days`` (their days) used in it.

    ``counted`` is ``"models"`` or ``"instances"``: the summary's totals and
    a series' group counts are checked.
    """
    for first, last in itertools.combinations_with_replacement(range(11), 2):
        window = DayWindow(first_day=BASE.date() + timedelta(days=first),
                           last_day=BASE.date() + timedelta(days=last))
        expected = sum(any(first <= day <= last for day in used) for used in days.values())
        totals = await usage.totals(db.reads, ACCOUNT, window)
        counts = await series.group_counts(db.reads, ACCOUNT, window.first_day, window.last_day)
        assert (getattr(totals, counted), getattr(counts, counted)) == (expected, expected), (
            first, last)


async def test_models_used_in_a_window_are_those_with_an_event_in_it(db: Database) -> None:
    """Models with events only before or after a window are not counted in it.

    Each model has events on days of its own (an unpriced one among them), so
    every window below starts or ends between two models' days.
    """
    days = {"a-model": [0, 1], "b-model": [3], "c-unpriced": [5, 9], "d-model": [7]}
    await _record(db, [
        UsageEventRecord(event_id=f"{model}-{day}", instance_id="i0", model=model,
                         timestamp=BASE + timedelta(days=day, hours=12), tokens_in=1, tokens_out=1)
        for model, used in days.items() for day in used
    ])
    await _assert_used_in_every_window(db, days, "models")


async def test_instances_used_in_a_range_are_those_with_an_event_in_it(db: Database) -> None:
    """Counted from each instance's latest day, probed only where that day cannot tell.

    The later days arrive first (a latest day never moves back), one
    instance's events lie only after the windows that end before them (the
    future, seen from those windows), and the billing ranges start and end
    mid-day, on the instances' own days too.
    """
    days = {"i0": [0, 1], "i1": [3], "i2": [5, 9], "i3": [7]}
    events = [
        UsageEventRecord(event_id=f"{instance}-{day}", instance_id=instance, model="gpt-4o",
                         timestamp=BASE + timedelta(days=day, hours=12), tokens_in=1,
                         tokens_out=1)
        for instance, used in days.items() for day in used
    ]
    for batch in (events[1::2], events[0::2]):
        await _record(db, batch)
    await _assert_used_in_every_window(db, days, "instances")
    for start_hours, end_hours in itertools.combinations(range(0, 11 * 24, 6), 2):
        start, end = BASE + timedelta(hours=start_hours), BASE + timedelta(hours=end_hours)
        expected = sum(any(start <= BASE + timedelta(days=day, hours=12) < end for day in used)
                       for used in days.values())
        period = await usage.period_totals(db.reads, ACCOUNT, start, end)
        assert period.totals.instances == expected, (start, end)


def test_rollup_statements_name_every_column_of_their_tables() -> None:
    """Each rollup writes its table's whole primary key, then every measure."""
    tables = [UsageDay, UsageInstanceDay, UsageInstanceHour, UsageModelDay,
              UsageInstanceModelHour, UsageQuarterHour, UsageModelHour]
    for (statement, _), table in zip(rollups._ROLLUPS, tables, strict=True):
        columns = table.__table__.columns  # type: ignore[attr-defined]
        primary = [c.name for c in columns if c.primary_key]
        assert statement.columns == (*primary, *rollups.MEASURES)
        assert {c.name for c in columns} == set(statement.columns)


async def test_rebuild_recomputes_rollups_from_the_events(db: Database) -> None:
    """After events were stored without their sums, a rebuild gives what ingest would have."""
    await _record(db, _events(random.Random(13), 250, "r"))
    written = await _rollup_rows(db)
    async with db.write() as session, session.begin():
        # An old gateway's doing: sums and last-seen instants that no longer match.
        await session.execute(UsageDay.__table__.delete())  # type: ignore[attr-defined]
        await session.execute(UsageInstanceHour.__table__.update().values(requests=0))  # type: ignore[attr-defined]
    assert await _rollup_rows(db) != written
    async with db.write() as session, session.begin():
        original_chunk, rollups.REBUILD_CHUNK = rollups.REBUILD_CHUNK, 40  # several pages
        try:
            assert await rollups.rebuild(session) == 250
        finally:
            rollups.REBUILD_CHUNK = original_chunk
    assert await _rollup_rows(db) == written


async def assert_last_seen_counts_match(db: Database) -> None:
    """Every day's and hour's count equals the end users whose last-seen instant is in it."""
    async with db.read() as connection:
        users = (await connection.execute(select(EndUser.account_id, EndUser.last_seen_at))).all()
        days = (await connection.execute(select(
            EndUsersLastSeenDay.account_id, EndUsersLastSeenDay.day, EndUsersLastSeenDay.users
        ))).all()
        hours = (await connection.execute(select(
            EndUsersLastSeenHour.account_id, EndUsersLastSeenHour.hour, EndUsersLastSeenHour.users
        ))).all()
    want_days: dict[tuple[str, Any], int] = {}
    want_hours: dict[tuple[str, Any], int] = {}
    for account, seen in users:
        want_days[(account, seen.date())] = want_days.get((account, seen.date()), 0) + 1
        hour = epoch_hour(seen)
        want_hours[(account, hour)] = want_hours.get((account, hour), 0) + 1
    assert {(a, d): n for a, d, n in days if n} == want_days
    assert {(a, h): n for a, h, n in hours if n} == want_hours
    assert all(n >= 0 for *_, n in [*days, *hours])


async def test_last_seen_counts_follow_users_through_batches(db: Database) -> None:
    """Users seen again later, earlier, or in the same batch twice move between buckets once."""
    rng = random.Random(21)
    for n in range(4):
        events = _events(rng, 80, f"b{n}")
        rng.shuffle(events)  # late events among early ones
        await _record(db, events)
        await assert_last_seen_counts_match(db)


def test_a_bulk_load_vacuums_every_derived_table() -> None:
    """tidy_after_load names each rollup and end-user table, and the events."""
    vacuumed = {str(statement).removeprefix("VACUUM (ANALYZE) ")
                for statement in writes._VACUUM_LOADED_TABLES}
    assert {table.name for table in rollups.DERIVED_TABLES} | {"usage_events"} <= vacuumed


def _import_file(path: Path, events: list[UsageEventRecord], batch: int) -> Path:
    """An import file of ``events`` for the account (every price and instance known)."""
    document = {
        "models": [{"model": "gpt-4o", "input_usd_per_mtok": "2.5", "output_usd_per_mtok": "10"}],
        "accounts": [{"account_id": ACCOUNT,
                      "instances": [{"instance_id": i} for i in INSTANCES]}],
        "usage_events": [
            {"account_id": ACCOUNT, **e.model_dump(mode="json", exclude_none=True)}
            for e in events
        ],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# Instants where computing a key could go wrong: before 1970 (where
# integer division truncates toward zero) a fraction of a second before an
# hour, the ends of the importable range, and an offset that changes the day.
EDGE_TIMESTAMPS = (
    "1969-12-31T23:59:59.500000Z", "1969-12-31T23:00:00.250000Z", "1969-12-31T22:59:59Z",
    "1970-01-01T00:00:00Z", "0001-01-03T00:00:00.000001Z", "9999-12-28T23:59:59.999999Z",
    "2026-10-03T00:30:00+05:45", "2026-10-02T23:59:59.999999Z",
)


@pytest.mark.parametrize("batch", [7, 1_000])
async def test_an_import_gives_the_rollups_ingest_gives(
    db: Database, tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import adds its events through a stage, in set-based SQL; the rollups and
    end-user counts equal what ingest's own code recomputes from the stored events."""
    from meterql import importer

    monkeypatch.setattr(importer, "BATCH", batch)
    rng = random.Random(31)
    edges = [
        UsageEventRecord(event_id=f"edge{n}", instance_id=INSTANCES[n % 4], model="gpt-4o",
                         timestamp=datetime.fromisoformat(moment), tokens_in=n, tokens_out=1,
                         end_user_id=f"u{n % 3}")
        for n, moment in enumerate(EDGE_TIMESTAMPS)
    ]
    first = _events(rng, 120, "f") + edges[:4]
    # The second file repeats some events, and sees known users both earlier
    # and later than before, and new ones.
    second = first[::5] + _events(rng, 90, "s") + edges[4:]
    for n, events in enumerate((first, second)):
        rng.shuffle(events)
        report = await importer.load(db, _import_file(tmp_path / f"{n}.json", events, batch))
        assert report.events_accepted == len(events) - (len(first[::5]) if n else 0)
        await assert_last_seen_counts_match(db)
    imported = await _rollup_rows(db)
    assert sum(r[2] for r in imported["days"]) == len(first) + len(second) - len(first[::5])
    async with db.write() as session, session.begin():
        await rollups.rebuild(session)
    assert await _rollup_rows(db) == imported


async def _store_end_users(db: Database, count: int, at: datetime) -> None:
    """PostgreSQL: account ``acme`` with ``count`` end users (user-00001, ...) last seen ``at``."""
    from sqlalchemy import text

    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(account_id="acme"))
        await session.execute(text(
            "INSERT INTO end_users (account_id, end_user_id, last_seen_at) "
            "SELECT 'acme', 'user-' || lpad(n::text, 5, '0'), :at "
            "FROM generate_series(1, :count) AS n"), {"at": at, "count": count})
        await session.execute(text("ANALYZE end_users"))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_batch_locks_its_moving_end_users_by_key_probes_in_key_order(
    db: Database,
) -> None:
    """The locked read of the end users a batch moves probes the key per user: it never
    reads the account's other end users, however many, and returns (locks) in key order."""
    from sqlalchemy.dialects import postgresql

    earlier = datetime(2026, 11, 1, tzinfo=UTC)
    await _store_end_users(db, 20_000, earlier)
    # A busy batch's users: about one in twenty of the account's.
    wanted = [f"user-{n:05d}" for n in range(7, 20_001, 21)]
    later = earlier + timedelta(hours=1)
    compiled = rollups._SEEN_EARLIER.compile(
        dialect=postgresql.dialect(paramstyle="numeric_dollar"))
    parameters = {"account_id": "acme", "user_ids": wanted, "instants": [later] * len(wanted)}
    async with db.write() as session, session.begin():
        raw = await (await session.connection()).get_raw_connection()
        plan = "\n".join(row[0] for row in await raw.driver_connection.fetch(
            f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}",
            *(parameters[name] for name in compiled.positiontup or ())))
        found = [row[0] for row in await session.execute(rollups._SEEN_EARLIER, parameters)]
    assert "Seq Scan on end_users" not in plan, plan
    assert "Index Scan using pk_end_users on end_users" in plan, plan
    # Each probe finds its one row: one loop a user, never the 20,000 rows.
    assert f"rows=1 loops={len(wanted)}" in plan, plan
    assert found == wanted


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_live_batch_claims_and_moves_its_end_users_by_key_probes(
    db: Database,
) -> None:
    """A live batch claims its new end users and moves its earlier ones from its
    stage, one probe of the key per user: never a scan of the account's other end
    users, however many; the moved ones come back with their stored instants."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from meterql.db.staging import BATCH_STAGE, _statements

    earlier = datetime(2026, 11, 1, tzinfo=UTC)
    later = earlier + timedelta(hours=1)
    await _store_end_users(db, 20_000, earlier)
    # A busy batch's users: about one in twenty of the account's, and two new ones.
    stored = [f"user-{n:05d}" for n in range(7, 20_001, 21)]
    users = [*stored, "user-20001", "user-20002"]
    statements = _statements(BATCH_STAGE, True)
    plans = {}
    async with db.write() as session, session.begin():
        await session.execute(text(
            "INSERT INTO meterql_batch_stage SELECT n, 'acme', 'e' || n, 'i', 'm', :at, :day, "
            "0, 0, 1, 1, user_id, NULL, 0, false "
            "FROM unnest(CAST(:users AS varchar[])) WITH ORDINALITY AS u(user_id, n)"),
            {"at": later, "day": later.date(), "users": users})
        raw = await (await session.connection()).get_raw_connection()
        for name in ("claim_users", "move_earlier_users"):
            compiled = getattr(statements, name).compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            await raw.driver_connection.execute("SAVEPOINT plan")
            plans[name] = "\n".join(row[0] for row in await raw.driver_connection.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}"))
            await raw.driver_connection.execute("ROLLBACK TO SAVEPOINT plan")
        claimed = (await session.execute(statements.claim_users)).all()
        moved = (await session.execute(statements.move_earlier_users)).all()
        again = (await session.execute(statements.move_earlier_users)).all()
        seen = dict((await session.execute(text(
            "SELECT end_user_id, last_seen_at FROM end_users WHERE last_seen_at > :at"),
            {"at": earlier})).all())
    for plan in plans.values():
        assert "Seq Scan on end_users" not in plan, plan
        assert f"rows=1 loops={len(users)}" in plan, plan
    assert claimed == [("acme", later), ("acme", later)]
    assert moved == [("acme", earlier, later)] * len(stored)
    assert again == []  # moved already: nothing earlier is left
    assert seen == dict.fromkeys(users, later)
