"""``PluginChannelAdapter``: a channel a plugin registered, as a ``ChannelAdapter``.

The plugin's own platform code pushes messages in with ``api.deliver`` (which calls
:meth:`PluginChannelAdapter.deliver`) and takes replies out through the ``send`` callable it
registered. In between runs the ordinary channel pipeline (``moltbot.channels.service``):
access check, journal, agent, send with retries, done mark, replay after a crash.

Durability: ``deliver`` puts the message on a bounded queue (a full queue makes the plugin
wait) and returns only once the pipeline's sink returned for it, i.e. once the store journaled
it (or the access check dropped it, or it was a duplicate). A plugin that acknowledges its
platform only after ``deliver`` returned loses nothing when the process dies.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from moltbot.channels.base import InboundSink
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, Unavailable
from moltbot.messages import InboundMessage, OutboundMessage
from moltbot.plugins.api import ChannelSpec

log = logging.getLogger("moltbot.plugin.channel")

QUEUE_SIZE = 16
SEND_TIMEOUT_S = 60.0
ALIVE_EVERY_S = 5.0  # an idle receive loop still shows it is alive this often

_Item = tuple[InboundMessage, "asyncio.Future[None]"]


class PluginChannelAdapter:
    """One plugin channel. ``account`` is the plugin's name (messages carry it)."""

    def __init__(
        self,
        spec: ChannelSpec,
        account: str,
        *,
        queue_size: int = QUEUE_SIZE,
        send_timeout_s: float = SEND_TIMEOUT_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.channel = spec.name
        self.account = account
        self._spec = spec
        self._send_timeout_s = send_timeout_s
        self._clock = clock
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(queue_size)
        self.last_activity = clock.monotonic()

    # --- the plugin's side -----------------------------------------------------------------
    async def deliver(self, msg: InboundMessage) -> None:
        """Queue ``msg`` (waits while the queue is full) and return once the sink took it.

        Raises what the sink raised (the message may not be journaled: do not acknowledge it),
        or ``Unavailable`` when the channel stopped first.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((msg, done))
        await done

    def queued(self) -> int:
        return self._queue.qsize()

    # --- the ChannelAdapter side -----------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        return {"name": self.channel, "plugin": self.account}

    async def run(self, sink: InboundSink) -> None:
        """Hand each delivered message to ``sink``; a sink error fails its deliverer and is
        raised (the service stops, the actor restarts: as a platform adapter would)."""
        try:
            while True:
                try:
                    msg, done = await asyncio.wait_for(self._queue.get(), ALIVE_EVERY_S)
                except TimeoutError:
                    self.last_activity = self._clock.monotonic()
                    continue
                self.last_activity = self._clock.monotonic()
                try:
                    await sink(msg)
                except BaseException as exc:
                    _settle(done, exc if isinstance(exc, MoltbotError) else _stopped(self))
                    raise
                _settle(done, None)
        finally:
            self._fail_queued()

    async def send(self, out: OutboundMessage) -> list[str]:
        """The plugin's ``send``. ``PlatformRejected`` (refused for good) passes through; any
        other failure or a timeout is ``PlatformUnavailable``: the service retries later."""
        try:
            async with asyncio.timeout(self._send_timeout_s):
                sent = self._spec.send(out)
                if inspect.isawaitable(sent):
                    await sent
        except (PlatformRejected, PlatformUnavailable):
            raise
        except Exception as exc:  # the plugin's error text may hold anything: its type only
            log.warning("%s (%s): send failed: %s", self.channel, self.account, type(exc).__name__)
            raise PlatformUnavailable(
                f"channel {self.channel} of plugin '{self.account}' did not take the reply"
            ) from None
        return []

    async def typing(self, chat_id: str) -> None:
        return None

    async def close(self) -> None:
        self._fail_queued()

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            _msg, done = self._queue.get_nowait()
            _settle(done, _stopped(self))


def _stopped(adapter: PluginChannelAdapter) -> Unavailable:
    return Unavailable(
        f"channel {adapter.channel} of plugin '{adapter.account}' stopped",
        hint="the message was not journaled: do not acknowledge it",
    )


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the deliverer was cancelled meanwhile
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
