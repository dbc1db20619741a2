"""``meterql load FILE.json``: bulk import, streaming, all-or-nothing, idempotent.

Two passes over the file, so memory stays flat however many events it holds:

1. *scan*: check the document's shape and its JSON syntax, build and validate
   the small sections (models, tiers, accounts); the events array is skipped
   without Python code per parser event;
2. *write*: in one transaction, apply models, tiers and accounts, then stream
   the events into a stage table in batches (:mod:`meterql.db.staging`: COPY on
   PostgreSQL), validating them (:class:`meterql.records.PlausibleEventRecord`)
   as they are parsed, and finish with a few set-based statements that insert
   the new ones and add them to every rollup.

A bad value anywhere raises :class:`ImportFileError` naming its JSON path, and
the transaction rolls back: nothing is written. Loading a file twice changes
nothing (upserts by id; events deduplicated by ``(account_id, event_id)``).
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import dropwhile, islice
from operator import ne
from pathlib import Path
from typing import IO, Any

import ijson
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from meterql import alerts
from meterql.config import FreePlan
from meterql.db import budgets, writes
from meterql.db.engine import Database
from meterql.db.staging import StagedEvents
from meterql.errors import InvalidInput
from meterql.records import (
    AccountRecord,
    EventRecord,
    ModelRecord,
    PlausibleEventRecord,
    TierRecord,
    before_the_horizon,
    first_error,
    json_path,
)

SMALL_SECTIONS: dict[str, type[BaseModel]] = {
    "models": ModelRecord,
    "tiers": TierRecord,
    "accounts": AccountRecord,
}
EVENTS = "usage_events"
BATCH = 5_000

# Called with the bytes read so far over both passes: the file is read twice,
# so the total is twice its size.
Progress = Callable[[int], None]
# Called as each phase starts: "check" (pass 1), "write" (pass 2), "rollups"
# (the set-based statements after the last byte), "tidy" (PostgreSQL's VACUUM).
Phases = Callable[[str], None]
_SCAN_REPORT_EVERY = 1 << 20  # bytes read by pass 1 between two progress reports


class ImportFileError(InvalidInput):
    """The file is refused as a whole; ``path`` is the JSON path of the first bad value."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class ImportReport:
    models: int = 0
    tiers: int = 0
    accounts: int = 0
    events_seen: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_unpriced: int = 0
    # The models of those events, by name.
    unpriced_models: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    models: list[ModelRecord] = field(default_factory=list)
    tiers: list[TierRecord] = field(default_factory=list)
    accounts: list[AccountRecord] = field(default_factory=list)


