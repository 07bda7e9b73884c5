"""The broker: the plugin actor's side of the pipe to the plugin's sandboxed host process.

Every request of the plugin (register a tool, a method or a channel, deliver a message, read a
secret, use storage, make an HTTP request) arrives here as a frame and is checked against the
grants by a real :class:`~moltbot.plugins.api.PluginAPI` (capabilities, secret names, storage
keys, message fields) and, for HTTP, by :class:`~moltbot.plugins.egress.Egress` (granted hosts,
public addresses). A refusal raises ``CapabilityDenied`` back to the plugin and is reported to
``Services.denied`` (audited by the actor). The other way go tool calls, gateway methods and
channel sends, and a ``ping`` that finds a plugin whose event loop is blocked.

The host process is untrusted: whatever it says about itself (its manifest) only narrows what
the config grants. Requests in flight are bounded; a frame over the cap, a malformed frame, an
ended process or an unanswered ping raise :class:`~moltbot.errors.PluginError` from
:meth:`Broker.serve` (the actor crashes, the supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import msgspec

from moltbot.config.schema import PluginConfig
from moltbot.errors import BadRequest, CapabilityDenied, PluginError, Unavailable
from moltbot.messages import OutboundMessage, ToolResult
from moltbot.plugins.api import TOOL_NAME, PluginAPI, Services
from moltbot.plugins.egress import Egress
from moltbot.plugins.wire import HEADER, Frame, decode, encode, error_info, frame_length, rebuild
from moltbot.tools.registry import cap_text

log = logging.getLogger("moltbot.plugin.broker")

MAX_INFLIGHT = 64  # requests of the plugin handled at once; more are refused
MAX_TOOLS = 64
MAX_SCHEMA = 64 * 1024
PING_EVERY_S = 2.0
PING_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 300.0
DELIVER_FIELDS = frozenset(
    {
        "sender_id",
        "chat_id",
        "text",
        "message_id",
        "is_group",
        "mentioned",
        "sender_name",
        "thread_id",
    }
)


class Broker:
    def __init__(
        self,
        pc: PluginConfig,
        services: Services,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        egress: Egress | None = None,
    ) -> None:
        self.pc = pc
        self._services = services
        self._reader, self._writer = reader, writer
        self._egress = egress or Egress(frozenset(pc.http_hosts))
        self._write_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._ids = itertools.count(1)
        self._inflight = 0
        self._tg: asyncio.TaskGroup | None = None  # serve's: the answers to the plugin
        self._failed: asyncio.Future[PluginError] = asyncio.get_running_loop().create_future()
        self.api: PluginAPI | None = None
        self.manifest: dict[str, Any] = {}
        self.tool_specs: dict[str, dict[str, Any]] = {}

    # --- life --------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Read frames until the host ends; always raises PluginError (crash: restarted)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tasks = [tg.create_task(self._read()), tg.create_task(self._watch())]
            failure = await self._failed
            for task in tasks:
                task.cancel()
        raise failure

    async def load(self) -> None:
        """Import (manifest, config) and ``setup``: PluginError if the plugin must not run."""
        got = await self.call("init", {"entry": msgspec.to_builtins(self.pc)})
        self.manifest = dict(got)
        asked = frozenset(str(c) for c in self.manifest.get("capabilities", []))
        caps = asked & frozenset(self.pc.capabilities)  # the host's word only narrows
        self.api = PluginAPI(
            self.pc.name,
            capabilities=caps,
            secrets=frozenset(self.pc.secrets),
            services=self._services,
        )
        await self.call("setup", {})

    async def start(self) -> None:
        """Start the plugin's ``run(api)`` (after its channels are connected)."""
        await self.call("run", {})

    async def _read(self) -> None:
        while True:
            try:
                head = await self._reader.readexactly(HEADER.size)
                body = await self._reader.readexactly(frame_length(head))
            except asyncio.IncompleteReadError:
                self._fail(PluginError(f"plugin '{self.pc.name}': its process ended"))
                return
            except PluginError as exc:
                self._fail(exc)
                return
            frame = decode(body)
            if frame.kind == "reply":
                fut = self._pending.pop(frame.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
            elif frame.kind == "note":
                self._note(frame)
            else:
                self._accept(frame)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_S)
            try:
                await asyncio.wait_for(self.call("ping", {}), PING_TIMEOUT_S)
            except TimeoutError:
                self._fail(PluginError(f"plugin '{self.pc.name}': stuck, its loop is blocked"))
                return
            except Unavailable:  # it stopped: _fail already said why
                return

    def _fail(self, exc: PluginError) -> None:
        if not self._failed.done():
            self._failed.set_result(exc)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable(f"plugin '{self.pc.name}' stopped"))
        self._pending.clear()

    # --- to the host ------------------------------------------------------------------------
    async def _send(self, frame: Frame) -> None:
        async with self._write_lock:
            try:
                self._writer.write(encode(frame))
                await self._writer.drain()
            except OSError:  # the host process is gone (reset, broken pipe): a stop, not a bug
                self._fail(PluginError(f"plugin '{self.pc.name}': its process went away"))
                raise Unavailable(f"plugin '{self.pc.name}' stopped") from None

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        if self._failed.done():
            raise Unavailable(f"plugin '{self.pc.name}' stopped")
        cid = next(self._ids)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        try:
            await self._send(Frame(kind="call", id=cid, op=op, args=args))
            frame = await asyncio.wait_for(fut, CALL_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable(f"plugin '{self.pc.name}' did not answer {op} in time") from None
        finally:
            self._pending.pop(cid, None)
        if frame.error is not None:
            raise rebuild(frame.error)
        return frame.args

    async def call_tool(self, name: str, input: dict[str, Any], session: str) -> ToolResult:
        if name not in self.tool_specs:
            known = ", ".join(self.tool_specs) or "none"
            return ToolResult(
                text=f"unknown tool {name!r}; available tools: {known}", is_error=True
            )
        try:
            got = await self.call("tool", {"name": name, "input": input, "session": session})
            result = msgspec.convert(got, ToolResult)
        except (PluginError, Unavailable) as exc:
            return ToolResult(text=exc.user_message, is_error=True)
        except msgspec.ValidationError:
            return ToolResult(text=f"the {name} tool gave a malformed result", is_error=True)
        return ToolResult(text=cap_text(result.text), is_error=result.is_error)

    # --- from the host ----------------------------------------------------------------------
    def _note(self, frame: Frame) -> None:
        args = frame.args if isinstance(frame.args, dict) else {}
        if frame.op == "log":
            level = args.get("level")
            level = level if isinstance(level, int) else logging.INFO
            log.log(level, "plugin %s: %s", self.pc.name, str(args.get("message", ""))[:2000])
        elif frame.op == "run_failed":
            kind = str(args.get("kind", "an error"))[:100]
            self._fail(PluginError(f"plugin '{self.pc.name}': run raised {kind}"))

    def _accept(self, frame: Frame) -> None:
        if self._inflight >= MAX_INFLIGHT:
            busy = Unavailable("too many requests in flight")
            self._spawn(self._send(Frame(kind="reply", id=frame.id, error=error_info(busy, ""))))
            return
        self._inflight += 1
        self._spawn(self._answer(frame))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None  # frames are read only inside serve's task group
        self._tg.create_task(coro)

    async def _answer(self, frame: Frame) -> None:
        try:
            args = frame.args if isinstance(frame.args, dict) else {}
            value = await self._handle(frame.op, args)
            reply = Frame(kind="reply", id=frame.id, args=value)
        except Exception as exc:  # the plugin gets our error's safe text, never a foreign one
            if not isinstance(exc, PluginError | Unavailable | BadRequest):
                log.warning("plugin %s: %s failed: %s", self.pc.name, frame.op, type(exc).__name__)
            reply = Frame(kind="reply", id=frame.id, error=error_info(exc, f"{frame.op} failed"))
        finally:
            self._inflight -= 1
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(reply)

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        api = self.api
        handler = _HANDLERS.get(op)
        if api is None or handler is None:
            raise BadRequest(f"unknown or early request {op[:40]!r}")
        return await handler(self, api, args)

    async def _register_tool(self, api: PluginAPI, args: dict[str, Any]) -> None:
        api.require("tools")
        name, schema = _text(args, "name"), args.get("schema")
        if not TOOL_NAME.match(name) or name in self.tool_specs:
            raise PluginError(f"plugin '{self.pc.name}': invalid or repeated tool name {name!r}")
        if len(self.tool_specs) >= MAX_TOOLS or not isinstance(schema, dict):
            raise PluginError(f"plugin '{self.pc.name}': too many tools, or a bad schema")
        if len(msgspec.json.encode(schema)) > MAX_SCHEMA:
            raise PluginError(f"plugin '{self.pc.name}': tool {name} has too large a schema")
        desc = _text(args, "description")[:2000]
        self.tool_specs[name] = {"name": name, "description": desc, "input_schema": schema}

    async def _register_method(self, api: PluginAPI, args: dict[str, Any]) -> None:
        name = _text(args, "name")

        async def forward(params: dict[str, Any]) -> dict[str, Any]:
            got = await self.call("method", {"name": name, "params": params})
            if not isinstance(got, dict):
                raise PluginError(f"plugin '{self.pc.name}': method {name} gave no object")
            return got

        api.register_gateway_method(name, forward)

    async def _register_channel(self, api: PluginAPI, args: dict[str, Any]) -> None:
        name = _text(args, "name")

        async def send(out: OutboundMessage) -> None:
            await self.call("send", {"channel": name, "out": msgspec.to_builtins(out)})

        api.register_channel(name, send, _text(args, "description")[:500])

    async def _deliver(self, api: PluginAPI, args: dict[str, Any]) -> None:
        fields = args.get("fields")
        if not isinstance(fields, dict) or not set(fields) <= DELIVER_FIELDS:
            raise PluginError(
                f"plugin '{self.pc.name}': deliver takes only {sorted(DELIVER_FIELDS)}"
            )
        try:
            await api.deliver(_text(args, "channel"), **fields)
        except TypeError:
            raise PluginError(f"plugin '{self.pc.name}': deliver is missing a field") from None

    async def _secret(self, api: PluginAPI, args: dict[str, Any]) -> str:
        return api.secret(_text(args, "name"))

    async def _kv_get(self, api: PluginAPI, args: dict[str, Any]) -> bytes | None:
        return await api.kv_get(_text(args, "key"))

    async def _kv_put(self, api: PluginAPI, args: dict[str, Any]) -> None:
        value = args.get("value")
        if not isinstance(value, bytes):
            raise PluginError(f"plugin '{self.pc.name}': storage values are bytes")
        await api.kv_put(_text(args, "key"), value)

    async def _http_client(self, api: PluginAPI, args: dict[str, Any]) -> None:
        api.require("network")

    async def _http(self, api: PluginAPI, args: dict[str, Any]) -> dict[str, Any]:
        api.require("network")
        try:
            url = httpx.URL(_text(args, "url"))
        except (httpx.InvalidURL, ValueError):
            raise PluginError(f"plugin '{self.pc.name}': not a valid URL") from None
        try:
            self._egress.check_host(url)
        except CapabilityDenied as exc:
            host = (url.host or "")[:200]
            raise api.deny(
                "network", f"may not reach {host}: {exc.user_message}", host=host
            ) from None
        return await self._egress.request(args)


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key, "")
    if not isinstance(value, str):
        raise PluginError(f"'{key}' must be a string")
    return value


Handler = Callable[[Broker, PluginAPI, dict[str, Any]], Awaitable[Any]]
_HANDLERS: dict[str, Handler] = {
    "register_tool": Broker._register_tool,
    "register_gateway_method": Broker._register_method,
    "register_channel": Broker._register_channel,
    "deliver": Broker._deliver,
    "secret": Broker._secret,
    "kv_get": Broker._kv_get,
    "kv_put": Broker._kv_put,
    "http_client": Broker._http_client,
    "http": Broker._http,
}
