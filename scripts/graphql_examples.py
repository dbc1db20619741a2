"""Regenerate the example results in docs/graphql.md: each page query run on the demo data.

    PYTHONPATH=src:. python scripts/graphql_examples.py          # rewrite the blocks
    PYTHONPATH=src:. python scripts/graphql_examples.py --check  # exit 1 if they differ

The demo data (``meterql serve --demo``) is made relative to a clock; here
it is made at ``DEMO_NOW`` and the app's clock is fixed to that instant, so
the results are the same on every run and machine. Each example in the
Markdown sits between ``<!-- example: NAME -->`` and ``<!-- /example -->``:
the query (the file in src/meterql/queries/, verbatim) and its result.
``tests/test_graphql_examples.py`` runs the same documents on both backends
and compares their results with the blocks written here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from meterql import demo
from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "graphql.md"
QUERIES = ROOT / "src" / "meterql" / "queries"
# The examples, by name: the file in src/meterql/queries/ is NAME.graphql.
EXAMPLES = ("billing-page", "metrics-page", "budgets-page")
# The instant the demo data is generated at and the app's clock reads.
DEMO_NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


def query(name: str) -> str:
    return (QUERIES / f"{name}.graphql").read_text("utf-8")


async def seed_demo(db: Database) -> str:
    """The demo account as of ``DEMO_NOW``; returns a read token."""
    await demo.fill(db, now=DEMO_NOW)
    return await demo.read_token(db)


async def run(client: httpx.AsyncClient, token: str, name: str) -> dict[str, Any]:
    """One example's whole answer (``data``, and ``errors`` if any), its variables defaulted."""
    response = await client.post("/graphql", json={"query": query(name)},
                                 headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def results() -> dict[str, Any]:
    """Every example's ``data`` on a fresh SQLite database of the demo data."""
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{directory}/demo.db")
        db = Database.from_settings(settings)
        try:
            await upgrade(db.engine)
            token = await seed_demo(db)
            app = create_app(settings, database=db, clock=lambda: DEMO_NOW)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
                found = {}
                for name in EXAMPLES:
                    body = await run(c, token, name)
                    if "errors" in body:
                        raise SystemExit(f"{name}: {body['errors']}")
                    found[name] = body["data"]
                return found
        finally:
            await db.dispose()


def dump(value: Any, indent: str = "") -> str:
    """JSON, indented, but an object or list of plain values on one line (a bucket, a total).

    An empty list or object counts as plain (a bucket's ``groups`` when ungrouped).
    """
    inner = indent + "  "
    if isinstance(value, dict) and any(isinstance(v, dict | list) and v for v in value.values()):
        items = [f"{inner}{json.dumps(k)}: {dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) and v for v in value):
        return "[\n" + ",\n".join(inner + dump(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def block(name: str, data: Any) -> str:
    return (
        f"<!-- example: {name} -->\n```graphql\n{query(name)}```\n\n"
        f"On the demo data made at {DEMO_NOW.isoformat().replace('+00:00', 'Z')}, with "
        "the app's clock there too (`scripts/graphql_examples.py` writes this result, "
        "`tests/test_graphql_examples.py` checks it on both backends):\n\n"
        f"```json\n{dump({'data': data})}\n```\n<!-- /example -->"
    )


def render(text: str, found: dict[str, Any]) -> str:
    for name, data in found.items():
        pattern = re.compile(rf"<!-- example: {re.escape(name)} -->.*?<!-- /example -->",
                             re.DOTALL)
        match = pattern.search(text)
        if match is None:
            raise SystemExit(f"{DOC}: no '<!-- example: {name} -->' ... '<!-- /example -->'")
        text = text[:match.start()] + block(name, data) + text[match.end():]
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="report whether docs/graphql.md is up to date; write nothing")
    args = parser.parse_args()
    text = DOC.read_text("utf-8")
    updated = render(text, asyncio.run(results()))
    if args.check:
        if updated != text:
            print(f"{DOC} is out of date: run scripts/graphql_examples.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
