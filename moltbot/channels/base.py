"""The contract every channel adapter keeps (Telegram, Slack, Signal, later plugins).

Durability: the adapter calls ``await sink(msg)`` for every message it receives and commits
the platform's offset/ack only after ``sink`` returned, i.e. after the store journaled the
message (fsync). If ``sink`` raises, ``run`` raises that error without committing, and the
platform re-delivers the message to the next adapter instance (the supervisor restarts it):

* Telegram: the offset of ``getUpdates`` is advanced only past updates the sink accepted.
* Slack: a Socket Mode envelope is acked only after the sink accepted it; unacked envelopes
  are re-delivered by Slack on reconnect.
* Discord: the gateway has no ack and Discord does not re-deliver. The adapter keeps, per
  channel, the id of the last message the sink accepted in a :class:`CursorStore` and, after
  every (re)connect, reads what came after it from the channel's REST history.
* Signal: signal-cli-rest-api has no ack. ``GET /v1/receive`` deletes what it returns and the
  json-rpc websocket pushes without ack, so a crash between the platform handing a message over
  and the sink returning loses that message. The adapter narrows the window (small polling
  batches, every message of a batch journaled before the next request) but cannot close it.

Duplicates are possible (a message re-delivered after its journal write); ``InboundMessage.id``
is the platform message id and the journal de-duplicates on it.

Messages that arrive together (one ``getUpdates`` answer, the envelopes waiting on a socket)
are handed to the sink together (``sink_together``), so their journal writes share one group
commit instead of one store round trip each; the offset/ack rules above hold per message.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from moltbot.messages import InboundMessage, OutboundMessage

InboundSink = Callable[[InboundMessage], Awaitable[None]]
RECEIVE_BATCH = 64  # messages handed to the sink together at most


async def sink_together(
    sink: InboundSink, msgs: Sequence[InboundMessage]
) -> list[Exception | None]:
    """Call ``sink`` for every message at once (started in order, so one chat's messages reach
    the journal in order) and wait for all; each one's outcome: None, or the error it raised."""
    outcomes: list[Exception | None] = [None] * len(msgs)

    async def one(i: int, msg: InboundMessage) -> None:
        try:
            await sink(msg)
        except Exception as exc:
            outcomes[i] = exc

    if len(msgs) == 1:
        await one(0, msgs[0])
        return outcomes
    async with asyncio.TaskGroup() as tg:
        for i, msg in enumerate(msgs):
            tg.create_task(one(i, msg))
    return outcomes


def drain(queue: asyncio.Queue[Any], first: Any, limit: int = RECEIVE_BATCH) -> list[Any]:
    """``first`` and whatever else waits in ``queue`` already (up to ``limit`` in all)."""
    out = [first]
    while len(out) < limit and not queue.empty():
        out.append(queue.get_nowait())
    return out


class ChannelAdapter(Protocol):
    """What a channel actor drives. Errors raised are moltbot errors (``ChannelError`` tree)."""

    channel: str
    account: str
    last_activity: float  # clock.monotonic() of the last successful poll/receive

    async def connect(self) -> dict[str, Any]:
        """Check the credentials and return the bot's identity (PlatformRejected if refused)."""
        ...

    async def run(self, sink: InboundSink) -> None:
        """Receive until cancelled; transient failures are retried inside, fatal ones raise."""
        ...

    async def send(self, out: OutboundMessage) -> list[str]:
        """Deliver (chunked, converted, retried); the platform ids of the messages sent.

        Raises PlatformUnavailable after the retry deadline (keep the message, retry later)
        and PlatformRejected when the platform refuses it for good.
        """
        ...

    async def typing(self, chat_id: str) -> None: ...

    async def close(self) -> None: ...


class CursorStore(Protocol):
    """Small durable values an adapter keeps between runs (the store's ``kv_get`` / ``kv_put``).
    ``key`` is a plain name (``cursor.discord.main``); a missing key reads as None."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...


class MemoryCursors:
    """A :class:`CursorStore` in memory (tests; a run without a store)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.values[key] = bytes(value)


class SeenIds:
    """A bounded set of recently seen message ids (drops the oldest)."""

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already there."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True
