"""Compression: brotli or gzip as the client asks, for answers and files worth it.

The client here is a raw one (no ``Accept-Encoding`` of its own, nothing
decoded), so each test sees the bytes on the wire and decodes them itself.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import brotli
import httpx
import pytest
from starlette.applications import Starlette

from meterql.db.engine import Database
from meterql.web.assets import assets
from meterql.web.compression import MIN_SIZE, accepted
from tests.golden import auth, seed

DECODE = {"br": brotli.decompress, "gzip": gzip.decompress}


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("gzip, deflate", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("br;q=0.5, gzip;q=0.8", "gzip"),
        ("gzip;q=0.5, br;q=0.5", "br"),
        ("GZIP", "gzip"),
        ("*", "br"),
        ("*;q=0", None),
        ("br;q=0, *", "gzip"),
        ("gzip;q=nonsense", None),
        ("deflate, zstd", None),
    ],
)
def test_the_encoding_chosen_for_an_accept_encoding(header: str | None, chosen: str | None) -> None:
    assert accepted(header) == chosen


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


@pytest.fixture
async def wire(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends only the headers a test gives and never decodes."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as client:
        client.headers.pop("accept-encoding", None)
        yield client


async def raw(client: httpx.AsyncClient, path: str, encoding: str | None,
              body: object = None, **headers: str) -> httpx.Response:
    """The answer as sent: its body as it came over the wire, not decoded."""
    sent = {**auth(), **headers}
    if encoding is not None:
        sent["accept-encoding"] = encoding
    method = "GET" if body is None else "POST"
    request = client.build_request(method, path, headers=sent, json=body)
    response = await client.send(request, stream=True)
    response._content = b"".join([part async for part in response.aiter_raw()])
    return response


BIG = "/v1/metrics/usage?days=90"  # 90 days of figures: several kilobytes of JSON
SMALL = "/v1/billing/trial-status"


@pytest.mark.parametrize("encoding", ["br", "gzip"])
async def test_a_big_answer_is_compressed_and_decodes_to_the_same_bytes(
    wire: httpx.AsyncClient, encoding: str
) -> None:
    plain = await raw(wire, BIG, None)
    assert plain.status_code == 200
    assert len(plain.content) >= MIN_SIZE
    assert "content-encoding" not in plain.headers

    packed = await raw(wire, BIG, encoding)
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == encoding
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) == len(packed.content)
    assert len(packed.content) < len(plain.content) / 2
    assert DECODE[encoding](packed.content) == plain.content
    assert packed.headers["content-type"] == plain.headers["content-type"]


async def test_a_small_answer_is_sent_as_it_is(wire: httpx.AsyncClient) -> None:
    plain = await raw(wire, SMALL, None)
    assert len(plain.content) < MIN_SIZE
    asked = await raw(wire, SMALL, "br, gzip")
    assert "content-encoding" not in asked.headers
    assert asked.content == plain.content


async def test_a_refused_encoding_is_never_used(wire: httpx.AsyncClient) -> None:
    response = await raw(wire, BIG, "br;q=0, gzip;q=0")
    assert "content-encoding" not in response.headers
    assert response.json()["period_days"] == 90


async def test_graphql_answers_are_compressed_too(wire: httpx.AsyncClient) -> None:
    query = "{ usage(days: 90) { series { start end label requests tokensIn tokensOut } } }"
    body = {"query": query}
    plain = await raw(wire, "/graphql", None, body)
    packed = await raw(wire, "/graphql", "gzip", body)
    assert plain.status_code == 200 and "errors" not in plain.json()
    assert len(plain.content) >= MIN_SIZE
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.content) == plain.content


async def test_a_streamed_export_passes_as_it_is(wire: httpx.AsyncClient) -> None:
    plain = await raw(wire, "/v1/export/usage.csv?days=90", None)
    asked = await raw(wire, "/v1/export/usage.csv?days=90", "gzip")
    assert asked.status_code == 200
    assert "content-encoding" not in asked.headers
    assert asked.content == plain.content


@pytest.mark.parametrize("encoding", ["br", "gzip"])
async def test_a_static_file_is_sent_compressed_with_a_tag_of_its_own(
    wire: httpx.AsyncClient, encoding: str
) -> None:
    path = "graphiql/graphiql.min.js"
    file = assets()[path]
    plain = await raw(wire, f"/static/{path}", None)
    packed = await raw(wire, f"/static/{path}", encoding)
    assert plain.content == file.body
    assert packed.headers["content-encoding"] == encoding
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert DECODE[encoding](packed.content) == file.body
    # The best setting: the megabyte bundle travels as about a quarter of itself.
    assert len(packed.content) < len(file.body) * 0.35
    assert packed.headers["etag"] != plain.headers["etag"]

    again = await raw(wire, f"/static/{path}", encoding, **{"if-none-match": packed.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    # The identity copy's tag does not match the compressed copy's.
    other = await raw(wire, f"/static/{path}", encoding, **{"if-none-match": plain.headers["etag"]})
    assert other.status_code == 200


async def test_a_static_file_is_compressed_once_per_encoding(wire: httpx.AsyncClient) -> None:
    file = assets()["meterql/pages.css"]
    first = await raw(wire, "/static/meterql/pages.css", "br")
    task = file.encoded["br"]
    second = await raw(wire, "/static/meterql/pages.css", "br")
    assert file.encoded["br"] is task
    assert first.content == second.content == task.result()
