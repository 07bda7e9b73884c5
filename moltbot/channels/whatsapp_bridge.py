"""The ``WaClient`` port carried over a Unix socket, so the WhatsApp client can run in a process
of its own (``channels.whatsapp[].bridge_socket``).

``serve_bridge(make_client, path)`` exposes any ``WaClient`` (neonize's, for real: ``python -m
moltbot.channels.whatsapp_bridge --account NAME --socket PATH``) and ``BridgeClient(path)`` is a
``WaClient`` that talks to it: whatsmeow's Go runtime then never loads into the channel actor,
and a crash of one does not take the other down. The socket lives in a 0700 folder of ours:
file permissions are the authentication. JSON text frames: ``{"op", "id", "args"}`` requests,
``{"id", "ok", "result" | "code", "message"}`` answers, ``{"ev": <WaEvent>}`` pushes (file
bytes travel base64-encoded, frames up to ``MAX_FRAME``). One connection drives one client;
its end stops that client.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed

from moltbot.channels.whatsapp_port import WaClient, WaEvent
from moltbot.errors import MediaRefused, MoltbotError, PlatformRejected, PlatformUnavailable
from moltbot.security.fsmodes import owned_private_dir

log = logging.getLogger(__name__)

_EVENT = msgspec.json.Decoder(WaEvent)
_OPS = ("send_text", "mark_read", "typing", "logout")
_ERRORS: dict[str, type[MoltbotError]] = {
    "platform_rejected": PlatformRejected,
    "platform_unavailable": PlatformUnavailable,
    "media_refused": MediaRefused,
}
MAX_FRAME = 160 * 1024 * 1024  # a file of 100 MB (WhatsApp's document limit), base64


class _Answer(msgspec.Struct):
    id: int
    ok: bool
    result: Any = None
    code: str = ""
    message: str = ""


class BridgeClient:
    """A ``WaClient`` whose other end is ``serve_bridge`` on ``path``."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[WaEvent | None] = asyncio.Queue(256)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    async def start(self, db_path: Path) -> None:
        try:
            self._ws = await unix_connect(self._path, max_size=MAX_FRAME)
        except OSError:
            raise PlatformUnavailable(
                "the WhatsApp bridge is not running",
                hint=f"start it: python -m moltbot.channels.whatsapp_bridge --socket {self._path}",
            ) from None
        self._reader = asyncio.create_task(self._read(self._ws), name="whatsapp-bridge")
        await self._call("start", str(db_path))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                data = msgspec.json.decode(raw)
                if "ev" in data:
                    await self._events.put(_EVENT.decode(msgspec.json.encode(data["ev"])))
                    continue
                answer = msgspec.convert(data, _Answer)
                fut = self._waiting.pop(answer.id, None)
                if fut is not None and not fut.done():
                    if answer.ok:
                        fut.set_result(answer.result)
                    else:
                        kind = _ERRORS.get(answer.code, PlatformUnavailable)
                        fut.set_exception(kind(answer.message or "the bridge refused"))
        except ConnectionClosed:
            pass
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(PlatformUnavailable("the WhatsApp bridge went away"))
            self._waiting.clear()
            with contextlib.suppress(asyncio.QueueFull):
                self._events.put_nowait(None)

    async def _call(self, op: str, *args: Any) -> Any:
        ws = self._ws
        if ws is None:
            raise PlatformUnavailable("the WhatsApp bridge is not connected")
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = fut
        try:
            await ws.send(msgspec.json.encode({"op": op, "id": req_id, "args": args}).decode())
        except ConnectionClosed:
            self._waiting.pop(req_id, None)
            raise PlatformUnavailable("the WhatsApp bridge went away") from None
        return await fut

    async def next_event(self) -> WaEvent:
        ev = await self._events.get()
        if ev is None:
            raise PlatformUnavailable("the WhatsApp bridge went away")
        return ev

    async def send_text(self, chat: str, text: str) -> str:
        return str(await self._call("send_text", chat, text))

    async def download(self, ref: str, max_bytes: int) -> bytes:
        data = await self._call("download", ref, max_bytes)
        return base64.b64decode(str(data))

    async def send_file(self, chat: str, name: str, mime: str, data: bytes, caption: str) -> str:
        encoded = base64.b64encode(data).decode()
        return str(await self._call("send_file", chat, name, mime, encoded, caption))

    async def mark_read(self, chat: str, sender: str, ids: list[str]) -> None:
        await self._call("mark_read", chat, sender, ids)

    async def typing(self, chat: str) -> None:
        await self._call("typing", chat)

    async def logout(self) -> None:
        await self._call("logout")

    async def stop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _drive(ws: ServerConnection, client: WaClient) -> None:
    async def pump() -> None:
        while True:
            ev = await client.next_event()
            await ws.send(msgspec.json.encode({"ev": ev}).decode())

    async def answer(req: dict[str, Any]) -> None:
        req_id, op, args = req.get("id"), req.get("op"), req.get("args") or []
        try:
            result: Any = None
            if op == "start":
                await client.start(Path(args[0]))
            elif op == "download":
                data = await client.download(str(args[0]), int(args[1]))
                result = base64.b64encode(data).decode()
            elif op == "send_file":
                chat, name, mime, encoded, caption = (str(a) for a in args)
                result = await client.send_file(
                    chat, name, mime, base64.b64decode(encoded), caption
                )
            elif op in _OPS:
                result = await getattr(client, str(op))(*args)
            else:
                raise PlatformRejected(f"unknown bridge operation {op!r}")
            reply: dict[str, Any] = {"id": req_id, "ok": True, "result": result}
        except MoltbotError as e:
            reply = {"id": req_id, "ok": False, "code": e.code, "message": e.user_message}
        await ws.send(msgspec.json.encode(reply).decode())

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump())
            async for raw in ws:
                tg.create_task(answer(msgspec.json.decode(raw)))
            raise ConnectionClosed(None, None)  # the other end left: stop pumping
    except* ConnectionClosed:
        pass
    finally:
        await client.stop()


async def serve_bridge(make_client: Callable[[], WaClient], path: str | Path) -> Server:
    """Serve ``WaClient``s (one per connection) on the Unix socket ``path``."""
    socket = Path(path)

    def prepare() -> None:
        owned_private_dir(socket.parent)
        socket.unlink(missing_ok=True)

    await asyncio.to_thread(prepare)

    async def handler(ws: ServerConnection) -> None:
        await _drive(ws, make_client())

    return await unix_serve(handler, str(socket), max_size=MAX_FRAME)


async def _main(account: str, socket: str) -> None:
    from moltbot.channels.whatsapp_neonize import NeonizeClient

    server = await serve_bridge(lambda: NeonizeClient(account), socket)
    log.info("whatsapp bridge for %s on %s", account, socket)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(args.account, args.socket))
