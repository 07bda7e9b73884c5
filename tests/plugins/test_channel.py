"""Plugin channels without Ray: ``api.deliver`` into a ``PluginChannelAdapter`` (bounded queue,
returns once journaled, input checks), its ``send`` error mapping, and the real channel pipeline
(``ChannelService`` with the in-memory store and echo agent of tests/channels/service_rig.py)
answering a delivered message through the plugin's ``send``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from moltbot.channels.accounts import policy_for
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.config.schema import ChannelPolicy
from moltbot.errors import (
    CapabilityDenied,
    PlatformRejected,
    PlatformUnavailable,
    PluginError,
    Unavailable,
)
from moltbot.messages import InboundMessage, OutboundMessage
from moltbot.plugins import api as api_module
from moltbot.plugins.api import PluginAPI
from moltbot.plugins.channel import PluginChannelAdapter
from moltbot.security.access import Pairing
from tests.channels.service_rig import EchoAgent, MemoryStore

pytestmark = pytest.mark.timeout(30)
OUT = OutboundMessage(channel="matrix", account="demo", chat_id="room", text="hi")
OPTS = ServiceOptions(workers=2, queue_size=2, retry_base_s=0.01, retry_cap_s=0.02)


class Outbox:
    """The plugin's ``send``: records what it was given; raises the queued errors first."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.errors: list[BaseException] = []

    async def __call__(self, out: OutboundMessage) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(out)


def plugin(*caps: str, send: Any = None) -> tuple[PluginAPI, PluginChannelAdapter]:
    api = PluginAPI("demo", capabilities=frozenset(caps or {"channel"}))
    api.register_channel("matrix", send or Outbox(), "rooms")
    adapter = PluginChannelAdapter(api.registered.channels["matrix"], "demo", queue_size=2)
    api.connect_channel("matrix", adapter.deliver)
    return api, adapter


async def deliver(api: PluginAPI, n: int, **kw: Any) -> None:
    args: dict[str, Any] = {"sender_id": "u1", "chat_id": "room", "text": f"m{n}"}
    await api.deliver("matrix", **{**args, "message_id": str(n), **kw})


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def test_deliver_returns_only_once_the_sink_took_the_message() -> None:
    api, adapter = plugin()
    journal: list[InboundMessage] = []
    release = asyncio.Event()

    async def slow_journal(msg: InboundMessage) -> None:
        await release.wait()  # the fsync takes its time
        journal.append(msg)

    async with running(adapter.run(slow_journal)):
        sent = asyncio.ensure_future(deliver(api, 7, is_group=True, sender_name="Ada"))
        await asyncio.sleep(0.05)
        assert not sent.done() and journal == []
        release.set()
        await asyncio.wait_for(sent, 2)
    [msg] = journal
    assert (msg.id, msg.channel, msg.account) == ("matrix:demo:room:7", "matrix", "demo")
    assert (msg.sender_id, msg.text, msg.sender_name) == ("u1", "m7", "Ada")
    assert msg.session_key == "matrix:demo:group:room" and msg.received_at > 0


