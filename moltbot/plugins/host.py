"""``python -m moltbot.plugins.host``: the plugin's own process, run inside bubblewrap.

It imports the plugin from :data:`PLUGIN_ROOT` (its folder, bound read-only), gives it a
:class:`HostAPI` (the same public API as :class:`~moltbot.plugins.api.PluginAPI`) and turns every
call the plugin makes into a frame to its broker, the plugin actor, over stdin/stdout (see
:mod:`moltbot.plugins.wire`). The broker checks the grants and does the work; nothing here is
trusted. The other way come ``tool``, ``method`` and ``send`` calls, and a ``ping`` answered
from the event loop (a blocked loop does not answer: the broker restarts the plugin).

The process sees no network, no ``MOLTBOT_HOME``, no vault and no Ray: those are not in its
mount namespace at all (see :mod:`moltbot.plugins.jail`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from moltbot.config.schema import PluginConfig
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, PluginError
from moltbot.messages import OutboundMessage, ToolResult
from moltbot.plugins import egress
from moltbot.plugins.manifest import (
    effective_capabilities,
    entry_points,
    parse_manifest,
    validate_config,
)
from moltbot.plugins.wire import (
    HEADER,
    ErrorInfo,
    Frame,
    decode,
    encode,
    error_info,
    frame_length,
    rebuild,
)
from moltbot.tools.registry import Tool, ToolRegistry, input_schema

PLUGIN_ROOT = "/plugin"
MAX_INFLIGHT = 64  # calls from the broker handled at once; more are refused
SYNC_TIMEOUT_S = 30.0
log = logging.getLogger("moltbot.plugin.host")


class Conn:
    """Frames over two fds: a reader thread, writes under a lock, calls matched by id."""

    def __init__(self, rfd: int, wfd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._rfd, self._wfd, self._loop = rfd, wfd, loop
        self._lock = threading.Lock()
        self._pending: dict[int, Callable[[Frame], None]] = {}
        self._ids = itertools.count(1)

    def send(self, frame: Frame) -> None:
        data = memoryview(encode(frame))
        with self._lock:
            while data:
                data = data[os.write(self._wfd, data) :]

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        fut: asyncio.Future[Frame] = self._loop.create_future()

        def resolve(frame: Frame) -> None:
            if not fut.done():
                fut.set_result(frame)

        def settle(frame: Frame) -> None:  # on the reader thread
            self._loop.call_soon_threadsafe(resolve, frame)

        self._send_call(op, args, settle)
        return _value(await fut)

    def call_sync(self, op: str, args: dict[str, Any]) -> Any:
        """A call that blocks this thread (for the plugin API's sync methods)."""
        done = threading.Event()
        box: list[Frame] = []

        def settle(frame: Frame) -> None:
            box.append(frame)
            done.set()

        self._send_call(op, args, settle)
        if not done.wait(SYNC_TIMEOUT_S):
            raise PluginError(f"the broker did not answer {op} in time")
        return _value(box[0])

    def _send_call(self, op: str, args: dict[str, Any], settle: Callable[[Frame], None]) -> None:
        cid = next(self._ids)
        self._pending[cid] = settle
        try:
            self.send(Frame(kind="call", id=cid, op=op, args=args))
        except BaseException:
            self._pending.pop(cid, None)
            raise

    def read_forever(self, on_call: Callable[[Frame], None]) -> None:
        """The reader thread: replies settle their caller; calls and notes go to the loop.
        The broker gone, or a bad frame from it: the process ends."""
        try:
            with os.fdopen(self._rfd, "rb", buffering=0) as stream:
                while (head := _read_exact(stream, HEADER.size)) is not None:
                    body = _read_exact(stream, frame_length(head))
                    if body is None:
                        break
                    frame = decode(body)
                    if frame.kind != "reply":
                        self._loop.call_soon_threadsafe(on_call, frame)
                    elif (settle := self._pending.pop(frame.id, None)) is not None:
                        settle(frame)
        finally:
            os._exit(0)


def _read_exact(stream: Any, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _value(frame: Frame) -> Any:
    if frame.error is not None:
        raise rebuild(frame.error)
    return frame.args


class HostAPI:
    """What the plugin gets as ``api``: each call is a request to the broker, which decides."""

    def __init__(self, conn: Conn, name: str, capabilities: frozenset[str], config: Any) -> None:
        self.name = name
        self.capabilities = capabilities
        self.config = config
        self._conn = conn
        self.tools = ToolRegistry()
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.channels: dict[str, Callable[[OutboundMessage], Any]] = {}

    def register_tool(
        self, name: str, description: str, input_type: type[msgspec.Struct], handler: Any
    ) -> None:
        if not (isinstance(input_type, type) and issubclass(input_type, msgspec.Struct)):
            raise PluginError(f"plugin '{self.name}': tool {name} input must be a msgspec.Struct")
        schema = input_schema(input_type)
        args = {"name": name, "description": description, "schema": schema}
        self._conn.call_sync("register_tool", args)

        async def run(args: Any, session: str) -> ToolResult | str:
            result = handler(args, session)
            if inspect.isawaitable(result):
                result = await result
            return result

        self.tools.register(Tool(name, description, input_type, run))

    def register_gateway_method(self, name: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        self._conn.call_sync("register_gateway_method", {"name": name})
        self.methods[name] = handler

    def register_channel(self, name: str, send: Any, description: str = "") -> None:
        if not callable(send):
            raise PluginError(f"plugin '{self.name}': channel {name} needs a send callable")
        self._conn.call_sync("register_channel", {"name": name, "description": description})
        self.channels[name] = send

    async def deliver(self, channel: str, **fields: Any) -> None:
        await self._conn.call("deliver", {"channel": channel, "fields": fields})

    def secret(self, name: str) -> str:
        return str(self._conn.call_sync("secret", {"name": name}))

    async def kv_get(self, key: str) -> bytes | None:
        got = await self._conn.call("kv_get", {"key": key})
        return None if got is None else bytes(got)

    async def kv_put(self, key: str, value: bytes) -> None:
        await self._conn.call("kv_put", {"key": key, "value": value})

    def http(self, **kwargs: Any) -> Any:
        """An httpx client whose requests the broker makes (granted hosts only)."""
        self._conn.call_sync("http_client", {})
        return egress.client(self._conn.call, **kwargs)

    def log(self, message: str, level: int = logging.INFO) -> None:
        self._conn.send(
            Frame(kind="note", op="log", args={"message": str(message)[:2000], "level": int(level)})
        )


class Host:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.api: HostAPI | None = None
        self.module: Any = None
        self.inflight = 0
        self.tg: asyncio.TaskGroup | None = None  # serve's: answers and the plugin's run
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def on_call(self, frame: Frame) -> None:
        if frame.kind == "note":
            return
        if self.inflight >= MAX_INFLIGHT:
            err = ErrorInfo(kind="Unavailable", message="the plugin is busy, try again")
            self.conn.send(Frame(kind="reply", id=frame.id, error=err))
            return
        assert self.tg is not None
        self.inflight += 1
        self.tg.create_task(self._answer(frame))

    async def _answer(self, frame: Frame) -> None:
        try:
            value = await self._handle(frame.op, frame.args or {})
            reply = Frame(kind="reply", id=frame.id, args=value)
        except Exception as exc:
            reply = Frame(kind="reply", id=frame.id, error=_crossing(frame.op, exc))
        finally:
            self.inflight -= 1
        self.conn.send(reply)

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "ping":
            return {}
        if op == "init":
            return self._init(msgspec.convert(args["entry"], PluginConfig))
        api = self.api
        if api is None:
            raise PluginError("the plugin is not loaded")
        if op == "setup":
            result = self.module.setup(api)
            if inspect.isawaitable(result):
                await result
            return None
        if op == "run":
            run = getattr(self.module, "run", None)
            if run is not None:
                assert self.tg is not None
                self.tg.create_task(self._run(run(api)))
            return None
        if op == "tool":
            result = await api.tools.call(args["name"], args["input"], args["session"])
            return msgspec.to_builtins(result)
        if op == "method":
            return await _method(api, args["name"], args["params"])
        if op == "send":
            await _send(api, args["channel"], msgspec.convert(args["out"], OutboundMessage))
            return None
        raise PluginError(f"unknown request {op!r}")

    def _init(self, pc: PluginConfig) -> dict[str, Any]:
        leaf = pc.module.rsplit(".", 1)[-1]
        sys.path.insert(0, PLUGIN_ROOT)
        try:
            module = importlib.import_module(leaf)
        except Exception as exc:  # the plugin's import-time code failed: name the type only
            raise PluginError(
                f"plugin '{pc.name}': module {pc.module} failed to import ({type(exc).__name__})",
                hint="see the plugin's log",
            ) from None
        manifest = parse_manifest(getattr(module, "MANIFEST", None), pc)
        caps = effective_capabilities(pc, manifest)
        config = validate_config(pc, manifest)
        entry_points(module, pc)
        self.module = module
        self.api = HostAPI(self.conn, pc.name, caps, config)
        return {
            "version": manifest.version,
            "description": manifest.description,
            "capabilities": sorted(manifest.capabilities),
        }

    async def _run(self, running: Any) -> None:
        """The plugin's ``run(api)``: if it raises, the broker is told and the process ends."""
        try:
            await running
        except Exception as exc:
            self.conn.send(Frame(kind="note", op="run_failed", args={"kind": type(exc).__name__}))
            if not self.failed.done():
                self.failed.set_result(exc)


def _crossing(op: str, exc: Exception) -> ErrorInfo:
    if isinstance(exc, MoltbotError):
        return error_info(exc, "")
    log.error("%s failed: %s", op, type(exc).__name__)
    # a crash in setup is not a refusal: Unavailable (not a PluginError) restarts the plugin
    kind = "Unavailable" if op in ("setup", "init") else "PluginError"
    return ErrorInfo(kind=kind, message=f"the plugin's {op} failed ({type(exc).__name__})")


async def _method(api: HostAPI, name: str, params: dict[str, Any]) -> Any:
    handler = api.methods.get(name)
    if handler is None:
        raise PluginError(f"plugin '{api.name}' has no method {name!r}")
    try:
        result = handler(params)
        if inspect.isawaitable(result):
            result = await result
    except MoltbotError:
        raise
    except Exception:
        raise PluginError(
            f"plugin '{api.name}': method {name} failed", hint="see the plugin's log"
        ) from None
    if not isinstance(result, dict):
        raise PluginError(f"plugin '{api.name}': method {name} did not return an object")
    return result


async def _send(api: HostAPI, channel: str, out: OutboundMessage) -> None:
    send = api.channels.get(channel)
    if send is None:
        raise PlatformRejected(f"plugin '{api.name}' has no channel {channel!r}")
    try:
        sent = send(out)
        if inspect.isawaitable(sent):
            await sent
    except (PlatformRejected, PlatformUnavailable):
        raise
    except Exception as exc:
        raise PlatformUnavailable(f"send failed ({type(exc).__name__})") from None


async def serve(rfd: int, wfd: int) -> None:
    conn = Conn(rfd, wfd, asyncio.get_running_loop())
    host = Host(conn)
    reader = threading.Thread(target=conn.read_forever, args=(host.on_call,), daemon=True)
    async with asyncio.TaskGroup() as tg:
        host.tg = tg
        reader.start()
        exc = await host.failed  # run(api) raised: the broker was told; end the process
        log.error("run failed: %s", type(exc).__name__)
        os._exit(1)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    # the protocol keeps private copies of stdin/stdout; the plugin's prints go to stderr
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    with contextlib.suppress(Exception):
        asyncio.run(serve(rfd, wfd))
    os._exit(1)


if __name__ == "__main__":
    main()
