"""Ready for Citus: every tenant table keyed by ``account_id`` first, every read filtered by it.

The schema check walks the models' metadata; the statement check walks
every statement the routes and the documented pages read with (captured as
they run on the golden data), so a new table or a new read that would fan
out to every node fails here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, select

from meterql.db.distribution import (
    REFERENCE_TABLES,
    distributed_tables,
    schema_problems,
    unfiltered_tables,
)
from meterql.db.engine import Database
from meterql.db.reads import Reads
from meterql.db.tables import Base, UsageDay, UsageInstanceDay
from meterql.rest_compat.routes import ROUTES
from tests.golden import auth, seed
from tests.test_query_counts import COSTS

DISTRIBUTED = [t.name for t in distributed_tables(Base.metadata)]
PAGES = sorted((Path(__file__).parent.parent / "src" / "meterql" / "queries").glob("*.graphql"))
# Series the pages do not ask for: every grouping, hours in a zone on a
# quarter hour, a range whose ends fall inside a UTC hour.
SERIES = """{ viewer {
  a: usage(days: 3, tz: "Asia/Kathmandu", granularity: HOUR, groupBy: INSTANCE) { totals { requests } series { requests } }
  b: usage(days: 90, groupBy: PROVIDER, granularity: WEEK) { groups { key requests } }
  c: usage(range: {from: "2026-11-01", to: "2026-11-20"}, tz: "America/St_Johns", groupBy: MODEL) { series { groups { requests } } }
} }"""


def test_every_tenant_table_is_keyed_by_account_first() -> None:
    assert schema_problems(Base.metadata) == []
    assert {t.name for t in Base.metadata.sorted_tables} > REFERENCE_TABLES
    assert {"usage_events", "event_keys", "usage_days", "instances"} <= set(DISTRIBUTED)


def _with(*tables: Table) -> MetaData:
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    for table in tables:
        table.to_metadata(metadata)
    return metadata


@pytest.mark.parametrize(("table", "problem"), [
    (Table("usage_new", MetaData(), Column("id", Integer, primary_key=True),
           Column("account_id", String)),
     "usage_new: key ['id'] does not start with account_id"),
    (Table("usage_new", MetaData(), Column("day", String, primary_key=True),
           Column("account_id", String, primary_key=True)),
     "usage_new: key ['day', 'account_id'] does not start with account_id"),
    (Table("tiers_extra", MetaData(), Column("account_id", String, primary_key=True),
           Column("instance_id", String, ForeignKey("instances.instance_id"))),
     "tiers_extra: refers to instances without account_id"),
])
def test_a_table_that_would_not_distribute_is_named(table: Table, problem: str) -> None:
    assert schema_problems(_with(table)) == [problem]


def test_a_reference_table_may_not_refer_to_a_tenant_table() -> None:
    metadata = _with()
    Table("tiers", metadata, Column("instance_id", String, ForeignKey("instances.instance_id")),
          extend_existing=True)
    assert schema_problems(metadata) == ["tiers: a reference table refers to instances"]


def test_the_statement_check_sees_a_missing_account_filter() -> None:
    day = UsageDay.__table__.c  # type: ignore[attr-defined]
    inst = UsageInstanceDay.__table__.c  # type: ignore[attr-defined]
    assert unfiltered_tables(select(day.requests), DISTRIBUTED) == {"usage_days"}
    assert unfiltered_tables(select(day.requests).where(day.account_id == "a"), DISTRIBUTED) == set()
    joined = select(day.requests).join_from(
        UsageDay, UsageInstanceDay, inst.day == day.day).where(day.account_id == "a")
    assert unfiltered_tables(joined, DISTRIBUTED) == {"usage_instance_days"}


async def test_every_read_of_the_routes_and_pages_filters_by_account(
    db: Database, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(db)
    captured: list[Any] = []
    fetch = Reads.fetch

    async def capture(self: Reads, statement: Any, params: Any, **kwargs: Any) -> Any:
        captured.append(statement)
        return await fetch(self, statement, params, **kwargs)

    monkeypatch.setattr(Reads, "fetch", capture)
    paths = {route.path for route in ROUTES if route.method == "GET"} | set(COSTS)
    for path in sorted(paths):
        response = await client.get(path, headers=auth())
        assert response.status_code == 200, (path, response.text)
    for query in [page.read_text("utf-8") for page in PAGES] + [SERIES]:
        response = await client.post("/graphql", headers=auth(), json={"query": query})
        assert "errors" not in response.json(), response.json()
    statements = {id(s): s for s in captured}.values()
    assert len(statements) >= 10
    problems = {str(s): unfiltered_tables(s, DISTRIBUTED) for s in statements}
    assert {sql: tables for sql, tables in problems.items() if tables} == {}
