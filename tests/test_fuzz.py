"""Schemathesis against /v1/openapi.json and the GraphQL schema: no 500s, answers as documented.

Bounded (``FUZZ_EXAMPLES`` per operation, default 25) so CI stays quick;
``METERQL_FUZZ_EXAMPLES=500 pytest tests/test_fuzz.py`` digs deeper by hand.
Runs on both backends: a value one stores and the other cannot (a NUL
character, say) is exactly what fuzzing finds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.graphql import nodes
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.applications import Starlette

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.db.migrate import upgrade
from meterql.records import AccountRecord, TokenRecord
from meterql.rest_compat.routes import ROUTES
from tests.conftest import BACKENDS, NOW, _admin, _asyncpg_url, _postgres_url
from tests.golden import auth, seed

FUZZ_EXAMPLES = int(os.environ.get("METERQL_FUZZ_EXAMPLES", "25"))
# A budget's amount: a string, well formed or not (the API checks it).
schemathesis.graphql.scalar("BudgetAmount", st.one_of(
    st.from_regex(r"\A-?[0-9]{1,20}(\.[0-9]{1,6})?\Z"), st.text(max_size=24),
).map(nodes.String))
# A token of every scope, so every operation is reachable (budgets and
# webhooks need manage).
FUZZ_TOKEN = "acme-fuzz-token-0001"
HEADERS = auth(FUZZ_TOKEN)
BOUNDED = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a CI failure can be replayed
    database=None,
)


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A seeded database shared by the module's fuzzing, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'meterql.db'}"
        drop = None
    else:
        template = request.getfixturevalue("postgres_template")
        server = _postgres_url()
        assert server is not None
        name = f"meterql_fuzz_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        url, drop = _asyncpg_url(server, name), (server, name)

    async def prepare() -> None:
        db = Database.from_settings(Settings(database_url=url))
        try:
            await upgrade(db.engine)
            await seed(db)
            async with db.write() as session, session.begin():
                await writes.upsert_account(session, AccountRecord(
                    account_id="acme",
                    tokens=[TokenRecord(token=FUZZ_TOKEN, scopes=["read", "ingest", "manage"])]))
        finally:
            await db.dispose()

    asyncio.run(prepare())
    yield url
    if drop is not None:
        asyncio.run(_admin(drop[0], f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def fuzz_app(fuzz_url: str) -> Starlette:
    # Private webhook addresses allowed: a generated host name is then never
    # looked up (no DNS from the tests), and nothing is delivered here anyway.
    return create_app(Settings(database_url=fuzz_url, webhook_allow_private=True),
                      clock=lambda: NOW)


@pytest.fixture(scope="module")
def openapi_schema(fuzz_app: Starlette) -> Any:
    return schemathesis.openapi.from_asgi("/v1/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def graphql_schema(fuzz_app: Starlette) -> Any:
    return schemathesis.graphql.from_asgi("/graphql", fuzz_app, headers=HEADERS)


def excluded(operation: Any) -> list[Any]:
    """Checks that do not hold for an operation, and why.

    Ingest: a schema-valid event may still be refused, rightly: a timestamp
    more than 5 minutes ahead of now, or one whose UTC offset takes it out of
    the representable range, is valid ``date-time`` text. It must be refused
    with a 422 (checked by the other checks), not accepted. Likewise the CSV
    export's pair of dates.
    """
    if operation.method.upper() == "POST":
        return [positive_data_acceptance]
    if operation.path == "/v1/export/usage.csv":
        # Its parameters hang together in ways a schema cannot say: `from`
        # and `to` come both or neither, in order, at most 366 days apart.
        return [positive_data_acceptance]
    return []


# GraphQL: likewise a generated argument may be out of range (`days: 1000`),
# and an instance id unknown (`Instance not found`, an error with a path,
# which Schemathesis counts as a server error). Such errors are answers: the
# test checks below that each is one of ours and no request failed.
GRAPHQL_EXCLUDED = [positive_data_acceptance, not_a_server_error]
EXPECTED_CODES = {"BAD_USER_INPUT", "NOT_FOUND", "FORBIDDEN", "PAYLOAD_TOO_LARGE"}


def operations(schema: Any) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the schema offers no operations"
    return found


# Each operation's examples run in a loop of our own rather than through
# ``@schema.parametrize()``: its lazy loader (``from_fixture``) fails on
# pytest 9, and loading the schema at import would build an app while
# tests are merely being collected.
def examples(operation: Any, skipped: list[Any]) -> Any:
    """The bounded property test of one REST operation (its own function, so the
    test binds this operation and its excluded checks, not the loop's last ones)."""

    @BOUNDED
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        case.call_and_validate(headers=HEADERS, excluded_checks=skipped)

    return call


def test_rest_routes(openapi_schema: Any) -> None:
    checked = []
    for operation in operations(openapi_schema):

        examples(operation, excluded(operation))()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) == len(ROUTES)


def test_graphql_fields(graphql_schema: Any) -> None:
    checked = []
    for operation in operations(graphql_schema):

        @BOUNDED
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=HEADERS, excluded_checks=GRAPHQL_EXCLUDED)
            assert response.status_code < 500, response.text
            # Every error is one of ours (with its code) or GraphQL's own
            # (no code: syntax, validation, variables); never a masked bug.
            for error in response.json().get("errors") or []:
                code = (error.get("extensions") or {}).get("code")
                assert code is None or code in EXPECTED_CODES, error

        call()
        checked.append(operation.label)
    assert len(checked) >= 9  # eight query fields and the mutation
