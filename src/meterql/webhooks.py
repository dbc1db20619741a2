"""Webhooks: alerts sent as signed JSON POSTs, at least once, by one gateway at a time.

- **What is sent.** One delivery per alert and webhook, written to the outbox
  in the alert's own transaction (:func:`outgoing`). Its body is fixed then:
  ``{"id", "type": "budget.threshold_crossed", "created_at", "account_id",
  "data": {...}}``; ``id`` is the delivery's, the same on every attempt, for
  the receiver to drop repeats.
- **Signed.** ``Meterql-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
  "<t>.<body>" under the webhook's secret>``, Stripe's scheme
  (``docs/webhooks.md`` has the receiver's check).
- **At least once.** A delivery is sent until a receiver answers 2xx, or
  fails after its day of attempts, waiting after each failed attempt an
  exponentially longer time with jitter (:func:`backoff`). A redirect is not
  followed: it is a failed attempt.
- **One gateway at a time.** Each round is taken under a PostgreSQL
  advisory lock (``pg_try_advisory_lock``: a gateway that does not get it
  skips the round); every taken row is moved a lease ahead in the
  transaction that takes it, so a gateway killed mid-delivery leaves its
  rows due again after the lease, for another round to send.
- **Nothing waits on a receiver** but the deliverer: ingest writes an outbox
  row and goes on; attempts time out (``webhook_timeout_s``).
- **No requests inward** (SSRF): a URL must be http(s), and its host must
  resolve to public addresses only, checked when the webhook is made and
  again, by the connection itself, at every attempt (so a name that later
  resolves inward is refused at that point), unless
  ``METERQL_WEBHOOK_ALLOW_PRIVATE=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import typing
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import httpcore
import httpx
from sqlalchemy import func, select

from meterql.budgets import Rule, Scope, format_amount
from meterql.config import Settings
from meterql.db import webhooks as stored
from meterql.db.budgets import AlertRow
from meterql.db.engine import Database
from meterql.db.webhooks import Claimed, Outgoing
from meterql.errors import InvalidInput, said
from meterql.windows import EPOCH, Clock

logger = logging.getLogger("meterql.webhooks")

EVENT_TYPE = "budget.threshold_crossed"
SIGNATURE_HEADER = "Meterql-Signature"
ID_HEADER = "Meterql-Webhook-Id"
MAX_WEBHOOKS = 10  # per account
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY_S = 10.0
LONGEST_WAIT_S = 3600.0
ROUND_SIZE = 20  # deliveries a round takes
AT_ONCE = 5  # of them in flight together
# pg_try_advisory_lock's key: "meterql webhooks", as one signed 64-bit number.
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"meterql webhooks").digest()[:8], "big", signed=True)


def new_webhook_id() -> str:
    return "whk_" + secrets.token_hex(8)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def delivery_id(now: datetime) -> str:
    """Key order is time order, so the newest deliveries list first."""
    micros = (now - EPOCH) // timedelta(microseconds=1)
    return f"dlv_{micros:017d}_{secrets.token_hex(6)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempts`` failed attempts: doubling from 10 s, at most an
    hour, each a random 50..100% of that (jitter, so that retries do not come in waves)."""
    ceiling = min(LONGEST_WAIT_S, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))
    share: float = (rng or random).uniform(0.5, 1.0)
    return ceiling * share


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def outgoing(
    account_id: str, alerts: Iterable[AlertRow], rules: dict[str, Rule],
    webhooks: Sequence[tuple[str, str]], now: datetime,
) -> list[Outgoing]:
    """The outbox rows for new alerts: one per alert and webhook, silent alerts none."""
    rows = []
    for alert in alerts:
        rule = rules.get(alert.budget_id)
        if alert.silent or rule is None:
            continue
        for webhook_id, _url in webhooks:
            ident = delivery_id(now)
            body = {
                "id": ident,
                "type": EVENT_TYPE,
                "created_at": _instant(now),
                "account_id": account_id,
                "data": {
                    "alert_id": alert.alert_id,
                    "threshold": alert.threshold,
                    "spent": format_amount(alert.measure, alert.spent),
                    "limit": format_amount(alert.measure, alert.limit),
                    "period_start": _instant(alert.period_start),
                    "period_end": _instant(alert.period_end),
                    "budget": {
                        "id": rule.budget_id,
                        "name": rule.name,
                        "scope": rule.scope.value,
                        "instance_id": rule.scope_key if rule.scope is Scope.INSTANCE else None,
                        "model": rule.scope_key if rule.scope is Scope.MODEL else None,
                        "measure": rule.measure.value,
                        "period": rule.period.value,
                        "time_zone": rule.time_zone,
                    },
                },
            }
            rows.append(Outgoing(ident, webhook_id, alert.alert_id,
                                 json.dumps(body, separators=(",", ":"), ensure_ascii=False)))
    return rows


