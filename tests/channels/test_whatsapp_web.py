"""WhatsApp web mode up to its boundary: the adapter, the login flow and the encrypted session
against the fake at the ``WaClient`` port (tests/fakes/whatsapp_web.py), with the real
ChannelService; neonize's event translation on neonize's own protobuf types. Where the tests
stop: nothing here talks to WhatsApp's servers or runs whatsmeow."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltbot.channels.retry import RetryPolicy
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.channels.whatsapp_login import link_device, unlink_device
from moltbot.channels.whatsapp_neonize import jid_text, to_event
from moltbot.channels.whatsapp_port import WaMessage
from moltbot.channels.whatsapp_session import SessionFile, decode_key, new_key, runtime_base
from moltbot.channels.whatsapp_web import WhatsAppWebAdapter, sender_id
from moltbot.errors import (
    ConfigError,
    PlatformRejected,
    PlatformUnavailable,
    Unavailable,
    VaultError,
)
from moltbot.security.access import AccessPolicy, Pairing
from tests.channels.service_rig import EchoAgent, MemoryStore
from tests.fakes.whatsapp_web import ALICE, GROUP, ME, FakeWhatsApp

pytestmark = pytest.mark.timeout(30)
QUICK = RetryPolicy(base=0.01, cap=0.02, deadline=0.5)
OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)
ECHO = "[offline] you said: "


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
def session(tmp_path: Path) -> SessionFile:
    return SessionFile("home", decode_key(new_key()), home=tmp_path)


async def linked(wa: FakeWhatsApp, session: SessionFile) -> str:
    shown: list[str] = []
    task = asyncio.create_task(link_device(wa.client(), session, shown.append, timeout_s=5))
    await until(lambda: len(shown) >= 2)  # the QR rotates until scanned
    wa.scan()
    return await task


class Rig:
    def __init__(self, wa: FakeWhatsApp, session: SessionFile, policy: AccessPolicy) -> None:
        self.wa, self.store, self.agent = wa, MemoryStore(), EchoAgent()
        self.adapter = WhatsAppWebAdapter(
            account="home", client=wa.client(), session=session, retry=QUICK, save_every_s=0.05
        )
        ports = Ports(
            accept_many=self.store.accept_many,
            mark_done_many=self.store.mark_done_many,
            pending=self.store.pending,
            answer=self.agent.answer,
            save_pairing=self._save,
        )
        self.service = ChannelService(self.adapter, Pairing(policy), ports, OPTS)

    async def _save(self, data: bytes) -> None:
        self.store.kv["pairing"] = data

    def replies(self) -> list[str]:
        return [text for _chat, text in self.wa.sent]


@pytest.fixture
async def rig(session: SessionFile) -> AsyncIterator[Rig]:
    wa = FakeWhatsApp()
    await linked(wa, session)
    r = Rig(wa, session, AccessPolicy(dm_policy="open", group_allow=[GROUP]))
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(r.service.run())
            yield r
            task.cancel()
    finally:
        await r.adapter.close()


async def test_login_shows_qr_codes_and_keeps_the_session_encrypted(
    session: SessionFile,
) -> None:
    wa = FakeWhatsApp()
    assert await linked(wa, session) == ME
    blob = session.path.read_bytes()
    assert b"SQLite format 3" not in blob and ME.encode() not in blob
    assert session.path.stat().st_mode & 0o077 == 0
    assert session.path.parent.stat().st_mode & 0o077 == 0
    assert not list(runtime_base().glob(f"wa-home-{__import__('os').getpid()}"))  # plain gone
    with pytest.raises(ConfigError) as info:  # a second login must not orphan the first device
        await link_device(wa.client(), session, print, timeout_s=1)
    assert "logout" in info.value.hint


async def test_login_without_a_scan_times_out_and_keeps_nothing(session: SessionFile) -> None:
    wa = FakeWhatsApp()
    with pytest.raises(PlatformUnavailable):
        await link_device(wa.client(), session, lambda _code: None, timeout_s=0.3)
    assert not session.exists() and wa.qrs_shown >= 2


async def test_session_does_not_open_with_another_key_or_when_altered(
    session: SessionFile, tmp_path: Path
) -> None:
    await linked(FakeWhatsApp(), session)
    other = SessionFile("home", secrets.token_bytes(32), home=tmp_path)
    with pytest.raises(VaultError):
        other.open()
    other.close(save=False)
    blob = bytearray(session.path.read_bytes())
    blob[-1] ^= 1
    session.path.write_bytes(bytes(blob))
    with pytest.raises(VaultError):
        session.open()
    session.close(save=False)


async def test_a_message_is_answered_and_marked_read_after_the_journal(rig: Rig) -> None:
    msg = rig.wa.deliver("hello")
    await until(lambda: rig.replies() == [ECHO + "hello"])
    assert rig.wa.sent[0][0] == ALICE
    assert rig.wa.reads == [msg.id]
    journaled = next(iter(rig.store.journal.values()))
    assert journaled.sender_id == "+15551234567" and journaled.id.endswith(msg.id)


async def test_no_read_receipt_when_the_journal_fails(session: SessionFile) -> None:
    wa = FakeWhatsApp()
    await linked(wa, session)
    r = Rig(wa, session, AccessPolicy(dm_policy="open"))
    r.store.down = 1000
    try:
        task = asyncio.create_task(r.service.run())
        wa.deliver("not safe yet")
        with pytest.raises(ExceptionGroup) as info:  # the run fails: the actor restarts it
            await asyncio.wait_for(task, 5)
        assert info.group_contains(Unavailable)
    finally:
        await r.adapter.close()
    assert wa.reads == [] and r.store.journal == {} and wa.sent == []


async def test_group_needs_a_mention(rig: Rig) -> None:
    rig.wa.deliver("chatter", chat=GROUP)
    rig.wa.deliver("hey there", chat=GROUP, mentions=["15550001111@s.whatsapp.net"])
    rig.wa.deliver("moltbot, what time is it", chat=GROUP)
    await until(lambda: len(rig.replies()) == 2)
    await asyncio.sleep(0.1)
    assert sorted(rig.replies()) == [ECHO + "hey there", ECHO + "moltbot, what time is it"]


async def test_a_disconnect_is_reported_and_what_came_meanwhile_is_answered(rig: Rig) -> None:
    rig.wa.deliver("first")
    await until(lambda: len(rig.replies()) == 1)
    rig.wa.drop()
    await until(lambda: rig.service.link.state == "retrying")
    rig.wa.deliver("while away")  # held by "WhatsApp" for the device
    await until(lambda: rig.service.link.state == "connected")
    await until(lambda: len(rig.replies()) == 2)
    assert rig.replies() == [ECHO + "first", ECHO + "while away"]


async def test_a_restart_catches_up_and_answers_each_once(session: SessionFile) -> None:
    wa = FakeWhatsApp()
    await linked(wa, session)
    policy = AccessPolicy(dm_policy="open")
    first = Rig(wa, session, policy)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(first.service.run())
        wa.deliver("before")
        await until(lambda: len(wa.sent) == 1)
        task.cancel()
    await first.adapter.close()  # the session is saved back, the plain copy removed
    dup = wa.deliver("while down")
    wa.waiting.append(dup)  # WhatsApp hands it over twice: the journal keeps it once
    second = Rig(wa, session, policy)
    second.store = first.store  # the same journal, as the store actor outlives the channel
    second.service.ports = Ports(
        accept_many=first.store.accept_many,
        mark_done_many=first.store.mark_done_many,
        pending=first.store.pending,
        answer=first.agent.answer,
        save_pairing=second._save,
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(second.service.run())
        await until(lambda: len(wa.sent) == 2)
        await asyncio.sleep(0.2)
        task.cancel()
    await second.adapter.close()
    assert [t for _c, t in wa.sent] == [ECHO + "before", ECHO + "while down"]


async def test_not_linked_and_unlinked_on_the_phone_are_rejections(
    session: SessionFile,
) -> None:
    wa = FakeWhatsApp()
    fresh = WhatsAppWebAdapter(account="home", client=wa.client(), session=session)
    with pytest.raises(PlatformRejected) as info:
        await fresh.connect()
    assert "channels login whatsapp:home" in info.value.hint
    await linked(wa, session)
    adapter = WhatsAppWebAdapter(account="home", client=wa.client(), session=session)
    try:
        await adapter.connect()
        wa.unlink()
        with pytest.raises(PlatformRejected):
            await adapter.run(lambda _m: asyncio.sleep(0))
    finally:
        await adapter.close()


async def test_send_retries_and_unlink(session: SessionFile) -> None:
    wa = FakeWhatsApp()
    await linked(wa, session)
    adapter = WhatsAppWebAdapter(account="home", client=wa.client(), session=session, retry=QUICK)
    from moltbot.messages import OutboundMessage

    try:
        await adapter.connect()
        wa.fail_sends = 2
        out = OutboundMessage(channel="whatsapp", account="home", chat_id=ALICE, text="x " * 3000)
        assert len(await adapter.send(out)) == 2  # chunked, through two failures
        await adapter.typing(ALICE)
        assert wa.typing == [ALICE]
    finally:
        await adapter.close()
    assert await unlink_device(wa.client(), session, timeout_s=2) is True
    assert wa.logged_out == 1 and not session.exists()


def test_neonize_events_become_port_events() -> None:
    from neonize.aioze.events import MessageEv
    from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaProto

    group = JID(User="120363000000000001", Server="g.us")
    alice = JID(User="15551234567", Device=3, Server="s.whatsapp.net")
    ev = MessageEv(
        Info=MessageInfo(
            MessageSource=MessageSource(Chat=group, Sender=alice, IsGroup=True, IsFromMe=False),
            ID="3EB0ABC",
            Pushname="Alice",
            Timestamp=1700000000,
        ),
        Message=WaProto(
            extendedTextMessage=ExtendedTextMessage(
                text="@moltbot hi",
                contextInfo=ContextInfo(mentionedJID=["15550001111@s.whatsapp.net"]),
            )
        ),
    )
    out = to_event("message", ev)
    assert out == WaMessage(
        id="3EB0ABC",
        chat=GROUP,
        sender="15551234567:3@s.whatsapp.net",
        text="@moltbot hi",
        sender_name="Alice",
        is_group=True,
        mentions=["15550001111@s.whatsapp.net"],
        timestamp=1700000000,
    )
    plain = MessageEv(Info=MessageInfo(ID="X"), Message=WaProto(conversation="yo"))
    assert isinstance(plain_ev := to_event("message", plain), WaMessage) and plain_ev.text == "yo"
    assert jid_text(JID(User="", Server="status@broadcast")) == "status@broadcast"
    assert sender_id("15551234567:3@s.whatsapp.net") == "+15551234567"
    assert sender_id("8123@lid") == "8123@lid"


async def test_the_port_over_the_bridge_socket(session: SessionFile, tmp_path: Path) -> None:
    from moltbot.channels.whatsapp_bridge import BridgeClient, serve_bridge
    from moltbot.messages import OutboundMessage

    wa = FakeWhatsApp()
    wa.scan_after = 1
    sock = tmp_path / "run" / "wa.sock"
    server = await serve_bridge(wa.client, sock)
    try:
        assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"
        assert await link_device(BridgeClient(sock), session, lambda _c: None, timeout_s=5) == ME
        adapter = WhatsAppWebAdapter(account="home", client=BridgeClient(sock), session=session)
        got: list[str] = []

        async def sink(msg: Any) -> None:
            got.append(msg.text)

        try:
            await adapter.connect()
            run = asyncio.create_task(adapter.run(sink))
            msg = wa.deliver("over the bridge")
            await until(lambda: got == ["over the bridge"] and wa.reads == [msg.id])
            out = OutboundMessage(channel="whatsapp", account="home", chat_id=ALICE, text="hi")
            assert len(await adapter.send(out)) == 1 and wa.sent == [(ALICE, "hi")]
            server.close()  # the bridge process goes away: the run fails, to be restarted
            with pytest.raises(PlatformUnavailable):
                await asyncio.wait_for(run, 5)
        finally:
            await adapter.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_the_session_is_saved_soon_after_each_message(session: SessionFile) -> None:
    wa = FakeWhatsApp()
    await linked(wa, session)
    adapter = WhatsAppWebAdapter(
        account="home", client=wa.client(), session=session, save_every_s=600, dirty_save_s=0.05
    )
    got: list[str] = []

    async def sink(msg: Any) -> None:
        got.append(msg.text)

    try:
        await adapter.connect()
        saved = session.path.stat().st_mtime_ns
        run = asyncio.create_task(adapter.run(sink))
        await asyncio.sleep(0.2)
        assert session.path.stat().st_mtime_ns == saved  # nothing new: no snapshot
        wa.deliver("moves the ratchet")
        await until(lambda: session.path.stat().st_mtime_ns != saved)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    finally:
        await adapter.close()
    assert got == ["moves the ratchet"]
