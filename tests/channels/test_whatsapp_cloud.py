"""WhatsApp Cloud API end to end without Ray: Meta's signed webhook POSTs reach the gateway's
real HTTP server (``/hooks/whatsapp/<account>``), pass the real ChannelService (access check,
journal, answer) and the reply goes out through the fake Graph API. Good, bad and replayed
signatures; the GET handshake; a journal that is down (503, then Meta's redelivery)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moltbot.channels.accounts import make_adapter
from moltbot.channels.hooks import HookReply, HookRequest
from moltbot.channels.retry import RetryPolicy
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.channels.whatsapp_cloud import WhatsAppCloudAdapter, signature_ok
from moltbot.config.loader import load_config_text
from moltbot.errors import ConfigError, PlatformRejected, PlatformUnavailable, RateLimited
from moltbot.gateway.server import GatewayServer, GatewaySettings
from moltbot.messages import OutboundMessage
from moltbot.security.access import AccessPolicy, Pairing
from moltbot.security.audit import AuditLog, tail
from tests.channels.service_rig import EchoAgent, MemoryStore
from tests.fakes.whatsapp_api import (
    APP_SECRET,
    NUMBER_ID,
    SENDER,
    TOKEN,
    VERIFY_TOKEN,
    FakeGraph,
    payload,
    post_webhook,
    sign,
)
from tests.gateway.echo_backend import EchoBackend

pytestmark = pytest.mark.timeout(30)
QUICK = RetryPolicy(base=0.01, cap=0.02, deadline=0.5)
OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)
GW_TOKEN = "gw-token-0123456789-abcdefghijklmnopqrstuv"


class Cloud:
    """A gateway whose /hooks/ route reaches one WhatsApp Cloud account's service."""

    def __init__(self, graph: FakeGraph, policy: AccessPolicy, folder: Path) -> None:
        self.graph = graph
        self.log = AuditLog(folder / "audit" / "audit.jsonl")  # the real log: kinds checked
        self.store = MemoryStore()
        self.agent = EchoAgent()
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self.adapter = make(graph)
        ports = Ports(
            accept_many=self.store.accept_many,
            mark_done_many=self.store.mark_done_many,
            pending=self.store.pending,
            answer=self.agent.answer,
            save_pairing=self._save,
        )
        self.service = ChannelService(self.adapter, Pairing(policy), ports, OPTS)
        self.gateway = GatewayServer(
            GatewaySettings(host="127.0.0.1", port=0, token=GW_TOKEN),
            EchoBackend(),
            audit=self._record,
            hooks=self._route,
        )

    async def _save(self, data: bytes) -> None:
        self.store.kv["pairing"] = data

    async def _record(self, kind: str, fields: dict[str, Any]) -> None:
        self.log.append(kind, fields)
        self.audit.append((kind, fields))

    async def _route(self, req: HookRequest) -> HookReply:
        if req.channel != "whatsapp" or req.account != "biz":
            return HookReply(status=404, body="no such account\n")
        return await self.adapter.webhook(req)

    @property
    def url(self) -> str:
        return f"{self.gateway.url}hooks/whatsapp/biz"


def make(graph: FakeGraph, **kw: Any) -> WhatsAppCloudAdapter:
    args: dict[str, Any] = {
        "account": "biz",
        "phone_number_id": NUMBER_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "api_base": graph.api_base,
        "retry": QUICK,
    }
    args.update(kw)
    return WhatsAppCloudAdapter(**args)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as g:
        yield g


@pytest.fixture
async def cloud(graph: FakeGraph, tmp_path: Path) -> AsyncIterator[Cloud]:
    rig = Cloud(graph, AccessPolicy(dm_policy="open"), tmp_path)
    await rig.gateway.start()
    try:
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(rig.gateway.serve_forever())
            running = tg.create_task(rig.service.run())
            yield rig
            running.cancel()
            await rig.gateway.stop()
            serving.cancel()
    finally:
        await rig.adapter.close()


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def raw(text: str, **kw: Any) -> bytes:
    return json.dumps(payload(text, **kw)).encode()


async def test_signed_post_is_answered_through_the_graph_api(cloud: Cloud) -> None:
    await until(lambda: cloud.service.receiving)
    resp = await post_webhook(cloud.url, raw("hello there"), APP_SECRET)
    assert resp.status_code == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert len(cloud.store.journal) == 1  # journaled before the 200
    await until(lambda: len(cloud.graph.sent) == 1)
    sent = cloud.graph.sent[0]
    assert sent["to"] == SENDER and sent["text"]["body"] == "[offline] you said: hello there"
    msg = next(iter(cloud.store.journal.values()))
    assert msg.sender_id == f"+{SENDER}" and msg.sender_name == "Kerry"
    await until(lambda: cloud.store.pending_ids() == [])


