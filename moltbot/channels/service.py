"""The per-message pipeline of one channel account, as plain async code (no Ray here).

The channel actor builds a :class:`ChannelService` from an adapter, the account's pairing book
and a few async callables (:class:`Ports`: the store's journal and kv, the agent's ``answer``),
then runs it. What happens to a message::

    adapter.run ──sink(msg)──▶ access check ─ deny: dropped (a reply only if the decision has one)
                                   │          └ pair: pairing state persisted, the code queued
                                   ▼
                   bounded FairQueue (per chat, FIFO)  ◀── replay of ports.pending() at start
                                   │ then ports.accept_many (journal + fsync); when it returned,
                                   │ the sink returns: the adapter commits the platform offset
                                   ▼
    worker: typing → ports.answer(msg) ─ waits for the journal ─▶ adapter.send(reply)
                                                        ─▶ marker: ports.mark_done_many

One actor call before the model: the turn starts beside the journal write, not after it (the
write is one store round trip; the turn, at least one model call). The reply waits for the
write: it goes out only for a message the journal took as new, or a duplicate still pending
(journaled by an earlier accept whose answer was lost). A journal write that failed sends
nothing: the sink raised, the platform delivers the message again to the restarted actor, and
the agent, whose turns are idempotent per message id, gives its recorded reply then. A
duplicate costs a turn that the agent answers from its transcript, and nothing is sent.

Exactly-once as far as it can be had: the store dedups by platform message id; the pending
snapshot is taken before the receive loop starts; an in-actor set of ids in flight (plus a
bounded set of ids finished here) keeps a message that is both pending and re-delivered from
being dispatched twice. A send the platform did not take (``PlatformUnavailable``) is retried
with backoff and never dropped; a reply sent before a cancellation is still marked done
(within a grace period). What cannot be closed: a process killed between the platform taking a
reply and the journal marking it done answers that message again after the restart.

Workers take jobs from a ``FairQueue``: one chat's in order, chats first come, first served.

Pairing is audited through the optional ``audit`` callable (the actor forwards it to the store's
audit log): a code issued to a new sender (``requested``), and ``approved`` / ``denied``. A record
keeps only the code's first two characters (``code_prefix``), never the code. A message refused
for access (a stranger, a group not allowed) is dropped without a word and audited
(``access_refused``, throttled per chat and sender: ``moltbot.security.access.RefusalAudit``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from moltbot.batching import GroupCommit
from moltbot.channels.base import ChannelAdapter, SeenIds
from moltbot.channels.delivery import TRANSIENT as TRANSIENT
from moltbot.channels.delivery import Delivery, Sleep
from moltbot.channels.dispatch import FairQueue, is_control
from moltbot.channels.link import Link, current_link
from moltbot.channels.media_step import take_media, with_notes
from moltbot.channels.pairing_ops import PairingOps
from moltbot.channels.ports import Job, Journaled, Ports, ServiceOptions
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.media.ingest import MediaIntake
from moltbot.messages import InboundMessage
from moltbot.observability import inject, span
from moltbot.security.access import Pairing, RefusalAudit
from moltbot.security.audit import AuditSink

T = TypeVar("T")
log = logging.getLogger(__name__)

CONNECTED_WITHIN_S = 90.0  # longer than any adapter's quiet receive (Telegram's long poll)
SORRY = "Sorry, I could not answer that message. Please try again in a moment."


class ChannelService(Delivery, PairingOps):
    def __init__(
        self,
        adapter: ChannelAdapter,
        pairing: Pairing,
        ports: Ports,
        options: ServiceOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        audit: AuditSink | None = None,
        link: Link | None = None,
        media: MediaIntake | None = None,
    ) -> None:
        self.adapter = adapter
        self._media = media
        self.link = link or Link(clock=clock)
        self._audit = audit
        self._refusals = RefusalAudit(audit, clock=clock)
        self.pairing = pairing
        self.ports = ports
        self.opt = options or ServiceOptions()
        if self.opt.workers < 1 or self.opt.queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        self._clock, self._sleep, self._rng = clock, sleep, rng
        self._queue: FairQueue[Job] = FairQueue(self.opt.workers * self.opt.queue_size)
        self._inflight: set[str] = set()
        self._done = SeenIds(self.opt.done_ids)
        self.counts: Counter[str] = Counter()
        self._marks: asyncio.Queue[str] = asyncio.Queue(self.opt.workers * self.opt.queue_size)
        # what arrives while one journal call is in flight goes together in the next one
        self._accepts = GroupCommit[InboundMessage, bool](
            lambda msgs: self.ports.accept_many(msgs), name="journal"
        )
        self._dones = GroupCommit[str, object](
            lambda ids: self.ports.mark_done_many(ids), name="done marks"
        )
        self._marking = False  # the marker runs: done marks are written behind the workers
        self.receiving = False

    # --- life ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Replay what the journal holds unfinished, receive, dispatch; until cancelled."""
        backlog = await self._pending_snapshot()  # before any live accept: no overlap
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._accepts.run(), name="journal")
                tg.create_task(self._dones.run(), name="done-marks")
                tg.create_task(self._marker(), name="marker")
                for i in range(self.opt.workers):
                    tg.create_task(self._worker(i), name=f"dispatch-{i}")
                tg.create_task(self.replay(backlog), name="replay")
                tg.create_task(self._receive(), name="receive")
        finally:
            self.receiving = False

    async def _pending_snapshot(self) -> list[InboundMessage]:
        return await self._retrying("pending", self.ports.pending)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except TRANSIENT as e:
                await self._backoff(what, e, attempt)
                attempt += 1

    async def _receive(self) -> None:
        self.receiving = True
        current_link.set(self.link)  # this task's context: the adapter's ReceiveBackoff reports
        try:
            await self.adapter.run(self.sink)
        finally:
            self.receiving = False

    async def replay(self, backlog: list[InboundMessage]) -> int:
        """Queue journaled, unfinished messages (after a crash they get their answer)."""
        n = 0
        for msg in backlog:
            if await self._enqueue_answer(msg):
                n += 1
        self.counts["replayed"] += n
        if n:
            log.info("%s %s: replaying %d unfinished messages", self._chan, self._acct, n)
        return n

    # --- receiving -------------------------------------------------------------------------
    async def sink(self, msg: InboundMessage) -> None:
        """Called by the adapter per message; when it returns the platform offset is committed."""
        self.counts["received"] += 1
        decision = self.pairing.check(msg)
        if decision.action == "deny":
            self.counts["denied"] += 1
            log.info("%s %s: dropped (%s)", self._chan, self._acct, decision.reason)
            self._refusals.refused(msg, decision)
            if decision.reply_text:
                await self._enqueue(Job(msg, decision.reply_text))
            return
        if decision.action == "pair":
            self.counts["pairing"] += 1
            if decision.reason == "pairing_new":  # the code is durable before anyone sees it
                await self.save_pairing()
                self._audit_pairing("requested", msg.sender_id, decision.code or "")
            if decision.reply_text:
                await self._enqueue(Job(msg, decision.reply_text))
            return
        with span("moltbot.inbound", msg.trace or None, channel=self._chan, account=self._acct):
            trace_ctx = inject()  # journaled with the message: the turn and reply join it
            if trace_ctx:
                msg = msgspec.structs.replace(msg, trace=trace_ctx)
            if msg.id in self._inflight or msg.id in self._done:  # a re-delivery in hand here
                await self._journal_known(msg)
                return
            journaled: asyncio.Future[Journaled] = asyncio.get_running_loop().create_future()
            self._inflight.add(msg.id)  # queued first: the turn runs beside the journal write
            try:
                await self._enqueue(Job(msg, journaled=journaled))
            except BaseException:
                self._inflight.discard(msg.id)
                raise
            try:
                fresh = await self._accepts.submit(msg)
            except BaseException:
                journaled.set_result("failed")  # never sent: the platform delivers it again
                raise
            journaled.set_result("new" if fresh else "duplicate")
            if fresh:
                self.counts["accepted"] += 1
                self.link.received()
            else:
                self.counts["duplicates"] += 1

    async def _journal_known(self, msg: InboundMessage) -> None:
        """A message re-delivered while in hand here (or finished here): journal it (the
        write is what acknowledges it) and count it; it is answered once, by its first job."""
        if await self._accepts.submit(msg):
            self.counts["accepted"] += 1
        else:
            self.counts["duplicates"] += 1

    async def take(self, msg: InboundMessage) -> bool:
        """Answer a message journaled by another actor (a scheduled fire) if it is this
        account's, pending and not in hand here: once. True when queued."""
        mine = (msg.channel, msg.account) == (self._chan, self._acct)
        return mine and await self._lost_accept(msg) and await self._enqueue_answer(msg)

    async def _lost_accept(self, msg: InboundMessage) -> bool:
        """A duplicate that is pending but handled by nobody: an earlier ``accept`` journaled it
        and its reply was lost (the store restarted under the call, which was retried)."""
        if msg.id in self._inflight or msg.id in self._done:
            return False
        return await self._pending(msg.id)

    async def _pending(self, msg_id: str) -> bool:
        """Whether the journal holds ``msg_id`` unfinished."""
        return any(m.id == msg_id for m in await self.ports.pending())

    async def _enqueue_answer(self, msg: InboundMessage) -> bool:
        if msg.id in self._inflight or msg.id in self._done:
            self.counts["deduplicated"] += 1
            return False
        self._inflight.add(msg.id)
        try:
            await self._enqueue(Job(msg))
        except BaseException:
            self._inflight.discard(msg.id)
            raise
        return True

    async def _enqueue(self, job: Job) -> None:
        # /approve and /deny skip the chat's queue: the turn they answer waits in front of it
        lane = "#control" if is_control(job.msg.text) else ""
        await self._queue.put(job.msg.session_key + lane, job)

    # --- dispatching -----------------------------------------------------------------------
    async def _worker(self, index: int) -> None:
        while True:
            key, job = await self._queue.get()
            try:
                await self.dispatch(job)
            finally:
                self._queue.done(key)

    async def dispatch(self, job: Job) -> None:
        msg = job.msg
        try:
            if job.notice is not None:
                await self._send_notice(msg, job.notice)
                return
            started: list[bool] = []
            async with asyncio.TaskGroup() as tg:  # the indicator goes out beside the turn,
                typing = tg.create_task(self._typing(msg, started))  # and before the reply
                taken, tell = await take_media(self._media, self.adapter, msg)
                reply = await self._answer(taken)
                if not started:  # answered before it was due: none is shown
                    typing.cancel()
            reply = with_notes(tell, reply)  # a file refused: the sender is told in the reply
            if await self._ours_to_send(job):
                await self._deliver(msg, reply)
        finally:
            self._inflight.discard(msg.id)

    async def _ours_to_send(self, job: Job) -> bool:
        """Whether the reply to ``job`` may go out: its message is journaled by this job's
        accept, or (a duplicate) journaled earlier and still unfinished. A failed journal
        write sends nothing (the sink raised: the platform delivers the message again, and
        the agent gives its recorded reply then)."""
        if job.journaled is None:
            return True
        said = await job.journaled
        if said == "new":
            return True
        if said == "failed" or job.msg.id in self._done:
            return False
        # else: answered before, once
        return await self._retrying("pending", lambda: self._pending(job.msg.id))

    async def _typing(self, msg: InboundMessage, started: list[bool]) -> None:
        """The typing indicator, once the turn took ``typing_after_s``; a request once begun
        is finished (bounded) before the reply goes, so it never shows after the reply."""
        if self.opt.typing_after_s > 0:  # a plain wait, not a backoff (never an injected sleep)
            await asyncio.sleep(self.opt.typing_after_s)
        started.append(True)
        try:
            async with asyncio.timeout(self.opt.typing_max_s):  # a slow one holds no reply
                await self.adapter.typing(msg.chat_id)
        except Exception as e:  # best effort: never fails the turn beside it
            log.debug(
                "%s %s: typing failed: %s",
                self._chan,
                self._acct,
                getattr(e, "code", type(e).__name__),
            )

    async def _answer(self, msg: InboundMessage) -> str:
        attempt = failures = 0
        while True:
            try:
                return await self.ports.answer(msg)
            except TRANSIENT as e:
                await self._backoff("answer", e, attempt)
            except Exception as e:  # a bug or a refusal: a few tries, then a safe apology
                failures += 1
                log.error(
                    "%s %s: answering %s failed: %s",
                    self._chan,
                    self._acct,
                    msg.id,
                    getattr(e, "code", type(e).__name__),
                )
                if failures >= self.opt.answer_attempts:
                    self.counts["answer_failed"] += 1
                    return SORRY
                await self._backoff("answer", e, attempt)
            attempt += 1

    # --- health ----------------------------------------------------------------------------
    def idle_for(self) -> float:
        return max(0.0, self._clock.monotonic() - self.adapter.last_activity)

    def problem(self) -> str | None:
        """Stuck: connected, yet the receive loop has not heard from the platform for
        ``stuck_after_s`` (a loop that is retrying says so itself and is not stuck)."""
        age = self.idle_for()
        if age > self.opt.stuck_after_s and self.link.state in ("connecting", "connected"):
            return f"no receive for {age:.0f}s"
        return None

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self._chan,
            "account": self._acct,
            "connected": self.receiving and self.idle_for() < CONNECTED_WITHIN_S,
            "last_activity_s": round(self.idle_for(), 1),
            "queue": self.queue_depth(),
            "in_flight": len(self._inflight),
            "in": self.counts["accepted"],
            "out": self.counts["sent"],
            "counts": dict(self.counts),
            "link": self.link.snapshot(),
        }
