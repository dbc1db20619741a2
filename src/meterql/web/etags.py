"""ETags for ``/v1`` answers and GraphQL GET queries: nothing changed, nothing sent.

An answer is a function of four things, and its tag is a hash of exactly
those, known after the request's first round trip (the token's, which reads
the account's version with it), before any of the answer is computed:

- **the account's data**: ``accounts.data_version``, which every write that
  can change one of its answers replaces in its own transaction (an accepted
  batch, an import, a token made or revoked, a budget or webhook changed, a
  webhook delivery taken or attempted, a rollup rebuild), whichever gateway
  made it;
- **the request**: the account, the method, the path and the query string
  (a GraphQL GET's document and variables are in it);
- **the clock**: answers read the date in UTC or in a time zone, and every
  zone in use is a whole number of quarter hours from UTC, so no date
  anywhere turns inside a UTC quarter hour; and a trial's countdown turns a
  day before its end, and the day before that, ... : the whole days left of
  each of the account's trials are part of the tag;
- **what serves it**: meterql's version and its settings (a changed upgrade
  URL or free plan changes answers without any write).

So a ``304 Not Modified`` never hides a change, and a client polling an
unchanged account gets it for one indexed lookup. The version is read
before the answer: a batch committed in between gives the new answer under
the old tag, and the next request gets a 200 again, never the reverse.
Tags are weak (``W/``): the same answer compressed or not is one answer.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from meterql import __version__
from meterql.config import Settings
from meterql.context import Context

_QUARTER_HOUR = 900
_DAY = timedelta(days=1)


class ETags:
    """The tags of one app: its version and settings are in every tag it makes."""

    def __init__(self, settings: Settings) -> None:
        self._seed = hashlib.blake2b(
            f"{__version__}\n{settings.model_dump_json()}".encode(), digest_size=16
        ).digest()

    def of(self, context: Context, request: Request) -> str:
        """The tag of the answer ``context``'s account gets to ``request`` now."""
        state = context.state
        assert state is not None  # read with the token, as every request's context is
        now = context.now
        parts = [
            context.account_id,
            str(state.version),
            str(int(now.timestamp()) // _QUARTER_HOUR),
            *(_trial_days(end, now) for end in state.trial_ends),
            # From the scope as sent: ``request.url`` would build a whole URL
            # (host included) on every request for the two parts used here.
            request.scope["method"],
            request.scope["path"],
            request.scope["query_string"].decode("latin-1"),
        ]
        digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=16, key=self._seed)
        return f'W/"{digest.hexdigest()}"'


def _trial_days(end: datetime, now: datetime) -> str:
    """Whole days left (-1: ended): what a trial's countdown and its expiry show."""
    return str((end - now) // _DAY) if end > now else "-1"


def matches(request: Request, etag: str) -> bool:
    """The client's ``If-None-Match`` names ``etag`` (weakly compared), or is ``*``."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag})