async def test_bad_signature_gets_401_and_an_audit_record(cloud: Cloud) -> None:
    await until(lambda: cloud.service.receiving)
    body = raw("let me in")
    forged = await post_webhook(cloud.url, body, "not-the-app-secret")
    missing = await post_webhook(cloud.url, body, None)
    tampered = await post_webhook(
        cloud.url, raw("something else"), None, signature=sign(body, APP_SECRET)
    )
    assert [r.status_code for r in (forged, missing, tampered)] == [401, 401, 401]
    assert cloud.store.journal == {} and cloud.graph.sent == []
    await until(lambda: cloud.audit != [])
    kind, fields = cloud.audit[0]
    assert kind == "webhook_refused"
    assert fields["reason"] == "bad_signature" and fields["channel"] == "whatsapp"
    assert fields["address"] == "127.0.0.1"
    assert APP_SECRET not in json.dumps(cloud.audit)
    assert [r["kind"] for r in tail(cloud.log.path, 5)] == ["webhook_refused"]  # throttled


async def test_replayed_post_is_not_answered_twice(cloud: Cloud) -> None:
    await until(lambda: cloud.service.receiving)
    body = raw("only once", wamid="wamid.REPLAY1")
    first = await post_webhook(cloud.url, body, APP_SECRET)
    await until(lambda: len(cloud.graph.sent) == 1)
    again = [await post_webhook(cloud.url, body, APP_SECRET) for _ in range(3)]
    assert first.status_code == 200 and all(r.status_code == 200 for r in again)
    await asyncio.sleep(0.3)
    assert len(cloud.graph.sent) == 1
    assert cloud.agent.turns["whatsapp:biz:wamid.REPLAY1"] == 1


async def test_journal_down_answers_503_and_redelivery_is_answered(cloud: Cloud) -> None:
    await until(lambda: cloud.service.receiving)
    cloud.store.down = 20  # the service retries a few times, then the POST times out or fails
    body = raw("keep me", wamid="wamid.KEEP")
    service_down = asyncio.create_task(post_webhook(cloud.url, body, APP_SECRET))
    await until(lambda: cloud.store.down < 20)
    cloud.store.down = 0
    first = await service_down
    # the service retried the journal itself: either it made it (200) or Meta is told to retry
    if first.status_code != 200:
        assert first.status_code == 503
        assert (await post_webhook(cloud.url, body, APP_SECRET)).status_code == 200
    await until(lambda: len(cloud.graph.sent) == 1)
    assert cloud.graph.texts() == ["[offline] you said: keep me"]


async def test_verify_token_handshake(cloud: Cloud) -> None:
    async with httpx.AsyncClient() as client:
        good = await client.get(
            cloud.url,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        bad = await client.get(
            cloud.url,
            params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "x"},
        )
        other = await client.get(f"{cloud.gateway.url}hooks/whatsapp/nobody")
    assert good.status_code == 200 and good.text == "1158201444"
    assert bad.status_code == 403 and "x" not in bad.text
    assert other.status_code == 404
    await until(lambda: any(f["reason"] == "bad_verify_token" for _, f in cloud.audit))


async def test_webhook_for_another_number_and_media_are_not_answered(cloud: Cloud) -> None:
    await until(lambda: cloud.service.receiving)
    other = await post_webhook(cloud.url, raw("hi", number_id="999999999"), APP_SECRET)
    picture = await post_webhook(cloud.url, raw("", kind="image"), APP_SECRET)
    assert other.status_code == 200 and picture.status_code == 200
    assert cloud.store.journal == {}


async def test_pairing_policy_applies(graph: FakeGraph, tmp_path: Path) -> None:
    rig = Cloud(graph, AccessPolicy(dm_policy="allowlist", allow_from=["+15550000000"]), tmp_path)
    await rig.gateway.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(rig.gateway.serve_forever())
            running = tg.create_task(rig.service.run())
            await until(lambda: rig.service.receiving)
            resp = await post_webhook(rig.url, raw("stranger"), APP_SECRET)
            assert resp.status_code == 200  # taken (Meta must not retry), not answered
            await asyncio.sleep(0.2)
            assert rig.store.journal == {} and graph.sent == []
            running.cancel()
            await rig.gateway.stop()
    finally:
        await rig.adapter.close()


async def test_websocket_and_pages_still_work_beside_hooks(cloud: Cloud) -> None:
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{cloud.gateway.url}healthz")
        huge = await client.post(cloud.url, content=b"x" * (2 << 20))
    assert health.status_code == 200 and health.text == "ok"
    assert huge.status_code == 413