def _validate(model: type[BaseModel], value: Any, path: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise ImportFileError(*first_error(error, path)) from None


class _Reporting:
    """A binary file that reports how far it has been read, every ``every`` bytes and at its end."""

    def __init__(self, stream: IO[bytes], progress: Progress, every: int) -> None:
        self.stream = stream
        self.progress = progress
        self.every = every
        self.reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        done = self.stream.tell()
        if done - self.reported >= self.every or (size and not data):
            self.reported = done
            self.progress(done)
        return data


def _scan(stream: IO[bytes], progress: Progress | None = None) -> _Scan:
    """Pass 1: shape and small sections; the events are only parsed (JSON syntax)."""
    scan = _Scan()
    source = stream if progress is None else _Reporting(stream, progress, _SCAN_REPORT_EVERY)
    try:
        parser = ijson.parse(source, use_float=False)
        prefix, event, _ = next(parser, ("", "eof", None))
        if event != "start_map":
            raise ImportFileError("$", "the document must be a JSON object")
        pending_key: str | None = None
        for prefix, event, value in parser:
            if prefix == "" and event == "map_key":
                if value not in SMALL_SECTIONS and value != EVENTS:
                    known = ", ".join([*SMALL_SECTIONS, EVENTS])
                    raise ImportFileError(f"$.{value}", f"unknown key (expected one of {known})")
                pending_key = value
            elif pending_key is not None and prefix == pending_key:
                if event != "start_array":
                    raise ImportFileError(f"$.{pending_key}", "expected an array")
                pending_key = None
                if prefix == EVENTS:
                    # Skip the events without a Python step per parser event.
                    next(dropwhile(partial(ne, _EVENTS_END), parser), None)
                    continue
                records = getattr(scan, prefix)
                model = SMALL_SECTIONS[prefix]
                for index, item in enumerate(_items(parser, prefix + ".item")):
                    records.append(_validate(model, item, json_path(f"$.{prefix}", [index])))
    except ijson.JSONError as error:
        raise ImportFileError("$", f"not valid JSON: {_where_json_breaks(stream, error)}") from None
    return scan


# Files up to this size are read whole again to say where their JSON breaks.
_RECHECK_BYTES = 32 * 1024 * 1024


def _where_json_breaks(stream: IO[bytes], error: Exception) -> str:
    """What is wrong with the file's JSON, and at which line and column.

    The fast parser says what but not where, in several lines: a file of
    modest size is parsed once more by Python's own, which names both; a
    bigger one gets the fast parser's words on one line.
    """
    stream.seek(0, io.SEEK_END)
    if stream.tell() <= _RECHECK_BYTES:
        stream.seek(0)
        try:
            json.loads(stream.read())
        except json.JSONDecodeError as decoding:
            return f"{decoding.msg} at line {decoding.lineno}, column {decoding.colno}"
        except (UnicodeDecodeError, RecursionError, ValueError):
            pass
    return " ".join(str(error).split())


_EVENTS_END = (EVENTS, "end_array", None)  # the parser event that closes the events


def _items(parser: Iterator[tuple[str, str, Any]], item_prefix: str) -> Iterator[Any]:
    """Build each value of the array whose items have ``item_prefix``; stop at its end."""
    for prefix, event, value in parser:
        if event == "end_array" and prefix == item_prefix.removesuffix(".item"):
            return
        if event in ("start_map", "start_array"):
            builder = ijson.ObjectBuilder()
            builder.event(event, value)
            depth = 1
            while depth:
                prefix, event, value = next(parser)
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
                builder.event(event, value)
            yield builder.value
        else:
            yield value


async def load(
    db: Database, path: Path, progress: Progress | None = None, horizon: datetime | None = None,
    phases: Phases | None = None, free: FreePlan | None = None, now: datetime | None = None,
) -> ImportReport:
    """Import ``path`` into ``db``; raises :class:`ImportFileError` and writes nothing if bad.

    An event before ``horizon`` (raw-event retention, ``meterql.retention``) is bad.
    The budgets of the accounts the file's events belong to are checked in the
    import's transaction, as after a batch (``meterql.alerts``): ``free`` is the
    plan of an account without a subscription (its billing period), ``now``
    the import's instant.
    """
    now = now or datetime.now(UTC)
    size = path.stat().st_size
    phase = phases or (lambda _name: None)
    with _collections, path.open("rb") as stream:
        phase("check")
        scan = _scan(stream, progress)
        report = ImportReport(
            models=len(scan.models),
            tiers=len(scan.tiers),
            accounts=len(scan.accounts),
        )
        stream.seek(0)
        phase("write")
        async with db.write() as session, session.begin():
            await _check_tiers(session, scan)
            await writes.upsert_models(session, scan.models)
            await writes.upsert_tiers(session, scan.tiers)
            for account in scan.accounts:
                await writes.upsert_account(session, account)
            stage = StagedEvents(session, db.engine)
            await stage.open()
            accounts = _Accounts(session, {a.account_id for a in scan.accounts}, stage)
            spans: dict[str, list[datetime]] = {}
            try:
                await _stage_events(stream, stage, accounts, report, progress, size, horizon,
                                    spans)
                phase("rollups")
                report.events_accepted, report.events_unpriced = await stage.finish()
                report.unpriced_models = stage.unpriced_models
            finally:
                await stage.settle()
            report.events_duplicate = report.events_seen - report.events_accepted
            # Prices and plans are shared: any account's answers may show them.
            await writes.touch_accounts(session, None)
            if report.events_accepted:
                await _check_budgets(session, spans, free or FreePlan(), now)
            if progress:
                progress(size + stream.tell())
    if report.events_accepted and db.engine.dialect.name == "postgresql":
        phase("tidy")
        await writes.tidy_after_load(db.engine)
    return report


async def _check_budgets(
    session: AsyncSession, spans: dict[str, list[datetime]], free: FreePlan, now: datetime
) -> None:
    """Record the alerts the import's events make its accounts' budgets cross."""
    for account_id in sorted(await budgets.accounts_with_budgets(session, list(spans))):
        first, last = spans[account_id]
        await alerts.after_import(session, account_id, first, last, now, free)


async def _stage_events(
    stream: IO[bytes], stage: StagedEvents, accounts: _Accounts, report: ImportReport,
    progress: Progress | None, size: int, horizon: datetime | None,
    spans: dict[str, list[datetime]],
) -> None:
    """Parse, check and stage the file's events, a batch at a time (pass 2 of the file).

    ``spans`` learns each account's first and last event instant.
    """
    events = ijson.items(stream, EVENTS + ".item", use_float=False)
    while True:
        start = report.events_seen
        batch, error = _events(islice(events, BATCH), start)
        if horizon is not None:
            batch, error = _within(horizon, batch, start, error)
        # The error names the first bad value in file order: an
        # unknown account before the first invalid event comes first.
        await accounts.require(batch, start)
        if error is not None:
            raise error
        if not batch:
            return
        report.events_seen += len(batch)
        for event in batch:
            span = spans.get(event.account_id)
            if span is None:
                spans[event.account_id] = [event.timestamp, event.timestamp]
            elif event.timestamp < span[0]:
                span[0] = event.timestamp
            elif event.timestamp > span[1]:
                span[1] = event.timestamp
        await stage.add(batch)
        del batch  # before the next batch is built: one batch in memory
        _collections.collect()
        if progress:
            progress(size + stream.tell())


class _Collections:
    """The cyclic garbage collector runs once per batch while importing.

    An import allocates several containers per event (parsed dicts, records,
    the database layer's rows) and keeps a batch of them alive; at the default
    threshold (700 allocations) the collector would run every few events and,
    as batches move to the older generations, often traverse every object of
    the process. Instead, the objects that exist when the import starts are
    frozen (:func:`gc.freeze`: never traversed) and automatic collection is off
    until the last import running in the process ends; :meth:`collect`, called
    after each batch, collects what the import left, so memory stays flat.
    """

    def __init__(self) -> None:
        self.running = 0
        self.was_enabled = True

    def __enter__(self) -> None:
        if self.running == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
            gc.freeze()
        self.running += 1

    def __exit__(self, *_exc: object) -> None:
        self.running -= 1
        if self.running == 0:
            gc.unfreeze()
            if self.was_enabled:
                gc.enable()

    @staticmethod
    def collect() -> None:
        gc.collect()


_collections = _Collections()


def _events(items: Iterator[Any], start: int) -> tuple[list[EventRecord], ImportFileError | None]:
    """Validate ``items`` (events ``start``, ``start + 1``, ... of the file) in order.

    Returns the events up to the first invalid one, and that one's error if any.
    Each event goes through :class:`PlausibleEventRecord` (no Python code per
    event); only one it refuses is validated again, by :class:`EventRecord`,
    for the exact error, or accepted after all (a timestamp near the ends of
    the representable range).
    """
    batch: list[EventRecord] = []
    append = batch.append
    fast = _PLAUSIBLE
    item: Any = None
    while True:
        try:
            for item in items:
                # A timestamp that is no text (a number of seconds) is refused
                # by EventRecord's own check, which the fast path lacks.
                if item.__class__ is not dict or item.get("timestamp").__class__ is not str:
                    raise _NotPlausible
                append(fast(item))
            return batch, None
        except (ValidationError, _NotPlausible):
            try:
                append(_validate(EventRecord, item, f"$.{EVENTS}[{start + len(batch)}]"))
            except ImportFileError as error:
                return batch, error


def _within(
    horizon: datetime, batch: list[EventRecord], start: int, error: ImportFileError | None
) -> tuple[list[EventRecord], ImportFileError | None]:
    """The events up to the first one older than ``horizon``, and that one's error if any."""
    for index, event in enumerate(batch):
        if event.timestamp < horizon:
            path = f"$.{EVENTS}[{start + index}].timestamp"
            return batch[:index], ImportFileError(path, before_the_horizon(horizon))
    return batch, error


class _NotPlausible(Exception):
    """An event the fast path must not judge: the full validation decides."""


_PLAUSIBLE: Callable[[Any], EventRecord] = (
    PlausibleEventRecord.__pydantic_validator__.validate_python
)


class _Accounts:
    """Accounts an event may name: those of the file, and those already stored."""

    def __init__(self, session: AsyncSession, known: set[str], stage: StagedEvents) -> None:
        self.session = session
        self.known = known
        self.stage = stage
        self.missing: set[str] = set()

    async def require(self, batch: list[EventRecord], start: int) -> None:
        """Raise for the first event of ``batch`` (event ``start`` on) whose account is unknown."""
        if {event.account_id for event in batch} <= self.known:
            return
        for index, event in enumerate(batch, start):
            await self._require(event.account_id, index)

    async def _require(self, account_id: str, index: int) -> None:
        if account_id in self.known:
            return
        if account_id not in self.missing:
            await self.stage.flush()  # the session runs one statement at a time
            if await writes.known_accounts(self.session, [account_id]):
                self.known.add(account_id)
                return
            self.missing.add(account_id)
        raise ImportFileError(
            f"$.{EVENTS}[{index}].account_id", f"unknown account '{account_id}'"
        )


async def _check_tiers(session: AsyncSession, scan: _Scan) -> None:
    in_file = {t.tier_id for t in scan.tiers}
    wanted = {s.tier_id for a in scan.accounts for s in a.subscriptions} - in_file
    missing = wanted - await writes.known_tiers(session, wanted)
    for a_index, account in enumerate(scan.accounts):
        for s_index, sub in enumerate(account.subscriptions):
            if sub.tier_id in missing:
                raise ImportFileError(
                    f"$.accounts[{a_index}].subscriptions[{s_index}].tier_id",
                    f"unknown tier '{sub.tier_id}'",
                )
