"""The ``meterql`` command, run in-process through ``meterql.cli.main``.

``main`` runs its own event loop (``asyncio.run``), so the CLI tests are plain
``def`` tests; they reach the API with an app of their own inside
``asyncio.run``. The demo generator is tested in async tests on the shared
``db``/``client`` fixtures, with ``now=conftest.NOW`` so its 90 days end on
the fixed clock of the ``client`` fixture.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

import meterql
from meterql import cli, demo
from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.tables import ApiToken, UsageEvent
from tests.conftest import NOW
from tests.golden import auth
from tests.test_importer import READ_TOKEN, SUMMARY_30, example

T = TypeVar("T")
HEAD = "0012"  # the newest migration
INVALID_CREDENTIALS = {"detail": "Invalid authentication credentials"}


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI (which reads ``Settings()`` from the environment) at this test's DB."""
    monkeypatch.setenv("METERQL_DATABASE_URL", database_url)
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``meterql ARGV...`` → (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def with_api(url: str, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client of a fresh app on ``url`` (clock fixed at NOW)."""

    async def main() -> T:
        db = Database.from_settings(Settings(database_url=url))
        app = create_app(Settings(database_url=url), database=db, clock=lambda: NOW)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://meterql.test") as client:
                return await work(client)
        finally:
            await db.dispose()

    return asyncio.run(main())


def get(url: str, path: str, token: str) -> httpx.Response:
    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(path, headers=auth(token))

    return with_api(url, work)


def query(url: str, statement: Any) -> list[Any]:
    async def main() -> list[Any]:
        db = Database.from_settings(Settings(database_url=url))
        try:
            async with db.read() as session:
                return list((await session.execute(statement)).all())
        finally:
            await db.dispose()

    return asyncio.run(main())


def write(tmp_path: Path, doc: dict[str, Any], name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# migrate, schema


def test_migrate_creates_the_schema_on_a_new_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fresh.db"
    monkeypatch.setenv("METERQL_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    assert run(capsys, "migrate") == (0, f"SQLite file {path}: schema created (revision {HEAD})\n",
                                      "")
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"accounts", "api_tokens", "instances", "models", "tiers", "subscriptions",
            "webhost_nodes", "usage_events"} <= tables


def test_migrate_is_idempotent(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The fixture's database is already migrated: migrating again is a no-op,
    # which says so, naming the database but never its password.
    place = cli.where(env)
    for _ in range(2):
        assert run(capsys, "migrate") == (0, f"{place}: schema up to date (revision {HEAD})\n", "")
    assert place.startswith(("SQLite file", "PostgreSQL database"))


def test_migrate_names_the_revisions_it_went_from_and_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"

    async def to_first_revision() -> None:
        from alembic import command

        from meterql.db.migrate import alembic_config

        db = Database.from_settings(Settings(database_url=url))
        async with db.engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.upgrade(alembic_config(sync), "0001"))
        await db.dispose()

    asyncio.run(to_first_revision())
    monkeypatch.setenv("METERQL_DATABASE_URL", url)
    assert run(capsys, "migrate") == (
        0, f"SQLite file {path}: schema migrated from revision 0001 to {HEAD}\n", "")


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
    ("postgres://u:secret@h/db?ssl=require", "postgresql+asyncpg://u:secret@h/db?ssl=require"),
    ("sqlite:///./meterql.db", "sqlite+aiosqlite:///./meterql.db"),
    ("sqlite+aiosqlite:////var/lib/m.db", "sqlite+aiosqlite:////var/lib/m.db"),
])
def test_database_urls_without_a_driver_take_meterqls(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


@pytest.mark.parametrize(("url", "said"), [
    ("mysql://u@h/db", "METERQL_DATABASE_URL: mysql:// is not a database meterql talks to; "
                       "write postgresql://user@host/dbname or sqlite:///path/to/meterql.db"),
    ("postgresql+psycopg2://u:secret@h/db", "METERQL_DATABASE_URL: postgresql+psycopg2:// is not"),
    ("not a url", "METERQL_DATABASE_URL: not a database URL; write postgresql://"),
])
def test_a_wrong_database_url_is_one_line_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    monkeypatch.setenv("METERQL_DATABASE_URL", url)
    code, out, err = run(capsys, "migrate")
    assert (code, out) == (2, "")
    assert err.startswith(f"meterql migrate: {said}")
    assert err.count("\n") == 1 and "secret" not in err


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("change", "said"), [
    ({"database": "meterql_no_such_database"},
     "PostgreSQL database 'meterql_no_such_database' on {host} does not exist: create it"),
    ({"username": "meterql_no_such_role"},
     "the PostgreSQL database '{database}' on {host} refused user 'meterql_no_such_role': "
     "check the user and password"),
])
def test_a_database_that_refuses_is_one_line_naming_the_fix(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    change: dict[str, str], said: str,
) -> None:
    url = make_url(env)
    monkeypatch.setenv("METERQL_DATABASE_URL",
                       url.set(**change).render_as_string(hide_password=False))
    code, out, err = run(capsys, "migrate")
    assert (code, out) == (1, "")
    host = f"{url.host}:{url.port or 5432}"
    assert err.startswith(f"meterql migrate: {said.format(host=host, database=url.database)}")
    assert err.count("\n") == 1


def test_an_sqlite_file_in_a_missing_directory_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no" / "such" / "dir" / "m.db"
    monkeypatch.setenv("METERQL_DATABASE_URL", f"sqlite:///{path}")
    connects: list[object] = []
    real = aiosqlite.connect
    monkeypatch.setattr(aiosqlite, "connect", lambda *a, **k: connects.append(a) or real(*a, **k))
    assert run(capsys, "migrate") == (
        1, "", f"meterql migrate: cannot open the SQLite file {path}: its directory must exist "
               "and be writable\n")
    # Said before connecting: a failed aiosqlite connect leaves its thread a
    # step to run after the command's event loop is closed.
    assert connects == []


def test_rollups_rebuild_counts_every_event(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = example()
    assert run(capsys, "load", str(write(tmp_path, doc)))[0] == 0
    before = get(env, "/v1/metrics/summary?days=30", READ_TOKEN).json()
    code, out, err = run(capsys, "rollups", "rebuild")
    assert (code, out, err) == (0, f"rollups rebuilt from {len(doc['usage_events'])} events\n", "")
    assert get(env, "/v1/metrics/summary?days=30", READ_TOKEN).json() == before
    assert before["total_requests"] > 0


def test_retention_apply_needs_a_retention_and_says_what_it_let_go(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(capsys, "load", str(write(tmp_path, example())))[0] == 0
    code, out, err = run(capsys, "retention", "apply")
    assert (code, out) == (2, "")
    assert "kept forever; set METERQL_RAW_EVENT_RETENTION_DAYS" in err
    monkeypatch.setenv("METERQL_RAW_EVENT_RETENTION_DAYS", "400")
    code, out, err = run(capsys, "retention", "apply")
    assert (code, err) == (0, "")
    gone = "0 months dropped" if env.startswith("postgresql") else "0 events deleted"
    assert re.fullmatch(r"raw events before \d{4}-\d{2}-01T00:00:00Z let go \(400 days kept\): "
                        + gone + "; the rollups keep their sums\n", out), out


def test_load_refuses_events_older_than_the_retention(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The example's events are of November 2026; a day's retention is long past them.
    monkeypatch.setenv("METERQL_RAW_EVENT_RETENTION_DAYS", "1")
    code, out, err = run(capsys, "load", str(write(tmp_path, example())))
    assert (code, out) == (1, "")
    assert err.startswith("meterql load: $.usage_events[0].timestamp: timestamp is before the "
                          "retention horizon "), err


def test_schema_prints_the_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema")
    assert (code, err) == (0, "")
    assert "type Query" in out
    assert "metricsSummary(days: Int! = 30)" in out


# ---------------------------------------------------------------------------
# load


def test_load_prints_a_summary_and_is_idempotent(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, example())
    assert run(capsys, "load", str(path)) == (
        0, f"loaded {path}: 2 models, 1 tiers, 1 accounts; "
           "events: 3 new, 0 already known, of 3\n", "")
    assert run(capsys, "load", str(path)) == (
        0, f"loaded {path}: 2 models, 1 tiers, 1 accounts; "
           "events: 0 new, 3 already known, of 3\n", "")
    response = get(env, "/v1/metrics/summary?days=30", READ_TOKEN)
    assert response.status_code == 200
    assert response.json() == SUMMARY_30


def test_load_notes_unpriced_events(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = example()
    for n in (1, 2):
        doc["usage_events"].append({"account_id": "acme", "event_id": f"m{n}",
                                    "instance_id": "inst-1", "model": "mystery",
                                    "timestamp": "2026-11-19T10:00:00Z",
                                    "tokens_in": 5, "tokens_out": 5})
    path = write(tmp_path, doc)
    code, out, _ = run(capsys, "load", str(path))
    assert code == 0
    assert out.splitlines() == [
        f"loaded {path}: 2 models, 1 tiers, 1 accounts; events: 5 new, 0 already known, of 5",
        "note: 2 new events use a model without a price (cost 0): mystery",
    ]


def test_load_refuses_a_bad_file_naming_the_json_path(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = example()
    doc["usage_events"][2]["tokens_in"] = -1
    code, out, err = run(capsys, "load", str(write(tmp_path, doc)))
    assert code != 0
    assert out == ""
    assert "$.usage_events[2].tokens_in" in err
    # Nothing was written: the file's token is unknown.
    assert get(env, "/v1/metrics/summary", READ_TOKEN).status_code == 401


@pytest.mark.parametrize(("name", "said"), [
    ("missing.json", "no such file: {path}"),
    (".", "{path} is a directory; give a JSON file"),
], ids=["missing", "directory"])
def test_load_without_a_file_exits_2(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, said: str
) -> None:
    path = tmp_path / name
    assert run(capsys, "load", str(path)) == (2, "", f"meterql load: {said.format(path=path)}\n")


def test_load_from_standard_input_says_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "load", "-")
    assert (code, out) == (2, "")
    assert err.startswith("meterql load: give the file's path") and err.count("\n") == 1


@pytest.mark.parametrize(("text", "said"), [
    ('{"models": [\n {"model": "a",\n  "provider" "x"}]}',
     "Expecting ':' delimiter at line 3, column 14"),
    ('{"models": [{"model": "a",', "Expecting property name enclosed in double quotes at "
                                   "line 1, column 27"),
])
def test_load_names_the_line_and_column_of_a_json_syntax_error(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    assert run(capsys, "load", str(path)) == (1, "", f"meterql load: $: not valid JSON: {said}\n")


# ---------------------------------------------------------------------------
# token create / revoke


def create_token(capsys: pytest.CaptureFixture[str], account: str, scopes: str) -> str:
    code, out, err = run(capsys, "token", "create", "--account", account, "--scopes", scopes,
                         "--create-account")
    assert (code, err) == (0, "")
    token = out.strip()
    assert out == token + "\n" and token  # the token alone, on one line
    return token


def test_created_token_authenticates_and_is_stored_hashed(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = create_token(capsys, "acme", "read,ingest")
    response = get(env, "/v1/metrics/summary?days=7", token)
    assert response.status_code == 200
    assert response.json()["total_requests"] == 0  # a new, empty account

    rows = query(env, select(ApiToken.account_id, ApiToken.token_hash, ApiToken.scopes))
    assert [tuple(r) for r in rows] == [
        ("acme", hashlib.sha256(token.encode()).hexdigest(), "ingest,read")]


def test_each_create_prints_a_new_token(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = create_token(capsys, "acme", "read")
    second = create_token(capsys, "acme", "read")
    assert first != second
    assert get(env, "/v1/metrics/summary", first).status_code == 200
    assert get(env, "/v1/metrics/summary", second).status_code == 200


def test_revoked_token_answers_401_at_once(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = create_token(capsys, "acme", "read,ingest")
    other = create_token(capsys, "acme", "read")

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        # One running app: the token works, is revoked from the CLI (in a thread,
        # since main() runs its own event loop), and the very next request fails.
        before = await client.get("/v1/metrics/summary", headers=auth(token))
        code = await asyncio.to_thread(cli.main, ["token", "revoke", token])
        assert code == 0
        after = await client.get("/v1/metrics/summary", headers=auth(token))
        untouched = await client.get("/v1/metrics/summary", headers=auth(other))
        return [before, after, untouched]

    before, after, untouched = with_api(env, work)
    assert before.status_code == 200
    assert after.status_code == 401
    assert after.json() == INVALID_CREDENTIALS
    assert untouched.status_code == 200  # only that token is revoked
    assert capsys.readouterr().out == "token revoked\n"


def test_revoking_twice_or_an_unknown_token_exits_1(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = create_token(capsys, "acme", "read")
    assert run(capsys, "token", "revoke", token) == (0, "token revoked\n", "")
    for unknown in (token, "mq_no-such-token"):
        code, out, err = run(capsys, "token", "revoke", unknown)
        assert (code, out) == (1, "")
        assert "no such live token" in err


def test_revoked_file_token_stays_revoked_when_the_file_is_reloaded(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, example())
    assert run(capsys, "load", str(path))[0] == 0
    assert run(capsys, "token", "revoke", READ_TOKEN)[0] == 0
    assert run(capsys, "load", str(path))[0] == 0
    response = get(env, "/v1/metrics/summary", READ_TOKEN)
    assert (response.status_code, response.json()) == (401, INVALID_CREDENTIALS)


def test_a_token_for_an_unknown_account_needs_create_account(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "token", "create", "--account", "nobody")
    assert (code, out) == (1, "")
    assert err == "meterql token: no account 'nobody': give --create-account to create it\n"
    assert query(env, select(func.count()).select_from(ApiToken)) == [(0,)]
    token = create_token(capsys, "nobody", "read")
    # Now it exists: a second token needs no flag.
    code, out, err = run(capsys, "token", "create", "--account", "nobody")
    assert code == 0 and out.strip() != token


def test_help_is_plain_and_names_every_default_and_the_environment(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out == f"meterql {meterql.__version__}\n"
    for argv in (["--help"], ["serve", "--help"], ["token", "create", "--help"],
                 ["load", "--help"], ["retention", "apply", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text  # no reST markup
        if argv != ["--help"]:
            assert "METERQL_DATABASE_URL" in text
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--port PORT port to listen on (default: 8000)" in text
    assert "--workers WORKERS gateway processes sharing the port (default: 1)" in text


def test_serve_on_a_taken_port_is_one_line(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "serve", "--port", str(port))
    assert (code, out) == (1, "")
    assert err == (f"meterql serve: 127.0.0.1:{port} is already in use: stop what listens "
                   "there, or give --port\n")


@pytest.mark.parametrize("scopes", ["admin", "read,admin", "", ",", "READ"])
def test_bad_scopes_exit_2_and_create_nothing(
    env: str, capsys: pytest.CaptureFixture[str], scopes: str
) -> None:
    code, out, err = run(capsys, "token", "create", "--account", "acme", "--scopes", scopes)
    assert (code, out) == (2, "")
    assert "scopes are some of read, ingest, manage" in err
    assert query(env, select(func.count()).select_from(ApiToken)) == [(0,)]


# ---------------------------------------------------------------------------
# The demo generator


async def test_demo_fills_a_realistic_account(db: Database, client: httpx.AsyncClient) -> None:
    written = await demo.fill(db, now=NOW)
    token = await demo.read_token(db)
    headers = auth(token)

    # 90 days of traffic: every day of the window has requests, and they add up.
    usage = (await client.get("/v1/metrics/usage?days=90", headers=headers)).json()
    points = usage["points"]
    assert (len(points), points[0]["date"], points[-1]["date"]) == (90, "2026-08-23", "2026-11-20")
    assert all(p["requests"] > 0 for p in points)
    assert sum(p["requests"] for p in points) == written > 0

    instances = (await client.get("/v1/metrics/instances?days=90", headers=headers)).json()
    statuses = {i["status"] for i in instances["instances"]}
    assert instances["total_count"] == 6
    assert {"running", "stopped", "error"} <= statuses

    models = (await client.get("/v1/metrics/models?days=90", headers=headers)).json()["models"]
    priced = [m for m in models if m["provider"] and m["estimated_cost_usd"] != "0.0000"]
    assert len({m["provider"] for m in priced}) >= 3
    assert len(priced) >= 5

    billing = (await client.get("/v1/billing", headers=headers)).json()
    plan, period = billing["plan"], billing["usage"]
    assert (plan["status"], plan["tier_id"]) == ("trialing", "tier_pro")
    # Period starts 5 days before today; trial ends 14 days after that start:
    # 2026-11-29T00:00Z - 2026-11-20T15:30Z = 8 days 8.5 hours → 8
    assert (plan["current_period_start"], plan["trial_ends_at"]) == (
        "2026-11-15T00:00:00Z", "2026-11-29T00:00:00Z")
    assert plan["trial_days_remaining"] == 8
    assert (period["webhost_nodes"], period["total_hosted_sites"]) == (3, 4 + 7 + 12)
    assert period["unique_end_users"] > 0
    assert period["total_requests"] > 0

    # A monthly cost budget a little over 80% of its limit, with its 50% and 80% alerts.
    found = (await client.post("/graphql", headers=headers, json={"query": """{ viewer {
        budgets { name measure period limit spent percentUsed status thresholdsCrossed }
        usage(range: {from: "2026-11-01", to: "2026-11-30"}) { totals { estimatedCostUsd } }
        alerts { edges { node { threshold budgetName } } } } }"""})).json()["data"]["viewer"]
    (budget,) = found["budgets"]
    assert (budget["name"], budget["measure"], budget["period"]) == (
        "Monthly spend", "COST", "MONTH")
    assert budget["spent"] == found["usage"]["totals"]["estimatedCostUsd"]
    assert 80 <= budget["percentUsed"] < 85
    assert (budget["status"], budget["thresholdsCrossed"]) == ("WARNING", [50, 80])
    assert [e["node"]["threshold"] for e in found["alerts"]["edges"]] == [80, 50]


async def test_demo_token_is_read_only(db: Database) -> None:
    await demo.fill(db, now=NOW)
    token = await demo.read_token(db)
    async with db.read() as session:
        scopes = await session.scalar(select(ApiToken.scopes).where(
            ApiToken.token_hash == hashlib.sha256(token.encode()).hexdigest()))
    assert scopes == "read"


# ---------------------------------------------------------------------------
# serve (uvicorn replaced by a recorder: no server is started)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


def _summary_with(app: Starlette, token: str) -> httpx.Response:
    """Ask the app ``serve`` built (system clock: the demo data ends now)."""

    async def main() -> httpx.Response:
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://t") as client:
                return await client.get("/v1/metrics/summary?days=90", headers=auth(token))
        finally:
            await app.state.services.db.dispose()

    return asyncio.run(main())


def test_serve_demo_fills_once_and_prints_how_to_try_it(
    env: str, capsys: pytest.CaptureFixture[str], served: list[dict[str, Any]]
) -> None:
    code, out, err = run(capsys, "serve", "--demo", "--port", "8123")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    generated = re.fullmatch(r"demo: generated account 'demo' with (\d+) usage events", lines[0])
    assert generated and int(generated[1]) > 0
    token = re.fullmatch(r"demo read token: (\S+)", lines[1])
    assert token
    first_token = token[1]
    assert lines[2] == (f"try:      curl -H 'Authorization: Bearer {first_token}' "
                        "'http://127.0.0.1:8123/v1/metrics/summary?days=7'")
    assert lines[3].startswith("usage:    http://127.0.0.1:8123/ ")
    assert lines[4].startswith("GraphiQL: http://127.0.0.1:8123/graphql ")
    assert len(lines) == 5

    assert len(served) == 1
    assert (served[0]["host"], served[0]["port"]) == ("127.0.0.1", 8123)
    first = _summary_with(served[0]["app"], first_token)
    assert first.status_code == 200
    assert first.json()["total_requests"] == int(generated[1])

    # Second run: the database is not empty, so nothing is generated again.
    code, out, _ = run(capsys, "serve", "--demo", "--port", "8123")
    assert code == 0
    assert "demo: generated" not in out
    second_token = re.search(r"demo read token: (\S+)", out)
    assert second_token
    second = _summary_with(served[1]["app"], second_token[1])
    assert second.json() == first.json()
    assert query(env, select(func.count()).select_from(UsageEvent)) == [(int(generated[1]),)]


def test_serve_without_demo_prints_no_token_and_writes_nothing(
    env: str, capsys: pytest.CaptureFixture[str], served: list[dict[str, Any]]
) -> None:
    code, out, _ = run(capsys, "serve", "--host", "0.0.0.0", "--port", "9000")
    assert (code, out) == (0, "")
    assert [(c["host"], c["port"]) for c in served] == [("0.0.0.0", 9000)]
    assert isinstance(served[0]["app"], Starlette)
    # One access line per request, ours (meterql.web.access), as JSON.
    assert served[0]["access_log"] is False
    # Idle connections outlive the clients' and proxies' own idle timeouts
    # (httpx 5 s, load balancers 60 s): the server is never the one to close
    # a connection a client is just reusing.
    assert served[0]["timeout_keep_alive"] == 75
    formatter = served[0]["log_config"]["formatters"]["main"]
    assert formatter == {"()": "meterql.web.logs.JsonFormatter"}
    assert query(env, select(func.count()).select_from(UsageEvent)) == [(0,)]
    asyncio.run(served[0]["app"].state.services.db.dispose())


def test_serve_keeps_idle_connections_as_long_as_told(
    env: str, capsys: pytest.CaptureFixture[str], served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERQL_KEEP_ALIVE_S", "120")
    code, _, _ = run(capsys, "serve", "--port", "9000")
    assert code == 0
    assert served[0]["timeout_keep_alive"] == 120
    asyncio.run(served[0]["app"].state.services.db.dispose())


def test_unreachable_database_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pgcluster import free_port

    # A port nothing listens on: refused at once, reported without a traceback.
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/meterql"
    monkeypatch.setenv("METERQL_DATABASE_URL", url)
    assert cli.main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("meterql migrate: Database unavailable")
    assert "Traceback" not in err


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_load_is_not_bound_by_the_request_statement_timeout(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A request's statement timeout so short that any real statement trips
    # it: the CLI must not inherit it (a bulk load runs long statements).
    monkeypatch.setenv("METERQL_DB_STATEMENT_TIMEOUT_S", "0.000001")
    doc = {"accounts": [{"account_id": "acme"}],
           "usage_events": [{"account_id": "acme", "event_id": f"t{n}", "instance_id": "i",
                             "model": "m", "timestamp": "2026-11-20T10:00:00Z",
                             "tokens_in": 1, "tokens_out": 1} for n in range(3000)]}
    code, out, err = run(capsys, "load", str(write(tmp_path, doc)))
    assert code == 0, err
    assert "3000 new" in out
