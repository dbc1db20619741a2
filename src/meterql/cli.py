"""The meterql command: serve, load, token, schema, migrate, retention, rollups.

Every subcommand reads its settings from the environment (``meterql.config``)
and answers a problem with one line on stderr, never a traceback: exit 2 for
a wrong command line or setting, 1 for a refusal or a database that cannot
be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from meterql import __version__
from meterql.config import Settings
from meterql.db.engine import Database, is_sqlite, is_unavailable
from meterql.db.migrate import current_revision, upgrade
from meterql.errors import DatabaseUnavailable, MeterqlError

T = TypeVar("T")
CLI_STATEMENT_TIMEOUT_S = 3600.0


class CommandError(Exception):
    """A problem the command states in one line (exit 1)."""


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh, migrated database, in its own event loop."""
    return asyncio.run(_on_database(settings, work, migrate=True))


async def _on_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]], *, migrate: bool
) -> T:
    # The statement timeout protects requests from a hung server; a bulk
    # load or a migration may legitimately run one statement for minutes.
    timeout = max(settings.db_statement_timeout_s, CLI_STATEMENT_TIMEOUT_S)
    _sqlite_directory_exists(settings.database_url)
    db = Database.from_settings(settings.model_copy(update={"db_statement_timeout_s": timeout}))
    try:
        if migrate:
            await upgrade(db.engine)
        return await work(db)
    except Exception as error:
        problem = connection_problem(error, settings.database_url)
        if problem is not None:
            raise CommandError(problem) from error
        if is_unavailable(error):
            raise DatabaseUnavailable(f"Database unavailable ({error})") from error
        raise
    finally:
        await db.dispose()


def _sqlite_directory_exists(database_url: str) -> None:
    """Refuse a SQLite file in a missing directory before connecting.

    Said before trying rather than after: aiosqlite's failed connect leaves
    its thread one more step to run, which resolves a future of this event
    loop after the command has closed it (a "RuntimeError: Event loop is
    closed" in that thread).
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).parent.is_dir():
        raise CommandError(_cannot_open(database_url))


def _cannot_open(database_url: str) -> str:
    return f"cannot open the {where(database_url)}: its directory must exist and be writable"


def where(database_url: str) -> str:
    """The database a URL names, for people: no password, no driver."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database or ':memory:'}"
    host = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"PostgreSQL database {url.database!r} on {host}"


# PostgreSQL's refusals of a connection that name their fix, by SQLSTATE.
_MISSING_DATABASE = "3D000"
_REFUSED_LOGIN = ("28000", "28P01")  # no such role (or pg_hba), wrong password


def connection_problem(error: BaseException, database_url: str) -> str | None:
    """One line saying why the database could not be used and what to do, if known."""
    cause: BaseException | None = error
    while cause is not None:
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        if sqlstate == _MISSING_DATABASE:
            return (f"{where(database_url)} does not exist: create it (createdb), or name "
                    "another in METERQL_DATABASE_URL")
        if sqlstate in _REFUSED_LOGIN:
            user = make_url(database_url).username
            return (f"the {where(database_url)} refused user {user!r}: check the user and "
                    "password in METERQL_DATABASE_URL")
        if "unable to open database file" in str(cause):
            return _cannot_open(database_url)
        if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in str(cause):
            return (f"Database unavailable: nothing answers for the {where(database_url)}; "
                    "is the server running, and is METERQL_DATABASE_URL right?")
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def migrate(db: Database) -> tuple[str | None, str | None]:
        before = await current_revision(db.engine)
        await upgrade(db.engine)
        return before, await current_revision(db.engine)

    before, after = asyncio.run(_on_database(settings, migrate, migrate=False))
    place = where(settings.database_url)
    if before == after:
        print(f"{place}: schema up to date (revision {after})")
    elif before is None:
        print(f"{place}: schema created (revision {after})")
    else:
        print(f"{place}: schema migrated from revision {before} to {after}")
    return 0


def cmd_rollups_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.db import rollups, writes

    async def work(db: Database) -> int:
        async with db.write() as session, session.begin():
            count = await rollups.rebuild(session)
            await writes.touch_accounts(session, None)
            return count

    print(f"rollups rebuilt from {_with_database(settings, work)} events")
    return 0


