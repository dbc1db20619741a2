"""The ``meterql`` command: serve | load | token | schema | migrate | retention | rollups."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from meterql.config import Settings
from meterql.db.engine import Database, is_sqlite, is_unavailable
from meterql.db.migrate import upgrade
from meterql.errors import DatabaseUnavailable, MeterqlError

T = TypeVar("T")
CLI_STATEMENT_TIMEOUT_S = 3600.0


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh, migrated database, in its own event loop."""

    # The statement timeout protects requests from a hung server; a bulk
    # load or a migration may legitimately run one statement for minutes.
    timeout = max(settings.db_statement_timeout_s, CLI_STATEMENT_TIMEOUT_S)
    patient = settings.model_copy(update={"db_statement_timeout_s": timeout})

    async def main() -> T:
        db = Database.from_settings(patient)
        try:
            await upgrade(db.engine)
            return await work(db)
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable(f"Database unavailable ({error})") from error
            raise
        finally:
            await db.dispose()

    return asyncio.run(main())


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def noop(_db: Database) -> None:
        return None

    _with_database(settings, noop)
    print("database schema is up to date")
    return 0


def cmd_rollups_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.db import rollups

    async def work(db: Database) -> int:
        async with db.write() as session, session.begin():
            return await rollups.rebuild(session)

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
    if not path.is_file():
        print(f"meterql load: no such file: {path}", file=sys.stderr)
        return 2

    from meterql.retention import horizon

    oldest = horizon(settings.raw_event_retention_days, datetime.now(UTC))

    async def work(db: Database) -> ImportReport:
        if not sys.stderr.isatty():
            return await load(db, path, horizon=oldest)
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            # Two passes over the file: checking it, then writing it.
            task = bar.add_task("loading", total=2 * path.stat().st_size)
            return await load(db, path, progress=lambda done: bar.update(task, completed=done),
                              horizon=oldest)

    report = _with_database(settings, work)
    print(
        f"loaded {path}: {report.models} models, {report.tiers} tiers, "
        f"{report.accounts} accounts; events: {report.events_accepted} new, "
        f"{report.events_duplicate} already known, of {report.events_seen}"
    )
    if report.events_unpriced:
        print(f"note: {report.events_unpriced} new events use a model without a price (cost 0)")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from meterql.db import writes

    scopes = sorted({s.strip() for s in args.scopes.split(",") if s.strip()})
    bad = [s for s in scopes if s not in ("read", "ingest")]
    if bad or not scopes:
        print(f"meterql token create: scopes are read and/or ingest, not {bad}", file=sys.stderr)
        return 2

    async def work(db: Database) -> str:
        async with db.write() as session, session.begin():
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
    from meterql.web.workers import SPREADS_CONNECTIONS, Listen, Workers

    async def prepare(db: Database) -> str | None:
        if not args.demo:
            return None
        if await demo.is_empty(db):
            written = await demo.fill(db)
            print(f"demo: generated account '{demo.DEMO_ACCOUNT}' with {written} usage events")
        return await demo.read_token(db)

    token = _with_database(settings, prepare)
    base = f"http://{args.host}:{args.port}"
    if token:
        print(f"demo read token: {token}")
        print(
            f"try:      curl -H 'Authorization: Bearer {token}' "
            f"'{base}/v1/metrics/summary?days=7'"
        )
        print(f"GraphiQL: {base}/graphql  (paste the token into the bar at the top; /v1/docs too)")
    log_config = logging_config(settings.log_format, settings.log_level)
    with metrics_directory(shared=args.workers > 1):
        if args.workers > 1 and SPREADS_CONNECTIONS:
            # Each worker process builds its own app (and engine) from the same
            # environment the settings came from, and listens on a socket of
            # its own (web/workers.py); their metrics meet in the directory
            # the workers inherit through the environment.
            where = Listen(args.host, args.port, log_config)
            return Workers(where, args.workers).run()
        elif args.workers > 1:
            uvicorn.run(
                "meterql.app:app_from_environment", factory=True, workers=args.workers,
                host=args.host, port=args.port, log_config=log_config, access_log=False,
            )
        else:
            uvicorn.run(
                create_app(settings), host=args.host, port=args.port,
                log_config=log_config, access_log=False,
            )
    return 0


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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="meterql", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true", help="fill an empty database with demo data")
    serve.add_argument(
        "--workers", type=int, default=1, help="gateway processes sharing the port (default 1)"
    )
    serve.set_defaults(run=cmd_serve)

    load = commands.add_parser("load", help="import a JSON file (idempotent, all-or-nothing)")
    load.add_argument("file")
    load.set_defaults(run=cmd_load)

    token = commands.add_parser("token", help="create or revoke API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new token, once")
    create.add_argument("--account", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read,ingest")
    create.set_defaults(run=cmd_token_create)
    revoke = token_commands.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token")
    revoke.set_defaults(run=cmd_token_revoke)

    schema = commands.add_parser("schema", help="print the GraphQL schema (SDL)")
    schema.set_defaults(run=cmd_schema)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(run=cmd_migrate)

    retention = commands.add_parser(
        "retention", help="raw-event retention (METERQL_RAW_EVENT_RETENTION_DAYS)"
    )
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    apply = retention_commands.add_parser(
        "apply", help="let go of the whole months of raw events past the horizon"
    )
    apply.set_defaults(run=cmd_retention_apply)

    rollups = commands.add_parser("rollups", help="maintain the usage rollups")
    rollups_commands = rollups.add_subparsers(dest="rollups_command", required=True)
    rebuild = rollups_commands.add_parser(
        "rebuild", help="recompute every rollup from the stored events (one transaction)"
    )
    rebuild.set_defaults(run=cmd_rollups_rebuild)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args, Settings())
    except MeterqlError as error:
        print(f"meterql {args.command}: {error.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
