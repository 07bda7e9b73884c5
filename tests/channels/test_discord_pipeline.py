"""The channel pipeline without Ray on Discord: the real DiscordAdapter (discord.py against the
fake Discord) driven by the real ChannelService, with an in-memory store holding both the
journal and the adapter's cursors (as the store actor's kv will) and an echoing agent."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from moltbot.channels.discord import DiscordAdapter
from moltbot.channels.retry import RetryPolicy
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.messages import InboundMessage
from moltbot.security.access import AccessPolicy, Pairing
from tests.channels.discord_kit import ALICE, DM, connected
from tests.fakes.discord_api import BOT_TOKEN, GUILD_CHANNEL_ID, GUILD_ID, FakeDiscord

pytestmark = pytest.mark.timeout(30)

POLICY = AccessPolicy(dm_policy="open", require_mention=True, group_allow=[GUILD_CHANNEL_ID])
QUICK_SEND = RetryPolicy(base=0.01, cap=0.02, deadline=0.05)
OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)


class MemoryStore:
    """The store actor's contract in memory: a journal de-duplicated by id, done marks, kv."""

    def __init__(self) -> None:
        self.journal: dict[str, InboundMessage] = {}
        self.done: set[str] = set()
        self.kv: dict[str, bytes] = {}

    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        fresh = [m.id not in self.journal for m in msgs]
        self.journal.update({m.id: m for m in msgs if m.id not in self.journal})
        return fresh

    async def mark_done_many(self, ids: list[str]) -> list[bool]:
        fresh = [i not in self.done for i in ids]
        self.done.update(ids)
        return fresh

    async def pending(self) -> list[InboundMessage]:
        return [m for i, m in self.journal.items() if i not in self.done]


class EchoAgent:
    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()

    async def answer(self, msg: InboundMessage) -> str:
        self.turns[msg.id] += 1
        return f"[offline] you said: {msg.text}"


class KvCursors:
    """The CursorStore port over the store's kv (what the actor wires to kv_get / kv_put)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def get(self, key: str) -> bytes | None:
        return self.store.kv.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.store.kv[key] = value


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=200) as f:
        yield f


@asynccontextmanager
async def serving(
    fake: FakeDiscord, store: MemoryStore, agent: EchoAgent
) -> AsyncIterator[ChannelService]:
    adapter = DiscordAdapter(
        account="main",
        token=BOT_TOKEN,
        api_base=fake.api_base,
        cursors=KvCursors(store),
        identify_delay=0.0,
        retry=QUICK_SEND,
    )
    ports = Ports(
        accept_many=store.accept_many,
        mark_done_many=store.mark_done_many,
        pending=store.pending,
        answer=agent.answer,
        save_pairing=_ignore,
    )
    service = ChannelService(adapter, Pairing(POLICY), ports, OPTS)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run())
            yield service
            task.cancel()
    finally:
        await adapter.close()


async def _ignore(data: bytes) -> None:
    return None


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_answers_each_message_once_across_a_restart(fake: FakeDiscord) -> None:
    store, agent = MemoryStore(), EchoAgent()

    def replies() -> Counter[str]:
        return Counter(s["content"] for s in fake.sent)

    async with serving(fake, store, agent):
        await connected(fake)
        asked = fake.inject_message(channel_id=DM, author_id=ALICE, content="hello")
        fake.inject_message(
            channel_id=GUILD_CHANNEL_ID,
            author_id=ALICE,
            guild_id=GUILD_ID,
            content="not for the bot",
        )
        fake.inject_message(
            channel_id=GUILD_CHANNEL_ID,
            author_id=ALICE,
            guild_id=GUILD_ID,
            content="ping",
            mention_bot=True,
        )
        await fake.wait_sent(2)
        await until(lambda: len(store.done) == 2)
    assert replies() == {"[offline] you said: hello": 1, "[offline] you said: ping": 1}
    dm_reply = next(s for s in fake.sent if s["channel_id"] == DM)
    assert dm_reply["message_reference"]["message_id"] == asked["id"]

    # down: these are only in the channels' history now
    fake.inject_message(channel_id=DM, author_id=ALICE, content="while away")
    fake.inject_message(
        channel_id=GUILD_CHANNEL_ID,
        author_id=ALICE,
        guild_id=GUILD_ID,
        content="and here",
        mention_bot=True,
    )
    async with serving(fake, store, agent):
        await fake.wait_sent(4)
        await asyncio.sleep(0.3)  # anything answered twice would show up now
    assert replies() == {
        "[offline] you said: hello": 1,
        "[offline] you said: ping": 1,
        "[offline] you said: while away": 1,
        "[offline] you said: and here": 1,
    }
    assert all(n == 1 for n in agent.turns.values()) and len(agent.turns) == 4
    # the unmentioned group message was refused by the access check, never journaled
    assert sorted(m.text for m in store.journal.values()) == [
        "and here",
        "hello",
        "ping",
        "while away",
    ]
    assert await store.pending() == []
