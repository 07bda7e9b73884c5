"""Gateway methods: parse params, call the backend, shape the payload.

``chat.send`` streams ``chat`` events (``{"kind": "delta"|"tool"|"final", ...,"req": id}``)
through ``CallContext.emit`` before its response. ``config.get`` redacts secrets once more,
whatever the backend already did.

``plugin.<plugin>.<method>`` (e.g. ``plugin.hello.last``) calls a method a plugin registered
with ``register_gateway_method``: the params go to it as they are and its object is the
payload. A name of another shape is an ``unknown_method``; an unknown plugin or method is
``not_found`` (from the backend).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from moltbot.channels.whatsapp_qr import LinkBoard
from moltbot.config.schema import PLUGIN_NAME_PATTERN
from moltbot.errors import BadRequest, UnknownMethod
from moltbot.gateway import frames as f
from moltbot.gateway.backend import Backend
from moltbot.gateway.wa_link import WhatsAppLinkParams, watch_link
from moltbot.media.web import Upload
from moltbot.messages import ChatFinal
from moltbot.plugins.api import METHOD_NAME

Emit = Callable[[str, Any], Awaitable[None]]
MAX_CHAT_CHARS = 100_000
MAX_FILES = 8  # files in one chat.send


def uploads(files: list[f.FileParam]) -> list[Upload]:
    """The files of a ``chat.send``, decoded (BadRequest naming the file when one is not
    base64)."""
    if len(files) > MAX_FILES:
        raise BadRequest(f"at most {MAX_FILES} files can be sent in one message")
    out = []
    for file in files:
        try:
            data = base64.b64decode(file.data, validate=True)
        except (ValueError, TypeError):
            raise BadRequest(f"the file {file.name[:80]!r} is not valid base64") from None
        out.append(Upload(name=file.name[:255], data=data))
    return out


REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|password|passwd|secret|secrets|api_?key|passphrase|private_?key|"
    r"credentials?|cookie)$",
    re.IGNORECASE,
)
PLUGIN_PREFIX = "plugin."
PLUGIN_METHOD_SHAPE = "plugin.<plugin>.<method>"
_PLUGIN_NAME = re.compile(PLUGIN_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class CallContext:
    client: str  # who is calling, for the audit trail ("gateway:127.0.0.1:53412")
    request_id: str
    emit: Emit


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced by ``***``."""
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def plugin_method(method: str) -> tuple[str, str] | None:
    """``plugin.<plugin>.<method>`` as (plugin, method); None for any other method name.

    Raises ``UnknownMethod`` for a ``plugin.`` name of the wrong shape.
    """
    if not method.startswith(PLUGIN_PREFIX):
        return None
    plugin, _, name = method[len(PLUGIN_PREFIX) :].partition(".")
    if not (_PLUGIN_NAME.match(plugin) and METHOD_NAME.match(name)):
        raise UnknownMethod(
            "not a plugin method name", hint=f"plugin methods are called {PLUGIN_METHOD_SHAPE}"
        )
    return plugin, name


def chat_payload(event: msgspec.Struct, request_id: str) -> dict[str, Any]:
    data = msgspec.to_builtins(event)
    kind = data.pop("type")
    return {"kind": kind, **data, "req": request_id}


Handler = Callable[[dict[str, Any], CallContext], Awaitable[Any]]


class Dispatcher:
    def __init__(self, backend: Backend, board: LinkBoard | None = None) -> None:
        self._b = backend
        self._board = board or LinkBoard()  # MOLTBOT_HOME's, read at each call
        self._table: dict[str, Handler] = {
            "health": self._health,
            "status": self._status,
            "chat.send": self._chat_send,
            "chat.history": self._chat_history,
            "sessions.list": self._sessions_list,
            "sessions.reset": self._sessions_reset,
            "channels.status": self._channels_status,
            "approvals.list": self._approvals_list,
            "approvals.resolve": self._approvals_resolve,
            "pairing.list": self._pairing_list,
            "pairing.approve": self._pairing_approve,
            "config.get": self._config_get,
            "cron.list": self._cron_list,
            "whatsapp.link": self._whatsapp_link,
        }

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._table)

    async def call(self, method: str, params: dict[str, Any], ctx: CallContext) -> Any:
        handler = self._table.get(method)
        if handler is not None:
            return await handler(params, ctx)
        target = plugin_method(method)
        if target is not None:
            return await self._b.plugin_call(*target, params)
        shown = method if len(method) <= 64 and method.isprintable() else "(unprintable)"
        known = ", ".join((*self._table, PLUGIN_METHOD_SHAPE))
        raise UnknownMethod(f"unknown method {shown!r}", hint="known: " + known)

    async def _health(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return await self._b.health()

    async def _status(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return await self._b.status()

    async def _chat_send(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, f.ChatSendParams)
        if not p.text.strip() and not p.files:
            raise BadRequest("chat.send needs a non-empty text")
        if len(p.text) > MAX_CHAT_CHARS:
            raise BadRequest(f"a message is limited to {MAX_CHAT_CHARS} characters")
        text_parts: list[str] = []
        final: ChatFinal | None = None
        files = uploads(p.files)
        events = (
            self._b.chat_send(p.session, p.text, files)
            if files
            else self._b.chat_send(p.session, p.text)
        )
        async for event in events:
            await ctx.emit("chat", chat_payload(event, ctx.request_id))
            if isinstance(event, ChatFinal):
                final = event
            elif hasattr(event, "text"):
                text_parts.append(event.text)
        if final is None:
            return {"session": p.session, "text": "".join(text_parts), "usage": {}}
        return {"session": final.session, "text": final.text, "usage": final.usage}

    async def _chat_history(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, f.ChatHistoryParams)
        limit = max(1, min(p.limit, 1000))
        messages = await self._b.chat_history(p.session, limit)
        return {"session": p.session, "messages": messages}

    async def _sessions_list(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"sessions": await self._b.sessions_list()}

    async def _sessions_reset(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, f.SessionParams)
        await self._b.sessions_reset(p.session)
        return {"session": p.session, "reset": True}

    async def _channels_status(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"channels": await self._b.channels_status()}

    async def _approvals_list(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"approvals": await self._b.approvals_list()}

    async def _approvals_resolve(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, f.ApprovalResolveParams)
        return await self._b.approvals_resolve(p.id, p.decision == "approve", by=ctx.client)

    async def _pairing_list(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"requests": await self._b.pairing_list()}

    async def _pairing_approve(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, f.PairingApproveParams)
        return await self._b.pairing_approve(p.channel, p.code, by=ctx.client)

    async def _cron_list(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"jobs": await self._b.cron_list()}

    async def _whatsapp_link(self, params: dict[str, Any], ctx: CallContext) -> Any:
        p = f.parse_params(params, WhatsAppLinkParams)
        return await watch_link(self._board, p, ctx.emit)

    async def _config_get(self, params: dict[str, Any], ctx: CallContext) -> Any:
        f.parse_params(params, f.NoParams)
        return {"config": redact(await self._b.config_get())}
