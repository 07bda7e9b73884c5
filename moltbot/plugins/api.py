"""``PluginAPI``: the one object a plugin gets, narrowed to its granted capabilities.

Pure: whatever touches the outside (the vault, the store, the audit log) is a callable the
plugin actor supplies in :class:`Services`. Every entry point checks its capability first; a
call the config did not grant raises :class:`~moltbot.errors.CapabilityDenied` and is reported
to ``Services.denied`` (the actor writes it to the audit log).

The plugin actor's broker (:mod:`moltbot.plugins.broker`) holds one of these and applies it to
every request of the plugin's sandboxed host process, where the plugin sees a
:class:`~moltbot.plugins.host.HostAPI` with the same public methods. The in-process loader
(:mod:`moltbot.plugins.loader`, tests and tooling) hands a plugin this object directly.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from moltbot.errors import (
    AccessDenied,
    BadRequest,
    CapabilityDenied,
    MoltbotError,
    NotFound,
    PluginError,
    Unavailable,
)
from moltbot.errors import PlatformRejected as PlatformRejected  # for a channel's send
from moltbot.errors import PlatformUnavailable as PlatformUnavailable
from moltbot.messages import InboundMessage, OutboundMessage, ToolResult
from moltbot.tools.registry import Tool, ToolRegistry

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
METHOD_NAME = re.compile(r"^[a-z][A-Za-z0-9_.]{0,63}$")
KV_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
BUILTIN_CHANNELS = frozenset({"telegram", "slack", "signal", "discord", "web", "cli"})
# errors a method handler may raise that reach the caller as they are (plain, picklable types)
PASSED_ERRORS = (AccessDenied, BadRequest, CapabilityDenied, NotFound, PluginError, Unavailable)

ToolHandler = Callable[[Any, str], "Awaitable[ToolResult | str] | ToolResult | str"]
MethodHandler = Callable[[dict[str, Any]], "Awaitable[dict[str, Any]] | dict[str, Any]"]
ChannelSend = Callable[[OutboundMessage], Awaitable[None]]
Inbox = Callable[[InboundMessage], Awaitable[None]]  # returns once the message is journaled
ID_MAX = 256
TEXT_MAX = 64_000


def _no_secret(name: str) -> str:
    raise PluginError("no secrets are available here")


async def _no_kv_get(key: str) -> bytes | None:
    raise PluginError("no storage is available here")


async def _no_kv_put(key: str, value: bytes) -> None:
    raise PluginError("no storage is available here")


def _ignore(fields: dict[str, str]) -> None:
    return None


@dataclass(frozen=True)
class Services:
    """What the host supplies: secret lookup, the store's kv, and where denials are reported."""

    secret: Callable[[str], str] = _no_secret
    kv_get: Callable[[str], Awaitable[bytes | None]] = _no_kv_get
    kv_put: Callable[[str, bytes], Awaitable[None]] = _no_kv_put
    denied: Callable[[dict[str, str]], None] = _ignore


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    description: str
    send: ChannelSend


@dataclass
class Registrations:
    """What a plugin registered (read by its actor)."""

    tools: ToolRegistry = field(default_factory=ToolRegistry)
    methods: dict[str, MethodHandler] = field(default_factory=dict)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)


