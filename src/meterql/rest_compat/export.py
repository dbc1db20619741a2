"""``GET /v1/export/usage.csv``: the ``usage`` series as CSV, streamed a chunk at a time.

The route's document holds two operations. ``ExportUsageGroups`` runs once
over the whole range (grouped exports only) for the groups every bucket
lists, as GraphQL lists them: each group with a request anywhere in the
range, in key order, zeros included. ``ExportUsage`` runs once per chunk of
whole buckets (``buckets.chunks``: a month of days at most), and each
chunk's rows are sent as soon as it is answered, so memory holds one chunk,
never the year. The numbers are GraphQL's by construction.

Everything that can refuse the request (token, scope, parameters, the group
query, the first chunk) happens before the 200 starts. A later chunk that
fails is logged and ends the stream abruptly (the exception propagates, the
server cuts the connection): a client sees a transfer error, never a 200
whose CSV silently stops, and never a traceback in the body.

Each chunk after the first checks again that the token is live (a revoked
one cuts the stream at its next chunk) and reads on a connection of its
own, taken for its statements and given back before its rows are sent: a slow client never
holds a pooled connection (or, on SQLite, a read transaction that keeps the
WAL from being checkpointed) for the minutes a year of hours may take. The
price: chunks are not one snapshot; a group first seen by a later chunk
(ingested meanwhile) gets rows from there on, after the others.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from graphql import ExecutionResult
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from meterql import buckets
from meterql.buckets import Granularity, LocalRange
from meterql.context import Context, Services, finish, still_granted
from meterql.errors import InvalidInput, MeterqlError
from meterql.money import format_usd
from meterql.rest_compat.endpoint import Endpoint, PreparedRoute, request_context, run_document
from meterql.rest_compat.params import coerce
from meterql.web.responses import error_response, internal_error_response

logger = logging.getLogger("meterql.rest_compat")

MEDIA_TYPE = "text/csv; charset=utf-8"
GROUPS_OPERATION = "ExportUsageGroups"
CHUNK_OPERATION = "ExportUsage"
# The CSV columns: the bucket's, the group's key when grouped, then the
# measures (the group's when grouped, else the bucket's). They are the
# document's aliases.
WHEN = ("start", "end", "label")
MEASURES = ("requests", "tokens_in", "tokens_out", "total_tokens", "estimated_cost_usd")
# For the OpenAPI document.
CSV_RUNS = (
    "Usage as CSV, the numbers of GraphQL's `usage` with the same arguments. Parameters: "
    "`from` and `to` (local dates in `tz`, both included, both or neither; neither is "
    "the last 30 days, today included; at most 366 days), `tz`, `granularity`, "
    "`group_by`. The range is read in chunks of whole buckets (a month of days at most) "
    "and each chunk's rows are sent as soon as it is read. `ExportUsageGroups` runs "
    "once over the whole range (grouped exports only), `ExportUsage` once per chunk, "
    "from this fixed GraphQL document"
)
CSV_DESCRIPTION = (
    "CSV (RFC 4180, UTF-8, CRLF line ends), streamed. Columns: `start`, `end` (ISO 8601 "
    "with the zone's offset), `label`, the group (`model`, `instance` or `provider`) "
    "when grouped, `requests`, `tokens_in`, `tokens_out`, `total_tokens`, "
    "`estimated_cost_usd` (exact, 4 places). One row per bucket, oldest first; when "
    "grouped, one per bucket and group, every group with usage in the range in every "
    "bucket (zeros included), in key order. A group key a spreadsheet would read as a "
    "formula (starting with `=`, `+`, `-`, `@` or their full-width forms, possibly after "
    "whitespace, or with a tab, CR, LF or `'`) is prefixed with `'`. "
    "A failure after the first row cuts the connection: a complete answer ends with "
    "its last row and the transfer's normal end."
)
# A group without usage in a bucket of a chunk: GraphQL's zeros, as it writes them.
_ZEROS: dict[str, Any] = {
    "requests": 0, "tokens_in": 0, "tokens_out": 0, "total_tokens": 0,
    "estimated_cost_usd": format_usd(Decimal(0)),
}
# Cells a spreadsheet would read as a formula: OWASP's list (a sign, tab, CR),
# a line feed, the full-width signs spreadsheets fold into ASCII ones, a sign
# after leading whitespace (which spreadsheets trim), and the apostrophe that
# neutralises them all, so that a prefixed cell is unambiguous.
_FORMULA_SIGNS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_FORMULA_STARTS = (*_FORMULA_SIGNS, "\t", "\r", "\n", "'")


class ExportInterrupted(RuntimeError):
    """A chunk failed after the 200 started: the stream must end without its last row."""


class _Masked(Exception):
    """A document failed with a bug (logged): the request answers 500."""


def spreadsheet_safe(text: str) -> str:
    """``text``, with a ``'`` in front if a spreadsheet would take it for a formula.

    Keys are free text (anything but NUL): an instance called ``=HYPERLINK(...)``
    must not become a link. A key that itself starts with ``'`` gets one more,
    so no key as written starts with ``'`` unless prefixed: stripping one
    leading ``'`` from a cell that has one always gives the key back.
    """
    risky = text.startswith(_FORMULA_STARTS) or text.lstrip().startswith(_FORMULA_SIGNS)
    return "'" + text if risky else text


def _at_query(error: InvalidInput) -> InvalidInput:
    """A refusal of ``buckets.local_range`` (GraphQL's ``range.to``...) located in the
    query string (``to``); one of the range as a whole at the query itself."""
    entries = [
        {**entry, "loc": ["query", *(part for part in entry["loc"] if part != "range")],
         "msg": entry["msg"].replace("range.", "")}
        for entry in error.errors
    ]
    return InvalidInput(error.message.replace("range.", ""), entries)


def _local_range(values: dict[str, Any], tz: str, context: Context) -> LocalRange:
    first: date | None = values.get("from")
    last: date | None = values.get("to")
    if (first is None) != (last is None):
        missing = "to" if last is None else "from"
        raise InvalidInput("Field required", [
            {"type": "missing", "loc": ["query", missing], "msg": "Field required",
             "input": None}])
    try:
        return buckets.local_range(tz, context.now, first=first, last=last)
    except InvalidInput as error:
        raise _at_query(error) from None


def _range(local: LocalRange) -> dict[str, str]:
    return {"from": local.first.isoformat(), "to": local.last.isoformat()}


def _body(result: ExecutionResult, request_id: str) -> Any:
    if result.errors:
        original = result.errors[0].original_error
        if isinstance(original, MeterqlError):
            raise original
        logger.error("export document failed (request id %s): %s", request_id or "-",
                     result.errors[0].message, exc_info=original)
        raise _Masked()
    assert result.data is not None
    return result.data["body"]


def _rows(body: Any, keys: Sequence[str] | None) -> Iterator[list[Any]]:
    """One row per bucket, or per bucket and group of ``keys`` (zeros where missing)."""
    for bucket in body["series"]:
        when = [bucket[name] for name in WHEN]
        if keys is None:
            yield [*when, *(bucket[name] for name in MEASURES)]
            continue
        found = {group["key"]: group for group in bucket["groups"]}
        known = set(keys)
        # A group this chunk saw that the group query did not (ingested since).
        later = [group["key"] for group in bucket["groups"] if group["key"] not in known]
        for key in [*keys, *later]:
            group = found.get(key, _ZEROS)
            yield [*when, spreadsheet_safe(key), *(group[name] for name in MEASURES)]


def _csv(rows: Iterator[Sequence[Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def make_export_endpoint(prepared: PreparedRoute, services: Services) -> Endpoint:
    route = prepared.route
    document = prepared.document

    async def chunk_body(context: Context, variables: dict[str, Any], local: LocalRange) -> Any:
        result = await run_document(services.schema, document, context,
                                    {**variables, "range": _range(local)}, CHUNK_OPERATION)
        return _body(result, context.request_id)

    async def endpoint(request: Request) -> Response:
        try:
            context = await request_context(services, request)
        except MeterqlError as error:
            return error_response(error)
        try:
            context.require(route.scope)
            values = coerce(request.query_params, route.params)
            tz: str = values.get("tz", buckets.DEFAULT_ZONE)
            granularity = Granularity(values.get("granularity", Granularity.DAY.value))
            group_by: str | None = values.get("groupBy")
            local = _local_range(values, tz, context)
            variables = {"tz": tz, "granularity": granularity.value, "groupBy": group_by}
            keys: list[str] | None = None
            if group_by is not None:
                result = await run_document(
                    services.schema, document, context,
                    {"range": _range(local), "tz": tz, "groupBy": group_by}, GROUPS_OPERATION,
                )
                keys = [group["key"] for group in _body(result, context.request_id)["groups"]]
            chunks = buckets.chunks(local, granularity, len(keys or ()))
            # The first chunk before the 200: whatever refuses the request refuses it here.
            first = await chunk_body(context, variables, chunks[0])
        except MeterqlError as error:
            return error_response(error)
        except _Masked:
            return internal_error_response(context.request_id)
        finally:
            finish(context)

        async def later_chunk(chunk: LocalRange) -> Any:
            # A context of its own (fresh loaders and allowances),
            # whose token is checked again: a revocation stops the export at
            # its next chunk, for the price of one indexed read a chunk.
            fresh = replace(context)
            try:
                await still_granted(fresh)
                return await chunk_body(fresh, variables, chunk)
            finally:
                finish(fresh)

        header = [*WHEN, *([group_by.lower()] if group_by is not None else []), *MEASURES]
        return StreamingResponse(
            _stream(header, first, chunks[1:], keys, later_chunk, context.request_id),
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{_filename(local)}"'},
        )

    endpoint.__name__ = route.document.removesuffix(".graphql")
    return endpoint


def _filename(local: LocalRange) -> str:
    return f"usage-{local.first.isoformat()}-{local.last.isoformat()}.csv"


async def _stream(
    header: list[str],
    first: Any,
    rest: Sequence[LocalRange],
    keys: Sequence[str] | None,
    read: Callable[[LocalRange], Awaitable[Any]],
    request_id: str,
) -> AsyncIterator[bytes]:
    """The header and the first chunk's rows, then each later chunk's as it is read.

    At most one chunk's answer is alive at a time: each is dropped (``del``)
    before the next is read, the first one included.
    """
    text = _csv(iter([header, *_rows(first, keys)]))
    del first
    yield text
    del text
    for done, chunk in enumerate(rest, start=1):
        try:
            body = await read(chunk)
        except (MeterqlError, _Masked) as error:
            # A refusal (a revoked token, the database away) is the client's
            # or the operator's to know of; a bug has been logged already.
            logger.log(
                logging.WARNING if isinstance(error, MeterqlError) else logging.ERROR,
                "usage export cut short after %d of %d chunks (request id %s): %s",
                done, len(rest) + 1, request_id or "-",
                getattr(error, "message", "see the error above"),
            )
            raise ExportInterrupted("usage export cut short") from None
        text = _csv(_rows(body, keys))
        del body
        yield text
        del text
