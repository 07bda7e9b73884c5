"""The ports of a ``ChannelService`` wired to the tree: the store and the agents by stable name.

Shared by the channel actor (one platform account) and the plugin actor (the channels a plugin
registers), so a message takes the same path whoever received it: journal, answer, mark done,
replay, pairing book. Journal writes and done marks go in batches (the service group-commits
them: one store call for what arrives while one is in flight). Calls ride through restarts
(``actors.routing.call``); a remote moltbot error comes back as itself, anything else as
``Unavailable``.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import routing
from moltbot.agent import profiles
from moltbot.channels.base import ChannelAdapter
from moltbot.channels.service import Ports
from moltbot.config.schema import Config
from moltbot.errors import MoltbotError, Unavailable
from moltbot.messages import InboundMessage

log = logging.getLogger("moltbot.channel")

STORE = "store"
STORE_DEADLINE_S = 60.0
AGENT_DEADLINE_S = 120.0


async def call(
    namespace: str,
    owner: str,
    path: str,
    method: str,
    *args: Any,
    deadline_s: float = STORE_DEADLINE_S,
    wake: bool = False,
) -> Any:
    """``routing.call`` with a remote moltbot error re-raised as itself (not Ray's wrapper);
    ``owner`` (the caller's path) only names it in the log. ``wake``: see ``routing.call``."""
    try:
        return await routing.call(namespace, path, method, *args, deadline_s=deadline_s, wake=wake)
    except routing.RemoteFailed as exc:
        cause = routing.cause_of(exc)
        if not isinstance(cause, MoltbotError):
            log.error("%s: %s.%s failed: %s", owner, path, method, type(cause).__name__)
        routing.raise_remote(exc, Unavailable(f"{path} could not handle the request"))


class StoreCursors:
    """An adapter's catch-up cursors (``moltbot.channels.cursor.CursorStore``) in the store's
    key/value space: ``put`` returns once the store has it on disk."""

    def __init__(self, namespace: str, owner: str) -> None:
        self._namespace, self._owner = namespace, owner

    async def get(self, key: str) -> bytes | None:
        value = await call(self._namespace, self._owner, STORE, "kv_get", key)
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes) -> None:
        await call(self._namespace, self._owner, STORE, "kv_put", key, value)


def channel_ports(
    namespace: str, owner: str, adapter: ChannelAdapter, *, pairing_key: str, config: Config
) -> Ports:
    """The ports of the service driving ``adapter``: ``pending`` filters on the adapter's own
    channel and account (the ids its messages carry); ``pairing_key`` is where its book is kept."""
    channel, account = adapter.channel, adapter.account

    async def accept_many(msgs: list[InboundMessage]) -> list[bool]:
        return list(await call(namespace, owner, STORE, "accept_many", msgs))

    async def mark_done_many(ids: list[str]) -> list[bool]:
        return list(await call(namespace, owner, STORE, "mark_done_many", ids))

    async def pending() -> list[InboundMessage]:
        found: list[InboundMessage] = await call(
            namespace, owner, STORE, "pending", channel, account
        )
        return found

    async def answer(msg: InboundMessage) -> str:
        path = profiles.agent_path_for(config, msg.session_key, msg)  # its profile's pool
        # an agent sleeps when idle (agent.idle_stop_s): the first message starts it
        reply = await call(
            namespace, owner, path, "answer", msg, deadline_s=AGENT_DEADLINE_S, wake=True
        )
        return str(reply)

    async def save_pairing(data: bytes) -> None:
        await call(namespace, owner, STORE, "kv_put", pairing_key, data)

    return Ports(
        accept_many=accept_many,
        mark_done_many=mark_done_many,
        pending=pending,
        answer=answer,
        save_pairing=save_pairing,
    )