class PluginAPI:
    def __init__(
        self,
        name: str,
        *,
        capabilities: frozenset[str],
        secrets: frozenset[str] = frozenset(),
        config: Any = None,
        services: Services | None = None,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.config = config  # the plugin's validated config (its manifest's Struct) or None
        self._secrets = secrets
        self._services = services or Services()
        self._log = logging.getLogger(f"moltbot.plugin.{name}")
        self.registered = Registrations()
        self._inboxes: dict[str, Inbox] = {}

    # --- capability checks ---------------------------------------------------------------------
    def deny(self, capability: str, problem: str, **extra: str) -> CapabilityDenied:
        fields = {"plugin": self.name, "capability": capability, **extra}
        self._log.warning("denied: %s", problem)
        try:
            self._services.denied(fields)
        except Exception:  # reporting must never turn a denial into something else
            self._log.exception("could not report a denial")
        return CapabilityDenied(
            f"plugin '{self.name}' {problem}",
            hint=f"grant it in config (plugins[{self.name}]) if the plugin should have it",
        )

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise self.deny(capability, f"was not granted the '{capability}' capability")

    # --- registration --------------------------------------------------------------------------
    def register_tool(
        self,
        name: str,
        description: str,
        input_type: type[msgspec.Struct],
        handler: ToolHandler,
    ) -> None:
        """A tool for the agent: ``handler(validated input, session key) -> str | ToolResult``."""
        self.require("tools")
        if not TOOL_NAME.match(name):
            raise PluginError(f"plugin '{self.name}': invalid tool name {name!r}")
        if not (isinstance(input_type, type) and issubclass(input_type, msgspec.Struct)):
            raise PluginError(f"plugin '{self.name}': tool {name} input must be a msgspec.Struct")
        if name in self.registered.tools.names():
            raise PluginError(f"plugin '{self.name}': tool {name} is registered twice")

        async def run(args: Any, session: str) -> ToolResult | str:
            result = handler(args, session)
            if inspect.isawaitable(result):
                result = await result
            return result

        self.registered.tools.register(Tool(name, description, input_type, run))

    def register_gateway_method(self, name: str, handler: MethodHandler) -> None:
        """A gateway method: ``handler(params) -> dict`` (sync or async)."""
        self.require("gateway_methods")
        if not METHOD_NAME.match(name) or name in self.registered.methods:
            raise PluginError(f"plugin '{self.name}': invalid or repeated method name {name!r}")
        self.registered.methods[name] = handler

    def register_channel(self, name: str, send: ChannelSend, description: str = "") -> None:
        """A channel: the host runs the channel pipeline for it once setup is done; messages
        come in through :meth:`deliver`, replies go out through ``send`` (async)."""
        self.require("channel")
        if not TOOL_NAME.match(name) or name in BUILTIN_CHANNELS:
            raise PluginError(f"plugin '{self.name}': invalid channel name {name!r}")
        if name in self.registered.channels:
            raise PluginError(f"plugin '{self.name}': channel {name} is registered twice")
        if not callable(send):
            raise PluginError(f"plugin '{self.name}': channel {name} needs a send callable")
        self.registered.channels[name] = ChannelSpec(name, description, send)

    async def deliver(
        self,
        channel: str,
        *,
        sender_id: str,
        chat_id: str,
        text: str,
        message_id: str,
        is_group: bool = False,
        mentioned: bool = False,
        sender_name: str = "",
        thread_id: str | None = None,
    ) -> None:
        """Hand a message from the plugin's platform to the bot, on a channel it registered.

        Returns once the message is journaled (or dropped by the access policy, or known
        already): only then should the plugin acknowledge it to its platform. ``message_id``
        must be the platform's own id, stable across re-deliveries (it de-duplicates).
        """
        self.require("channel")
        if channel not in self.registered.channels:
            raise PluginError(f"plugin '{self.name}': no channel {channel!r} was registered")
        ids = {"sender_id": sender_id, "chat_id": chat_id, "message_id": message_id}
        for what, value in ids.items():
            _check_text(self.name, what, value, ID_MAX, empty=False)
        _check_text(self.name, "text", text, TEXT_MAX, empty=True)
        _check_text(self.name, "sender_name", sender_name, ID_MAX, empty=True)
        if thread_id is not None:
            _check_text(self.name, "thread_id", thread_id, ID_MAX, empty=False)
        if not isinstance(is_group, bool) or not isinstance(mentioned, bool):
            raise PluginError(f"plugin '{self.name}': is_group and mentioned must be booleans")
        inbox = self._inboxes.get(channel)
        if inbox is None:
            raise Unavailable(
                f"plugin '{self.name}': channel {channel} is not running yet",
                hint="deliver from run(api) or a callback, not from setup(api)",
            )
        msg = InboundMessage(
            id=f"{channel}:{self.name}:{chat_id}:{message_id}",
            channel=channel,
            account=self.name,
            chat_id=chat_id,
            sender_id=sender_id,
            text=text,
            sender_name=sender_name,
            is_group=is_group,
            mentioned=mentioned,
            thread_id=thread_id,
            received_at=time.time(),
        )
        await inbox(msg)

    # --- access --------------------------------------------------------------------------------
    def secret(self, name: str) -> str:
        """A secret from the vault, if the config lists it in ``plugins[].secrets``."""
        self.require("secrets")
        if name not in self._secrets:
            raise self.deny("secrets", f"may not read secret '{name}'", secret_name=name)
        return self._services.secret(name)

    def _key(self, key: str) -> str:
        self.require("storage")
        if not isinstance(key, str) or not KV_KEY.match(key) or ".." in key:
            raise PluginError(
                f"plugin '{self.name}': invalid storage key",
                hint="1-48 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        return f"plugin.{self.name}.{key}"

    async def kv_get(self, key: str) -> bytes | None:
        """The plugin's own stored value (other plugins' keys are out of reach)."""
        return await self._services.kv_get(self._key(key))

    async def kv_put(self, key: str, value: bytes) -> None:
        await self._services.kv_put(self._key(key), value)

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client (the caller closes it), with the ``network`` capability only."""
        self.require("network")
        kwargs.setdefault("timeout", 15.0)
        return httpx.AsyncClient(**kwargs)

    def log(self, message: str, level: int = logging.INFO) -> None:
        self._log.log(level, "%s", message)

    # --- what the host calls -------------------------------------------------------------------
    def connect_channel(self, name: str, inbox: Inbox) -> None:
        """Route ``deliver(name, ...)`` to ``inbox`` (the channel's adapter, once it runs)."""
        if name not in self.registered.channels:
            raise PluginError(f"plugin '{self.name}': no channel {name!r} was registered")
        self._inboxes[name] = inbox

    async def call_method(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run a registered gateway method. Raises ``NotFound`` (no such method), one of
        ``PASSED_ERRORS`` the handler raised, or ``PluginError``: any other error of ours keeps
        its message, anything else gets a generic one (its text may hold anything)."""
        handler = self.registered.methods.get(name)
        if handler is None:
            raise NotFound(f"plugin '{self.name}' has no method {name!r}")
        try:
            result = handler(params)
            if inspect.isawaitable(result):
                result = await result
        except MoltbotError as exc:
            if type(exc) in PASSED_ERRORS:
                raise
            raise PluginError(exc.user_message, hint=exc.hint) from None
        except Exception:
            self._log.exception("method %s failed", name)
            raise PluginError(
                f"plugin '{self.name}': method {name} failed", hint="see the plugin's log"
            ) from None
        if not isinstance(result, dict):
            raise PluginError(f"plugin '{self.name}': method {name} did not return an object")
        return result


def _check_text(plugin: str, what: str, value: object, limit: int, *, empty: bool) -> None:
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        kind = "a string" if empty else "a non-empty string"
        raise PluginError(f"plugin '{plugin}': {what} must be {kind} of at most {limit} chars")
    if what != "text" and any(ord(c) < 32 for c in value):
        raise PluginError(f"plugin '{plugin}': {what} must not hold control characters")
