"""Sending a channel service's replies (mixed into ``ChannelService``): a reply is sent until
the platform takes it (never dropped), then its message is marked done in the journal. Done
marks are written behind the workers, those that gather meanwhile together; a reply sent just
before a stop or crash is still marked done within ``finish_grace_s``. System notices (an
approval request, a pairing code) are not journaled and are tried a few times."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from moltbot.batching import GroupCommit
from moltbot.channels.base import ChannelAdapter, SeenIds, drain
from moltbot.channels.link import Link
from moltbot.channels.ports import ServiceOptions
from moltbot.channels.retry import backoff
from moltbot.errors import (
    MoltbotError,
    PlatformRejected,
    PlatformUnavailable,
    ProviderOverloaded,
    RateLimited,
    Unavailable,
)
from moltbot.grace import within_grace
from moltbot.messages import InboundMessage, OutboundMessage
from moltbot.observability import span

T = TypeVar("T")
log = logging.getLogger("moltbot.channels.service")

Sleep = Callable[[float], Awaitable[None]]

TRANSIENT: tuple[type[BaseException], ...] = (
    Unavailable,
    RateLimited,
    ProviderOverloaded,
    PlatformUnavailable,
)
MARKS_BATCH = 256  # done marks written together at most


class Delivery:
    """Mixed into the channel service, which sets these attributes."""

    adapter: ChannelAdapter
    link: Link
    opt: ServiceOptions
    counts: Counter[str]
    _done: SeenIds
    _marks: asyncio.Queue[str]
    _dones: GroupCommit[str, object]
    _marking: bool
    _sleep: Sleep
    _rng: random.Random | None

    @property
    def _chan(self) -> str:
        return self.adapter.channel

    @property
    def _acct(self) -> str:
        return self.adapter.account

    def _outbound(self, msg: InboundMessage, text: str) -> OutboundMessage:
        return OutboundMessage(
            channel=msg.channel,
            account=msg.account,
            chat_id=msg.chat_id,
            text=text,
            in_reply_to=msg.id,
            thread_id=msg.thread_id,
            trace=msg.trace,
        )

    async def _deliver(self, msg: InboundMessage, reply: str) -> None:
        """Send until the platform takes it (never dropped), then mark the turn done."""
        out = self._outbound(msg, reply) if reply.strip() else None
        attempt = 0
        while True:
            try:
                await self._protected(self._send_and_mark(out, msg.id))
                return
            except PlatformUnavailable as e:
                self.counts["send_retries"] += 1
                await self._backoff("send", e, attempt)
                attempt += 1
            except PlatformRejected as e:  # the platform will never take it: do not loop
                self.counts["send_rejected"] += 1
                log.warning(
                    "%s %s: reply to %s refused: %s", self._chan, self._acct, msg.id, e.user_message
                )
                await self._mark_done(msg.id)
                return

    async def _send_and_mark(self, out: OutboundMessage | None, msg_id: str) -> None:
        if out is not None:
            with span(
                "moltbot.outbound", out.trace or None, channel=self._chan, account=self._acct
            ):
                await self.adapter.send(out)
            self.counts["sent"] += 1
            self.link.sent()
        if self._marking:  # the marker writes it (with the others waiting): the worker goes on
            self._done.add(msg_id)
            await self._marks.put(msg_id)
        else:
            await self._mark_done(msg_id)

    async def _marker(self) -> None:
        """Write the done marks of sent replies, those that gathered meanwhile together (one
        journal write under load), so a worker never waits for the journal after a send. On
        stop, what is queued is still written within ``finish_grace_s``."""
        self._marking = True
        try:
            while True:
                ids = drain(self._marks, await self._marks.get(), MARKS_BATCH)
                await self._protected(self._mark_all(ids))
        finally:
            self._marking = False  # later sends mark their own
            rest = [self._marks.get_nowait() for _ in range(self._marks.qsize())]
            if rest:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._mark_all(rest), self.opt.finish_grace_s)

    async def _mark_all(self, ids: list[str]) -> None:
        async with asyncio.TaskGroup() as tg:
            for msg_id in ids:
                tg.create_task(self._mark_done(msg_id))

    async def _mark_done(self, msg_id: str) -> None:
        attempt = 0
        while True:
            try:
                await self._dones.submit(msg_id)
                break
            except TRANSIENT as e:
                await self._backoff("mark_done", e, attempt)
                attempt += 1
        self._done.add(msg_id)
        self.counts["done"] += 1

    async def notify(self, out: OutboundMessage, attempts: int = 5) -> None:
        """A system message (an approval request): not journaled, retried a few times."""
        for attempt in range(attempts):
            try:
                await self.adapter.send(out)
                self.counts["notices"] += 1
                return
            except PlatformUnavailable as e:
                if attempt + 1 >= attempts:
                    raise
                await self._backoff("notify", e, attempt)

    async def _send_notice(self, msg: InboundMessage, text: str) -> None:
        try:
            await self.adapter.send(self._outbound(msg, text))
            self.counts["notices"] += 1
        except MoltbotError as e:  # not journaled: the sender asks again and gets it again
            log.warning("%s %s: notice not sent: %s", self._chan, self._acct, e.code)

    async def _protected(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro``; if cancelled meanwhile, let it finish for ``finish_grace_s`` first.

        A reply that went out just before a stop or crash is then still marked done, instead
        of being sent a second time by the replay after the restart.
        """
        return await within_grace(coro, self.opt.finish_grace_s)

    async def _backoff(self, what: str, err: BaseException, attempt: int) -> None:
        if isinstance(err, RateLimited):
            delay = err.retry_after
        else:
            delay = backoff(
                attempt, base=self.opt.retry_base_s, cap=self.opt.retry_cap_s, rng=self._rng
            )
        log.info(
            "%s %s: %s: %s, retry in %.2fs",
            self._chan,
            self._acct,
            what,
            getattr(err, "code", type(err).__name__),
            delay,
        )
        await self._sleep(delay)