async def test_send_errors_are_mapped(graph: FakeGraph) -> None:
    adapter = make(graph, retry=RetryPolicy(base=0.01, cap=0.02, deadline=1.5))
    out = OutboundMessage(channel="whatsapp", account="biz", chat_id=SENDER, text="hi")
    try:
        graph.fail("send", 2, 503)
        assert len(await adapter.send(out)) == 1  # retried through the 503s
        graph.fail("send", 1, 429)
        assert len(await adapter.send(out)) == 1
        graph.fail("send", 1000, 500)
        with pytest.raises(PlatformUnavailable):
            await adapter.send(out)
    finally:
        await adapter.close()
    wrong = make(graph, access_token="revoked")
    try:
        with pytest.raises(PlatformRejected) as info:
            await wrong.send(out)
        assert "access_token" in info.value.hint and "revoked" not in str(info.value)
        with pytest.raises(PlatformRejected):
            await wrong.connect()
    finally:
        await wrong.close()


async def test_long_reply_is_chunked_and_connect_names_the_number(graph: FakeGraph) -> None:
    adapter = make(graph)
    try:
        me = await adapter.connect()
        assert me["id"] == NUMBER_ID and me["name"] == "Moltbot Test"
        ids = await adapter.send(
            OutboundMessage(channel="whatsapp", account="biz", chat_id=SENDER, text="word " * 2000)
        )
        assert len(ids) == 3 and all(len(t) <= 4096 for t in graph.texts())
    finally:
        await adapter.close()


def test_rate_limit_code_is_retryable() -> None:
    from moltbot.channels.whatsapp_graph import graph_error

    err = graph_error(400, {"error": {"code": 130429, "message": "throughput"}})
    assert isinstance(err, RateLimited)


def test_signature_check() -> None:
    body = b'{"a":1}'
    assert signature_ok("s", body, sign(body, "s"))
    assert not signature_ok("s", body, sign(body, "t"))
    assert not signature_ok("s", body, sign(body, "s").removeprefix("sha256="))
    assert not signature_ok("s", body, None)


def test_config_requires_cloud_secrets_and_builds_the_adapter() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(
            '{"channels": {"whatsapp": [{"account": "biz", "mode": "cloud",'
            ' "phone_number_id": "109876543210"}]}}'
        )
    assert info.value.path == "$.channels.whatsapp[0].access_token"
    cfg = load_config_text(
        json.dumps(
            {
                "channels": {
                    "whatsapp": [
                        {
                            "account": "biz",
                            "mode": "cloud",
                            "phone_number_id": NUMBER_ID,
                            "access_token": "secret:wa_token",
                            "app_secret": "secret:wa_app",
                            "verify_token": "secret:wa_verify",
                        }
                    ]
                }
            }
        )
    )
    acct = cfg.channels.whatsapp[0]
    seen: list[str] = []

    def secret(ref: str, at: str) -> str:
        seen.append(at)
        return f"value-of-{ref}"

    adapter = make_adapter("whatsapp", 0, acct, secret)
    assert isinstance(adapter, WhatsAppCloudAdapter)
    assert seen == [
        "$.channels.whatsapp[0].access_token",
        "$.channels.whatsapp[0].app_secret",
        "$.channels.whatsapp[0].verify_token",
    ]
    assert "value-of" not in repr(adapter)


async def raw_request(gateway: GatewayServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


async def test_malformed_webhook_requests_are_refused(cloud: Cloud) -> None:
    hook = b"/hooks/whatsapp/biz"
    huge_head = b"POST " + hook + b" HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    chunked = b"POST " + hook + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    no_length = b"POST " + hook + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    escape = b"GET /hooks/whatsapp/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"
    delete = b"DELETE " + hook + b" HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    lying = b"POST " + hook + b" HTTP/1.1\r\nContent-Length: 5\r\n\r\n" + b"{}" + b"x" * 50000
    answers = [
        await raw_request(cloud.gateway, r)
        for r in (huge_head, chunked, no_length, escape, delete, lying)
    ]
    status = [a.split(b" ", 2)[1] for a in answers]
    assert status == [b"431", b"411", b"411", b"404", b"405", b"401"]
    assert all(b"Content-Security-Policy" in a for a in answers)
    assert cloud.store.journal == {}


async def test_a_flood_of_webhook_posts_is_rate_limited(cloud: Cloud) -> None:
    body = raw("flood")
    async with httpx.AsyncClient() as client:
        codes = [
            (
                await client.post(cloud.url, content=body, headers={"X-Hub-Signature-256": "x"})
            ).status_code
            for _ in range(120)
        ]
    assert set(codes) == {401, 429} and codes[0] == 401 and codes.count(429) > 20
    assert cloud.store.journal == {}
    await until(lambda: cloud.audit != [])
    await asyncio.sleep(0.1)
    assert len(cloud.audit) == 1  # one record per address and minute, not one per post
