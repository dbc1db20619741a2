"""Past one PostgreSQL: the schema is ready to distribute on Citus by ``account_id``.

Every tenant table leads its key with ``account_id`` and every statement on
one filters by it (or joins two on it), so with Citus each table is
distributed by ``account_id``, co-located with the others, and each request
runs on the one node that holds its account. The few tables every request
may need whatever its account, small and rarely written, are *reference*
tables, copied to every node (``docs/deployment.md``, "Past one PostgreSQL").
The checks here are what the tests hold the schema and the statements to.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import MetaData, Table
from sqlalchemy.sql import ClauseElement, operators, visitors
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.selectable import Alias

DISTRIBUTION_COLUMN = "account_id"
# The token check finds the account from the token alone, on every gateway's
# first round trip: tokens, and the accounts they name, are on every node.
# The catalogue (models and their prices, tiers) is shared by all tenants.
REFERENCE_TABLES = frozenset({"accounts", "api_tokens", "models", "tiers"})


def distributed_tables(metadata: MetaData) -> list[Table]:
    return [t for t in metadata.sorted_tables if t.name not in REFERENCE_TABLES]


def schema_problems(metadata: MetaData) -> list[str]:
    """Why the tables could not be distributed as they are (nothing: they can)."""
    problems = []
    for table in metadata.sorted_tables:
        reference = table.name in REFERENCE_TABLES
        key = [column.name for column in table.primary_key.columns]
        if not reference and key[:1] != [DISTRIBUTION_COLUMN]:
            problems.append(f"{table.name}: key {key} does not start with {DISTRIBUTION_COLUMN}")
        for fk in table.foreign_key_constraints:
            target = fk.referred_table.name
            if target in REFERENCE_TABLES:
                continue  # any table may refer to a reference table
            if reference:
                problems.append(f"{table.name}: a reference table refers to {target}")
                continue
            pairs = {(e.parent.name, e.column.name) for e in fk.elements}
            if (DISTRIBUTION_COLUMN, DISTRIBUTION_COLUMN) not in pairs:
                problems.append(f"{table.name}: refers to {target} without {DISTRIBUTION_COLUMN}")
    return problems


def _base_table(element: object) -> Table | None:
    while isinstance(element, Alias):
        element = element.element
    return element if isinstance(element, Table) else None


def unfiltered_tables(statement: ClauseElement, distributed: Iterable[str]) -> set[str]:
    """The distributed tables a statement reads without ``account_id =`` on them."""
    wanted = set(distributed)
    seen: set[str] = set()
    filtered: set[str] = set()
    for element in visitors.iterate(statement):
        table = _base_table(element)
        if table is not None and table.name in wanted:
            seen.add(table.name)
        if isinstance(element, BinaryExpression) and element.operator is operators.eq:
            for side in (element.left, element.right):
                owner = _base_table(getattr(side, "table", None))
                if owner is not None and getattr(side, "name", None) == DISTRIBUTION_COLUMN:
                    filtered.add(owner.name)
    return seen - filtered
