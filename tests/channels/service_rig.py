"""The channel service without Ray, for tests: the real TelegramAdapter against the fake Bot
API, in-memory stand-ins for the store (journal + kv) and the agent (offline-style echo), and
the rig that wires them into a ``ChannelService``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from moltbot.channels.accounts import pairing_key
from moltbot.channels.retry import RetryPolicy
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.channels.telegram import TelegramAdapter
from moltbot.clock import FakeClock
from moltbot.errors import Unavailable
from moltbot.messages import InboundMessage
from moltbot.security.access import AccessPolicy, Pairing
from moltbot.security.audit import AuditLog
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

QUICK_SEND = RetryPolicy(base=0.01, cap=0.02, deadline=0.05)  # gives up fast: service retries
OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)


class MemoryStore:
    """The store actor's contract in memory: journal dedup by id, pending = accepted - done."""

    def __init__(self) -> None:
        self.journal: dict[str, InboundMessage] = {}
        self.done: set[str] = set()
        self.kv: dict[str, bytes] = {}
        self.down = 0  # the next `down` calls of accept raise Unavailable
        self.hold: asyncio.Event | None = None  # set: accept waits for it (a slow fsync)

    async def accept(self, msg: InboundMessage) -> bool:
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            self.down -= 1
            raise Unavailable("store is not available right now")
        if msg.id in self.journal:
            return False
        self.journal[msg.id] = msg
        return True

    async def mark_done(self, msg_id: str) -> bool:
        if msg_id in self.done:
            return False
        self.done.add(msg_id)
        return True

    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        return [await self.accept(m) for m in msgs]

    async def mark_done_many(self, ids: list[str]) -> list[bool]:
        return [await self.mark_done(i) for i in ids]

    async def pending(self) -> list[InboundMessage]:
        return [m for i, m in self.journal.items() if i not in self.done]

    def pending_ids(self) -> list[str]:
        return [i for i in self.journal if i not in self.done]


class EchoAgent:
    """Answers like the offline provider; idempotent per message id; can fail on purpose."""

    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()
        self.answers: dict[str, str] = {}
        self.fail: list[BaseException] = []
        self.delay = 0.0  # seconds a turn takes

    async def answer(self, msg: InboundMessage) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail.pop(0)
        if msg.id not in self.answers:
            self.turns[msg.id] += 1
            self.answers[msg.id] = f"[offline] you said: {msg.text}"
        return self.answers[msg.id]


class Rig:
    def __init__(
        self,
        fake: FakeTelegram,
        policy: AccessPolicy,
        clock: FakeClock | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.fake = fake
        self.store = MemoryStore()
        self.agent = EchoAgent()
        self.saved: list[bytes] = []
        kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.adapter = TelegramAdapter(
            account="main",
            token=DEFAULT_TOKEN,
            api_base=fake.api_base,
            poll_timeout=1,
            retry=QUICK_SEND,
            **kw,
        )
        ports = Ports(
            accept_many=self.store.accept_many,
            mark_done_many=self.store.mark_done_many,
            pending=self.store.pending,
            answer=self.agent.answer,
            save_pairing=self.save,
        )
        sink = audit.append if audit is not None else None
        self.service = ChannelService(
            self.adapter, Pairing(policy, **kw), ports, OPTS, audit=sink, **kw
        )

    async def save(self, data: bytes) -> None:
        self.saved.append(data)
        self.store.kv[pairing_key("telegram", "main")] = data

    def replies(self) -> Counter[str]:
        return Counter(s["plain"] for s in self.fake.sent)


@asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[None]:
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(rig.service.run())
            yield
            task.cancel()
    finally:
        await rig.adapter.close()


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def dm(text: str, sender: str = "42", mid: int = 1) -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:{sender}:{mid}",
        channel="telegram",
        account="main",
        chat_id=sender,
        sender_id=sender,
        text=text,
    )


OPEN = AccessPolicy(dm_policy="open")