def cmd_retention_apply(args: argparse.Namespace, settings: Settings) -> int:
    from meterql import retention

    days = settings.raw_event_retention_days
    if days is None:
        print("meterql retention apply: raw events are kept forever; set "
              "METERQL_RAW_EVENT_RETENTION_DAYS to let old months go", file=sys.stderr)
        return 2

    async def work(db: Database) -> retention.Applied:
        return await retention.apply(db, days, datetime.now(UTC))

    applied = _with_database(settings, work)
    before = applied.before.isoformat().replace("+00:00", "Z")
    gone = (f"{applied.events} events deleted" if is_sqlite(settings.database_url)
            else f"{applied.months} months dropped")
    print(f"raw events before {before} let go ({days} days kept): {gone}; "
          "the rollups keep their sums")
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.schema import build_schema

    print(build_schema().as_str())
    return 0


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.importer import ImportReport, load

    path = Path(args.file)
    if args.file == "-":
        print("meterql load: give the file's path: an import reads its file twice "
              "(checks it whole before writing), which standard input cannot be", file=sys.stderr)
        return 2
    if path.is_dir():
        print(f"meterql load: {path} is a directory; give a JSON file", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"meterql load: no such file: {path}", file=sys.stderr)
        return 2

    from meterql.retention import horizon

    oldest = horizon(settings.raw_event_retention_days, datetime.now(UTC))

    async def work(db: Database) -> ImportReport:
        if not sys.stderr.isatty():
            return await load(db, path, horizon=oldest, free=settings.free_plan)
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        size = path.stat().st_size
        columns = (TextColumn("{task.description:<22}"), BarColumn(), DownloadColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(_PHASES["check"], total=size)
            # Pass 2 reports bytes from the file's size on (it is read twice).
            passed = [0]

            def phase(name: str) -> None:
                if name == "write":
                    passed[0] = size
                    bar.update(task, description=_PHASES[name], completed=0, total=size)
                elif name != "check":  # no bytes to count: the bar pulses
                    bar.update(task, description=_PHASES[name], total=None)

            return await load(
                db, path, horizon=oldest, phases=phase, free=settings.free_plan,
                progress=lambda done: bar.update(task, completed=done - passed[0]),
            )

    report = _with_database(settings, work)
    print(
        f"loaded {path}: {report.models} models, {report.tiers} tiers, "
        f"{report.accounts} accounts; events: {report.events_accepted} new, "
        f"{report.events_duplicate} already known, of {report.events_seen}"
    )
    if report.events_unpriced:
        models = ", ".join(report.unpriced_models)
        print(f"note: {report.events_unpriced} new events use a model without a price "
              f"(cost 0): {models}")
    return 0


# What `meterql load` shows while each phase of an import runs.
_PHASES = {
    "check": "checking the file",
    "write": "writing the events",
    "rollups": "adding up the rollups",
    "tidy": "VACUUM ANALYZE",
}


TOKEN_SCOPES = ("read", "ingest", "manage")


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.db import writes

    scopes = sorted({s.strip() for s in args.scopes.split(",") if s.strip()})
    bad = [s for s in scopes if s not in TOKEN_SCOPES]
    if bad or not scopes:
        print(f"meterql token create: scopes are some of {', '.join(TOKEN_SCOPES)}, not {bad}",
              file=sys.stderr)
        return 2

    async def work(db: Database) -> str:
        async with db.write() as session, session.begin():
            if not args.create_account and not await writes.known_accounts(
                session, [args.account]
            ):
                raise CommandError(
                    f"no account {args.account!r}: give --create-account to create it"
                )
            return await writes.create_token(session, args.account, scopes)

    print(_with_database(settings, work))
    return 0


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.db import writes

    async def work(db: Database) -> bool:
        async with db.write() as session, session.begin():
            return await writes.revoke_token(session, args.token)

    if not _with_database(settings, work):
        print("meterql token revoke: no such live token", file=sys.stderr)
        return 1
    print("token revoked")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from meterql import demo
    from meterql.app import create_app
    from meterql.web.logs import logging_config
    from meterql.web.workers import APP_FACTORY, SPREADS_CONNECTIONS, Listen, Workers

    async def prepare(db: Database) -> str | None:
        if not args.demo:
            return None
        if await demo.is_empty(db):
            written = await demo.fill(db)
            print(f"demo: generated account '{demo.DEMO_ACCOUNT}' with {written} usage events")
        return await demo.read_token(db)

    _refuse_a_taken_port(args.host, args.port)
    token = _with_database(settings, prepare)
    base = f"http://{args.host}:{args.port}"
    if token:
        print(f"demo read token: {token}")
        print(
            f"try:      curl -H 'Authorization: Bearer {token}' "
            f"'{base}/v1/metrics/summary?days=7'"
        )
        print(f"usage:    {base}/  (paste the token into the bar at the top)")
        print(f"GraphiQL: {base}/graphql  (the same token; /v1/docs too)")
    log_format = settings.log_format or ("text" if sys.stderr.isatty() else "json")
    log_config = logging_config(log_format, settings.log_level)
    where = Listen(args.host, args.port, log_config, settings.keep_alive_s)
    with metrics_directory(shared=args.workers > 1):
        if args.workers > 1 and SPREADS_CONNECTIONS:
            # Each worker process builds its own app (and engine) from the same
            # environment the settings came from, and listens on a socket of
            # its own (web/workers.py); their metrics meet in the directory
            # the workers inherit through the environment.
            return Workers(where, args.workers).run()
        elif args.workers > 1:
            uvicorn.run(APP_FACTORY, factory=True, workers=args.workers,
                        **where.server_options())
        else:
            uvicorn.run(create_app(settings), **where.server_options())
    return 0


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Say so in one line if something already listens on ``host:port``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise CommandError(f"cannot listen on {host}: {error.strerror or error}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port whose last connections are closing is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"{host}:{port} is already in use: stop what listens there, or give --port"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@contextmanager
def metrics_directory(shared: bool) -> Iterator[None]:
    """Where worker processes share their metrics (``shared``: several serve), empty at start.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used, with any number of
    workers (its ``*.db`` files cleared: a previous run's values would be
    added to this one's); otherwise, for several workers, a temporary
    directory, removed when the server stops.
    """
    from meterql.web.instruments import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    if not shared:
        yield
        return
    made = tempfile.mkdtemp(prefix="meterql-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(made, ignore_errors=True)


_ENVIRONMENT = """\
environment:
  METERQL_DATABASE_URL   postgresql://user@host/dbname or sqlite:///path.db
                         (default sqlite:///./meterql.db)
  METERQL_LOG_FORMAT     json or text (default: text on a terminal, else json)
  METERQL_LOG_LEVEL      debug, info, warning or error (default info)
  METERQL_RAW_EVENT_RETENTION_DAYS
                         days of raw events kept (default: forever)
  every setting: README.md, "Using it"
"""


def _command(
    commands: Any, name: str, description: str, run: Callable[[argparse.Namespace, Settings], int]
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=description, description=description, epilog=_ENVIRONMENT,
        formatter_class=_Formatter,
    )
    command.set_defaults(run=run)
    return command


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (a flag's, or a required one's, says
    nothing); the epilog's lines kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="meterql",
        description="Usage and billing for AI-agent hosting: a GraphQL API, the /v1 REST "
                    "routes, bulk import and live ingest, on SQLite or PostgreSQL.",
        epilog=_ENVIRONMENT, formatter_class=_Formatter,
    )
    root.add_argument("--version", action="version", version=f"meterql {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(commands, "serve", "migrate the database, then serve HTTP", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--demo", action="store_true",
                       help="fill an empty database with a demo account, and print its token")
    serve.add_argument("--workers", type=int, default=1,
                       help="gateway processes sharing the port")

    load = _command(commands, "load",
                    "import a JSON file: idempotent, all-or-nothing, checked whole first",
                    cmd_load)
    load.add_argument("file", help="the JSON file (format: docs/import.md)")

    token = commands.add_parser("token", help="create or revoke API tokens",
                                description="create or revoke API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True,
                                          metavar="SUBCOMMAND")
    create = _command(token_commands, "create",
                      "print a new token, once (only its hash is stored)", cmd_token_create)
    create.add_argument("--account", required=True, help="the account the token reads or feeds")
    create.add_argument("--scopes", default="read",
                        help="comma-separated: read (queries), ingest (usage events), "
                        "manage (budgets)")
    create.add_argument("--create-account", action="store_true",
                        help="create the account if it does not exist yet")
    revoke = _command(token_commands, "revoke",
                      "revoke a token: it answers 401 from the next request on",
                      cmd_token_revoke)
    revoke.add_argument("token", help="the token, as create printed it")

    _command(commands, "schema", "print the GraphQL schema (SDL)", cmd_schema)
    _command(commands, "migrate", "bring the database schema up to date, and say what changed",
             cmd_migrate)

    retention = commands.add_parser(
        "retention", help="raw-event retention (METERQL_RAW_EVENT_RETENTION_DAYS)",
        description="raw-event retention (METERQL_RAW_EVENT_RETENTION_DAYS)",
    )
    retention_commands = retention.add_subparsers(dest="retention_command", required=True,
                                                  metavar="SUBCOMMAND")
    _command(retention_commands, "apply",
             "let go of the whole months of raw events past the horizon (the rollups keep "
             "every sum)", cmd_retention_apply)

    rollups = commands.add_parser("rollups", help="maintain the usage rollups",
                                  description="maintain the usage rollups")
    rollups_commands = rollups.add_subparsers(dest="rollups_command", required=True,
                                              metavar="SUBCOMMAND")
    _command(rollups_commands, "rebuild",
             "recompute every rollup from the stored events (one transaction)",
             cmd_rollups_rebuild)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            name = "METERQL_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            print(f"meterql {args.command}: {name}: {message}", file=sys.stderr)
        return 2
    try:
        code: int = args.run(args, settings)
    except MeterqlError as error:
        print(f"meterql {args.command}: {error.message}", file=sys.stderr)
        return 1
    except CommandError as error:
        print(f"meterql {args.command}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