async def test_the_queue_is_bounded_and_a_failed_journal_write_fails_its_deliverer() -> None:
    api, adapter = plugin()  # queue_size=2
    waiting = [asyncio.ensure_future(deliver(api, n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert adapter.queued() == 2 and not any(t.done() for t in waiting)  # the 3rd waits to put

    async def store_down(msg: InboundMessage) -> None:
        raise Unavailable("store is not available right now")

    with pytest.raises(Unavailable, match="store is not available"):
        await adapter.run(store_down)  # raised on: the service stops, the actor restarts
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r) for r in results] == [Unavailable] * 3
    assert str(results[0]) == "store is not available right now"  # the sink's own error
    stopped = results[1]
    assert isinstance(stopped, Unavailable) and "not journaled" in stopped.hint
    assert adapter.queued() == 0


async def test_deliver_checks_capability_channel_and_inputs() -> None:
    api, _adapter = plugin()
    bad: list[dict[str, Any]] = [
        {"sender_id": ""},
        {"chat_id": "  "},
        {"message_id": 5},
        {"sender_id": "a\nb"},
        {"chat_id": "x" * 300},
        {"text": None},
        {"is_group": "yes"},
        {"thread_id": ""},
    ]
    for override in bad:
        with pytest.raises(PluginError):
            await deliver(api, 1, **override)
    with pytest.raises(PluginError, match="no channel 'irc'"):
        await api.deliver("irc", sender_id="u", chat_id="c", text="t", message_id="1")

    lonely = PluginAPI("demo", capabilities=frozenset({"channel"}))
    lonely.register_channel("matrix", Outbox())
    with pytest.raises(Unavailable, match="not running yet"):
        await lonely.deliver("matrix", sender_id="u", chat_id="c", text="t", message_id="1")
    with pytest.raises(PluginError, match="no channel 'irc'"):
        lonely.connect_channel("irc", _adapter.deliver)

    denied = PluginAPI("demo", capabilities=frozenset({"storage"}))
    with pytest.raises(CapabilityDenied):
        await denied.deliver("matrix", sender_id="u", chat_id="c", text="t", message_id="1")


async def test_send_maps_plugin_failures_for_the_services_retry() -> None:
    outbox = Outbox()
    _api, adapter = plugin(send=outbox)
    assert await adapter.connect() == {"name": "matrix", "plugin": "demo"}
    assert await adapter.send(OUT) == [] and outbox.sent == [OUT]

    outbox.errors = [RuntimeError("token=hunter2"), api_module.PlatformRejected("blocked")]
    with pytest.raises(PlatformUnavailable) as err:
        await adapter.send(OUT)
    assert "hunter2" not in str(err.value) and err.value.__cause__ is None
    with pytest.raises(PlatformRejected, match="blocked"):  # refused for good: not retried
        await adapter.send(OUT)

    async def hangs(out: OutboundMessage) -> None:
        await asyncio.Event().wait()

    spec = api_module.ChannelSpec("slow", "", hangs)
    with pytest.raises(PlatformUnavailable):
        await PluginChannelAdapter(spec, "demo", send_timeout_s=0.05).send(OUT)
    plain: list[OutboundMessage] = []
    sync_spec = api_module.ChannelSpec("sync", "", plain.append)  # type: ignore[arg-type]
    sync = PluginChannelAdapter(sync_spec, "demo")
    await sync.send(OUT)
    assert plain == [OUT]


async def test_the_channel_pipeline_answers_a_delivered_message_through_send() -> None:
    outbox = Outbox()
    outbox.errors = [RuntimeError("platform hiccup")]  # the first send fails: retried
    api, adapter = plugin(send=outbox)
    store, agent = MemoryStore(), EchoAgent()
    saved: list[bytes] = []

    async def save(data: bytes) -> None:
        saved.append(data)

    ports = Ports(
        accept_many=store.accept_many,
        mark_done_many=store.mark_done_many,
        pending=store.pending,
        answer=agent.answer,
        save_pairing=save,
    )
    policy = policy_for(ChannelPolicy(dm_policy="pairing", allow_from=["u1"]))
    service = ChannelService(adapter, Pairing(policy), ports, OPTS)
    async with running(service.run()):
        await deliver(api, 1, text="hello")
        assert "matrix:demo:room:1" in store.journal  # journaled when deliver returned
        await deliver(api, 1, text="hello")  # re-delivered by the platform: a duplicate
        await deliver(api, 2, sender_id="stranger", chat_id="dm-s", text="hi?")
        for _ in range(200):
            if store.done and len(outbox.sent) == 2:
                break
            await asyncio.sleep(0.01)
    answer, code = sorted(outbox.sent, key=lambda o: o.chat_id, reverse=True)
    assert (answer.text, answer.in_reply_to) == ("[offline] you said: hello", "matrix:demo:room:1")
    assert (answer.channel, answer.account) == ("matrix", "demo")
    assert store.done == {"matrix:demo:room:1"} and agent.turns == {"matrix:demo:room:1": 1}
    assert code.chat_id == "dm-s" and "matrix:demo:dm-s:2" not in store.journal  # pairing
    assert saved and [p.sender_id for p in service.pairing.list_pending()] == ["stranger"]
    assert service.counts["duplicates"] == 1 and service.counts["send_retries"] == 1
