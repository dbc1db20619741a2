"""Compression: brotli or gzip, as the client asks, for answers big enough to gain from it.

Two kinds of answer are compressed, each the way it pays:

- **Static files** (the 1 MB GraphiQL bundle, Swagger UI, the stylesheets)
  are compressed once per process, at the best settings, the first time a
  client asks for that encoding (in a thread: brotli's best setting takes
  over a second on the biggest file), and served from memory after that
  (``web/assets.py``).
- **Answers** (``/v1`` JSON, GraphQL, the OpenAPI document, the pages) are
  compressed by :class:`Compressing` as they leave (``web/edge.py``), at fast
  settings, when their whole body is at least :data:`MIN_SIZE` bytes: below
  about one packet, compressing costs time and saves nothing on the wire. A
  streamed answer (the CSV export) passes as it is.

A request whose ``Accept-Encoding`` names neither encoding costs one header
lookup: its answer is not wrapped at all.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

import brotli
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Scope, Send

BROTLI, GZIP = "br", "gzip"
# Preferred first, when a client accepts both equally.
ENCODINGS = (BROTLI, GZIP)
MIN_SIZE = 1024
_COMPRESSIBLE = ("application/json", "application/graphql-response+json", "text/",
                 "application/javascript")

_FAST: dict[str, Callable[[bytes], bytes]] = {
    BROTLI: lambda body: brotli.compress(body, quality=4),
    GZIP: lambda body: gzip.compress(body, compresslevel=6, mtime=0),
}
_BEST: dict[str, Callable[[bytes], bytes]] = {
    BROTLI: lambda body: brotli.compress(body, quality=11),
    GZIP: lambda body: gzip.compress(body, compresslevel=9, mtime=0),
}


def accepted(header: str | None) -> str | None:
    """The encoding to answer in for this ``Accept-Encoding`` header, or None for identity.

    The highest quality wins, brotli on a tie; ``q=0`` refuses an encoding
    and ``*`` stands for those not named (RFC 9110, 12.5.3).
    """
    if not header:
        return None
    weights: dict[str, float] = {}
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        weight = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        if coding:
            weights[coding] = weight
    best: str | None = None
    best_weight = 0.0
    for encoding in ENCODINGS:
        weight = weights.get(encoding, weights.get("*", 0.0))
        if weight > best_weight:
            best, best_weight = encoding, weight
    return best


def compress_best(body: bytes, encoding: str) -> bytes:
    """``body`` at the encoding's best (slowest) setting: for files sent many times."""
    return _BEST[encoding](body)


def compressible(content_type: str | None) -> bool:
    return content_type is not None and content_type.startswith(_COMPRESSIBLE)


def encoding_for(scope: Scope) -> str | None:
    """The encoding to compress this request's answer in, or None: see :func:`accepted`."""
    for key, value in scope["headers"]:
        if key == b"accept-encoding":
            return accepted(value.decode("latin-1"))
    return None


class Compressing:
    """The ``send`` of one answer: holds its start until its first body part is seen."""

    def __init__(self, send: Send, encoding: str) -> None:
        self.send = send
        self.encoding = encoding
        self.start: Message | None = None
        self.passing = False

    async def __call__(self, message: Message) -> None:
        if self.passing:
            await self.send(message)
            return
        if message["type"] == "http.response.start":
            self.start = message
            return
        start = self.start
        if start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.passing = True
        headers = MutableHeaders(raw=list(start["headers"]))
        kind_fits = compressible(headers.get("content-type"))
        if kind_fits:
            # Caches must keep one copy per encoding asked for.
            headers.add_vary_header("Accept-Encoding")
        body: bytes = message.get("body", b"")
        whole = not message.get("more_body", False)
        if (kind_fits and whole and len(body) >= MIN_SIZE and "content-encoding" not in headers
                and start["status"] not in (204, 304)):
            body = _FAST[self.encoding](body)
            headers["Content-Encoding"] = self.encoding
            headers["Content-Length"] = str(len(body))
            message = {"type": "http.response.body", "body": body}
        await self.send({**start, "headers": headers.raw})
        await self.send(message)
