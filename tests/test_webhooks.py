"""Webhooks: signed, at least once, retried, never inward, on both backends.

A real receiver (a Starlette app under uvicorn on a free loopback port)
records what it is sent and answers as each test scripts it. meterql runs
in-process on the golden data with a clock the tests move, and its
deliverer's rounds are run by hand (``Deliverer.round``), except in the test
of a real gateway process, which delivers on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import webhooks as stored
from meterql.db.engine import Database
from meterql.webhooks import Deliverer, backoff
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, GLOBEX_TOKEN, auth, seed
from tests.servers import serving
from tests.test_budgets import BUDGETS, create, gql, manage_token, ok, send

CREATE_WEBHOOK = """mutation($url: String!, $description: String) {
  createWebhook(url: $url, description: $description) {
    secret webhook { id url description createdAt } } }"""
DELIVERIES = """{ viewer { webhookDeliveries(first: 50) { totalCount edges { node {
  id webhookId alertId status attempts nextAttemptAt lastAttemptAt lastStatusCode lastError
  createdAt payload } } } } }"""
REDELIVER = "mutation($id: ID!) { redeliver(id: $id) { id status attempts nextAttemptAt } }"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/webhooks.md shows it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    """What the receiver was sent, and how it answers next ("ok", "fail", "slow", "moved")."""

    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    redirected: int = 0
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.got.append(({k.lower(): v for k, v in request.headers.items()}, body))
        step = self.script.pop(0) if self.script else "ok"
        if step == "fail":
            return PlainTextResponse("no", status_code=500)
        if step == "slow":
            await asyncio.sleep(3)
        if step == "hold":
            self.entered.set()
            await asyncio.to_thread(self.release.wait, 30)
        if step == "moved":
            return RedirectResponse(self.url.replace("/hook", "/elsewhere"), status_code=302)
        return PlainTextResponse("thanks")

    async def elsewhere(self, _request: Request) -> Response:
        self.redirected += 1
        return PlainTextResponse("you should not be here")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    app = Starlette(routes=[Route("/hook", found.hook, methods=["POST"]),
                            Route("/elsewhere", found.elsewhere, methods=["POST", "GET"])])
    with serving(app) as url:
        found.url = url + "/hook"
        yield found


@pytest.fixture
def fresh(receiver: Receiver) -> Receiver:
    receiver.got.clear()
    receiver.script.clear()
    receiver.redirected = 0
    receiver.entered.clear()
    receiver.release.clear()
    return receiver


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout_s": 1.0,
                                       "webhook_delivery": False})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hooked(hook_settings: Settings, db: Database, clock: Clock
                 ) -> AsyncIterator[httpx.AsyncClient]:
    await seed(db)
    app = create_app(hook_settings, database=db, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as client:
        yield client


async def setup(client: httpx.AsyncClient, db: Database, url: str) -> tuple[str, str]:
    """A manage token, a webhook at ``url`` (its secret), and a budget the next batch crosses."""
    token = await manage_token(db)
    made = (await ok(client, token, CREATE_WEBHOOK, {"url": url, "description": "ops"}))
    # Acme's requests on 2026-11-20 (UTC): 2 of 4; one more crosses 75%.
    await create(client, token, measure="REQUESTS", limit="4", period="DAY", thresholds=[75],
                 name="daily")
    return token, made["createWebhook"]["secret"]


async def deliveries(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    data = await ok(client, ACME_TOKEN, DELIVERIES)
    return [edge["node"] for edge in data["viewer"]["webhookDeliveries"]["edges"]]


async def test_an_alert_arrives_signed_once(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    _, secret = await setup(hooked, db, fresh.url)
    assert secret.startswith("whsec_") and len(secret) > 40
    listed = (await ok(hooked, ACME_TOKEN, "{ viewer { webhooks { id url description } } }"))
    assert [(w["url"], w["description"]) for w in listed["viewer"]["webhooks"]] == [
        (fresh.url, "ops")]
    assert "secret" not in json.dumps(listed)
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 1
    assert await deliverer.round() == 0  # delivered: nothing due
    await deliverer.close()

    ((headers, body),) = fresh.got
    assert headers["content-type"] == "application/json"
    assert verify(secret, headers["meterql-signature"], body, NOW.timestamp())
    assert not verify("whsec_wrong", headers["meterql-signature"], body, NOW.timestamp())
    assert not verify(secret, headers["meterql-signature"], body + b" ", NOW.timestamp())
    sent = json.loads(body)
    assert sent["id"] == headers["meterql-webhook-id"]
    assert (sent["type"], sent["account_id"], sent["created_at"]) == (
        "budget.threshold_crossed", "acme", "2026-11-20T15:30:00Z")
    data = sent["data"]
    assert (data["threshold"], data["spent"], data["limit"]) == (75, "3", "4")
    assert (data["period_start"], data["period_end"]) == ("2026-11-20T00:00:00Z",
                                                          "2026-11-21T00:00:00Z")
    assert (data["budget"]["name"], data["budget"]["measure"], data["budget"]["period"]) == (
        "daily", "REQUESTS", "DAY")
    (alert,) = (await ok(hooked, ACME_TOKEN, "{ viewer { alerts { edges { node { id } } } } }")
                )["viewer"]["alerts"]["edges"]
    assert data["alert_id"] == alert["node"]["id"]
    (delivery,) = await deliveries(hooked)
    assert (delivery["id"], delivery["status"], delivery["attempts"], delivery["lastStatusCode"],
            delivery["nextAttemptAt"], delivery["lastError"]) == (
        sent["id"], "DELIVERED", 1, 200, None, None)
    assert delivery["payload"].encode() == body


async def test_a_deliverys_progress_is_never_hidden_by_a_304(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    """The deliverer's writes (a claim moves the next attempt, an attempt writes its
    outcome) give the account a new tag; other accounts keep theirs."""
    await setup(hooked, db, fresh.url)
    fresh.script[:] = ["fail"]
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    query = "/graphql?" + urlencode({"query": DELIVERIES})

    async def tagged(token: str, path: str) -> tuple[str, httpx.Response]:
        response = await hooked.get(path, headers=auth(token))
        assert response.status_code == 200, response.text
        return response.headers["etag"], response

    async def status(etag: str) -> tuple[int, list[Any]]:
        response = await hooked.get(query, headers={**auth(ACME_TOKEN), "if-none-match": etag})
        if response.status_code == 304:
            return 304, []
        nodes = response.json()["data"]["viewer"]["webhookDeliveries"]["edges"]
        return response.status_code, [(n["node"]["status"], n["node"]["attempts"],
                                       n["node"]["nextAttemptAt"]) for n in nodes]

    pending, _ = await tagged(ACME_TOKEN, query)
    other, _ = await tagged(GLOBEX_TOKEN, "/v1/metrics/summary?days=7")
    assert await status(pending) == (304, [])
    # A claim alone (a deliverer that has not sent yet): the next attempt moved.
    async with db.write() as session, session.begin():
        (claimed,) = await stored.claim(session, clock(), timedelta(seconds=60), 10)
    code, shown = await status(pending)
    assert (code, shown[0][:2]) == (200, ("PENDING", 0))
    leased, _ = await tagged(ACME_TOKEN, query)
    clock.advance(61)  # past the lease
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 1  # answered 500: retried later
    failed, _ = await tagged(ACME_TOKEN, query)
    assert await status(failed) == (304, [])
    clock.advance(30)
    assert await deliverer.round() == 1  # delivered
    await deliverer.close()
    code, shown = await status(failed)
    assert (code, shown[0][:2]) == (200, ("DELIVERED", 2))
    # Globex has no delivery: its answers' tag outlived every one of acme's.
    response = await hooked.get("/v1/metrics/summary?days=7",
                                headers={**auth(GLOBEX_TOKEN), "if-none-match": other})
    assert response.status_code == 304
    assert claimed.account_id == "acme" and leased != pending


async def test_failures_are_retried_with_backoff_until_delivered(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    await setup(hooked, db, fresh.url)
    fresh.script[:] = ["fail", "slow", "ok"]
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 1
    (first,) = await deliveries(hooked)
    assert (first["status"], first["attempts"], first["lastStatusCode"], first["lastError"]) == (
        "PENDING", 1, 500, "answered 500")
    waited = datetime.fromisoformat(first["nextAttemptAt"]) - NOW
    assert timedelta(seconds=5) <= waited <= timedelta(seconds=10)
    assert await deliverer.round() == 0  # not due yet
    clock.advance(10)
    assert await deliverer.round() == 1  # the slow answer: a timeout
    (second,) = await deliveries(hooked)
    assert (second["attempts"], second["lastStatusCode"], second["lastError"]) == (
        2, None, "timed out")
    clock.advance(20)
    assert await deliverer.round() == 1
    await deliverer.close()
    (third,) = await deliveries(hooked)
    assert (third["status"], third["attempts"], third["lastStatusCode"]) == ("DELIVERED", 3, 200)
    # The same delivery each time: one id, three signatures.
    ids = {headers["meterql-webhook-id"] for headers, _ in fresh.got}
    assert len(fresh.got) == 3 and ids == {third["id"]}
    assert len({headers["meterql-signature"] for headers, _ in fresh.got}) == 3


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    import random

    rng = random.Random(1)
    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)]:
        waits = [backoff(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), attempts
        assert len(set(waits)) > 40  # jittered


async def test_a_day_of_failures_fails_and_redeliver_sends_again(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    token, _ = await setup(hooked, db, fresh.url)
    fresh.script[:] = ["fail"] * 200
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    deliverer = Deliverer(db, hook_settings, clock)
    rounds = 0
    while (await deliveries(hooked))[0]["status"] == "PENDING":
        clock.advance(3600)
        rounds += await deliverer.round()
    (failed,) = await deliveries(hooked)
    assert failed["status"] == "FAILED" and failed["attempts"] == rounds
    assert clock.now - NOW >= timedelta(hours=23)
    assert 15 <= rounds <= 30
    fresh.script.clear()
    again = (await ok(hooked, token, REDELIVER, {"id": failed["id"]}))["redeliver"]
    assert (again["status"], again["attempts"]) == ("PENDING", rounds)
    assert await deliverer.round() == 1
    await deliverer.close()
    assert (await deliveries(hooked))[0]["status"] == "DELIVERED"


async def test_a_gateway_killed_mid_delivery_leaves_it_to_the_next(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    await setup(hooked, db, fresh.url)
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    # A gateway takes the delivery, then dies before saying how it went.
    async with db.write() as session, session.begin():
        (taken,) = await stored.claim(session, clock(), timedelta(seconds=60), 20)
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 0  # still its lease
    clock.advance(61)
    assert await deliverer.round() == 1
    await deliverer.close()
    (delivery,) = await deliveries(hooked)
    assert (delivery["id"], delivery["status"]) == (taken.delivery_id, "DELIVERED")
    assert len(fresh.got) == 1


async def test_a_redirect_is_not_followed(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    await setup(hooked, db, fresh.url)
    fresh.script[:] = ["moved"]
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 1
    await deliverer.close()
    (delivery,) = await deliveries(hooked)
    assert (delivery["status"], delivery["lastStatusCode"]) == ("PENDING", 302)
    assert fresh.redirected == 0


async def test_a_slow_receiver_never_holds_up_ingest(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    await setup(hooked, db, fresh.url)
    fresh.script[:] = ["hold"]
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    settings = hook_settings.model_copy(update={"webhook_timeout_s": 30.0})
    deliverer = Deliverer(db, settings, clock)
    delivering = asyncio.ensure_future(deliverer.round())
    try:
        assert await asyncio.to_thread(fresh.entered.wait, 20)
        # The receiver holds its answer: batches, reads and edits go on meanwhile.
        assert (await send(hooked, "meanwhile", 5, "2026-11-20T15:00:00Z"))["accepted"] == 5
        assert len((await ok(hooked, ACME_TOKEN, BUDGETS))["viewer"]["budgets"]) == 1
        assert not delivering.done()
    finally:
        fresh.release.set()
        assert await delivering == 1
        await deliverer.close()
    assert (await deliveries(hooked))[0]["status"] == "DELIVERED"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.0.9/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/", "ftp://example.com/", "http://user:pw@example.com/",
    "not a url", "http:///no-host",
])
async def test_webhooks_never_point_inward(
    client: httpx.AsyncClient, db: Database, url: str
) -> None:
    await seed(db)
    token = await manage_token(db)
    body = await gql(client, token, CREATE_WEBHOOK, {"url": url})
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["loc"] == ["url"]
    assert "may not be a webhook" in error["message"]
    assert (await ok(client, ACME_TOKEN, "{ viewer { webhooks { id } } }"))["viewer"][
        "webhooks"] == []


async def test_a_url_that_turns_inward_later_is_refused_at_delivery(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    # Allowed when made (as if its name had resolved outward then); delivered by a
    # gateway that allows no private address.
    await setup(hooked, db, fresh.url)
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    strict = hook_settings.model_copy(update={"webhook_allow_private": False})
    deliverer = Deliverer(db, strict, clock)
    assert await deliverer.round() == 1
    await deliverer.close()
    (delivery,) = await deliveries(hooked)
    assert delivery["status"] == "PENDING"
    assert "private address: refused" in delivery["lastError"]
    assert fresh.got == []


async def test_webhooks_need_the_manage_scope_and_stay_in_their_account(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    token, _ = await setup(hooked, db, fresh.url)
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z")
    webhook_id = (await ok(hooked, ACME_TOKEN, "{ viewer { webhooks { id } } }"))[
        "viewer"]["webhooks"][0]["id"]
    (delivery,) = await deliveries(hooked)
    calls = [(CREATE_WEBHOOK, {"url": fresh.url}), (REDELIVER, {"id": delivery["id"]}),
             ("mutation($id: ID!) { deleteWebhook(id: $id) }", {"id": webhook_id})]
    for reader in (ACME_TOKEN, ACME_INGEST_TOKEN):
        for query, variables in calls:
            body = await gql(hooked, reader, query, variables)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    globex = await manage_token(db, "globex")
    assert (await ok(hooked, GLOBEX_TOKEN, DELIVERIES))["viewer"]["webhookDeliveries"][
        "totalCount"] == 0
    assert (await ok(hooked, GLOBEX_TOKEN, "{ viewer { webhooks { id } } }"))["viewer"][
        "webhooks"] == []
    body = await gql(hooked, globex, REDELIVER, {"id": delivery["id"]})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    assert (await ok(hooked, globex, calls[2][0], calls[2][1]))["deleteWebhook"] is False
    # Deleted by its own account: what it had pending fails, said so.
    assert (await ok(hooked, token, calls[2][0], calls[2][1]))["deleteWebhook"] is True
    (gone,) = await deliveries(hooked)
    assert (gone["status"], gone["lastError"]) == ("FAILED", "the webhook was deleted")
    deliverer = Deliverer(db, hook_settings, clock)
    assert await deliverer.round() == 0
    await deliverer.close()


async def test_two_deliverers_at_once_send_each_delivery_once(
    hooked: httpx.AsyncClient, db: Database, hook_settings: Settings, clock: Clock,
    fresh: Receiver,
) -> None:
    token, _ = await setup(hooked, db, fresh.url)
    # Acme's tokens on the 20th: 4,500; half of each limit lies within the next 100.
    for n in range(6):
        await create(hooked, token, measure="TOKENS", limit=str(9001 + 30 * n), period="DAY",
                     thresholds=[50])
    await send(hooked, "cross", 1, "2026-11-20T15:00:00Z", tokens=100)
    assert len(await deliveries(hooked)) == 7
    first, second = Deliverer(db, hook_settings, clock), Deliverer(db, hook_settings, clock)
    done = await asyncio.gather(first.round(), second.round())
    await first.close()
    await second.close()
    assert sum(done) == 7
    assert sorted(h["meterql-webhook-id"] for h, _ in fresh.got) == sorted(
        d["id"] for d in await deliveries(hooked))


async def test_a_gateway_process_delivers_on_its_own(
    settings: Settings, db: Database, fresh: Receiver
) -> None:
    await seed(db)
    token = await manage_token(db)
    live = settings.model_copy(update={"webhook_allow_private": True, "webhook_poll_s": 0.1})
    with serving(create_app(live, clock=lambda: NOW)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await ok(client, token, CREATE_WEBHOOK, {"url": fresh.url})
            await create(client, token, measure="REQUESTS", limit="4", period="DAY",
                         thresholds=[75])
            await send(client, "cross", 1, "2026-11-20T15:00:00Z")
            deadline = time.monotonic() + 20
            while not fresh.got and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    assert len(fresh.got) == 1