# --- where a webhook may point -------------------------------------------------------------------


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _all_public(addresses: Sequence[str]) -> bool:
    """Whether a host may be called: it resolved, and to public addresses only."""
    return bool(addresses) and all(_public(a) for a in addresses)


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class Refused(Exception):
    """A webhook URL that may not be called."""


async def check_url(url: str, allow_private: bool) -> str:
    """``url`` as stored, if a webhook may point there; :class:`Refused` (with why) if not."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as error:
        raise Refused(f"not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Refused("an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise Refused("no user name or password in the URL")
    if len(str(parsed)) > 2000:
        raise Refused("at most 2000 characters")
    if not allow_private:
        try:
            addresses = await _addresses(parsed.host, parsed.port or 443)
        except OSError:
            raise Refused(f"{parsed.host} does not resolve") from None
        if not _all_public(addresses):
            raise Refused(f"{parsed.host} is a loopback, private or reserved address "
                          "(METERQL_WEBHOOK_ALLOW_PRIVATE=true allows those)")
    return str(parsed)


def refusal(url: str, reason: str) -> InvalidInput:
    message = f"This URL may not be a webhook: {reason}"
    return InvalidInput(f"url: {message}", [{"type": "url", "loc": ["url"], "msg": message,
                                             "input": url}])


class _PublicOnly(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses: resolves the host itself, checks every address,
    then connects to one of them (TLS still checks the certificate against the host)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await _addresses(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve") from error
        if not _all_public(addresses):
            raise httpcore.ConnectError(f"{host} resolves to a private address: refused")
        return await self._inner.connect_tcp(addresses[0], port, timeout, local_address,
                                             socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The deliverer's client: no redirects, no proxies from the environment, a timeout,
    and (unless private addresses are allowed) connections to public addresses only."""
    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    if not settings.webhook_allow_private:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_PublicOnly(),
            max_connections=AT_ONCE,
        )
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                             timeout=settings.webhook_timeout_s,
                             headers={"User-Agent": "meterql-webhooks"})


# --- the deliverer -------------------------------------------------------------------------------


class Deliverer:
    """Sends what the outbox holds; :meth:`run` until cancelled, a round every poll."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.lease = timedelta(seconds=settings.webhook_lease_s)
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bad round must not end the loop
                    logger.exception("webhook delivery round failed")
                await asyncio.sleep(self.settings.webhook_poll_s)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def round(self) -> int:
        """Send what is due now (one round); the number of attempts made."""
        async with self._turn() as mine:
            if not mine:
                return 0
            async with self.db.write() as session, session.begin():
                taken = await stored.claim(session, self.clock(), self.lease, ROUND_SIZE)
            if not taken:
                return 0
            gate = asyncio.Semaphore(AT_ONCE)

            async def attempt(item: Claimed) -> None:
                async with gate:
                    await self._attempt(item)

            await asyncio.gather(*(attempt(item) for item in taken))
            return len(taken)

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Whether this gateway delivers this round: on PostgreSQL, the one holding the lock."""
        if self.db.engine.dialect.name != "postgresql":
            yield True
            return
        async with self.db.engine.connect() as connection:
            mine = bool(await connection.scalar(select(func.pg_try_advisory_lock(_LOCK_KEY))))
            try:
                yield mine
            finally:
                if mine:
                    await connection.scalar(select(func.pg_advisory_unlock(_LOCK_KEY)))
                await connection.rollback()

    async def _attempt(self, item: Claimed) -> None:
        if self._client is None:
            self._client = http_client(self.settings)
        body = item.payload.encode()
        now = self.clock()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(item.secret, int(now.timestamp()), body),
            ID_HEADER: item.delivery_id,
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(item.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"answered {status}"
        except httpx.TimeoutException:
            error = "timed out"
        except httpx.HTTPError as failure:
            error = said(failure)[:300]
        delivered = error is None
        finished = self.clock()
        retry_at = None
        if not delivered:
            wait = timedelta(seconds=backoff(item.attempts + 1))
            if finished + wait <= item.retry_until:
                retry_at = finished + wait
        async with self.db.write() as session, session.begin():
            await stored.finish(session, item, now=finished, delivered=delivered,
                                status_code=status, error=error, retry_at=retry_at)
        if not delivered:
            logger.info("webhook delivery %s: %s (%s)", item.delivery_id, error,
                        "will retry" if retry_at else "gave up")
