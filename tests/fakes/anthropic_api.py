"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 speaking real SSE.

In tests::

    async with FakeAnthropicAPI() as api:
        api.script(text_reply("Hel", "lo"), overloaded())
        api.always("claude-a", overloaded())          # this model always answers 529
        provider = AnthropicProvider(api.api_key, ["claude-a"], base_url=api.base_url)
        ...
        api.requests[-1].messages                     # what the SDK really sent

For benchmarks: ``python -m tests.fakes.anthropic_api --port 8719 [--delay 0.01]``.

What answers a request, first match wins: ``always(model)``, ``script(..., model=)`` queue,
the global ``script()`` queue, else a default echo (``echo: <last user text>``).
A wrong key (``x-api-key`` or ``Authorization: Bearer``) always gets 401 ``authentication_error``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import itertools
import json
import signal
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.scripted import Scripted


@dataclass(frozen=True)
class TextBlock:
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class ToolBlock:
    name: str
    input: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """A successful answer. ``fail_after`` sends an SSE ``error`` after that many deltas."""

    blocks: tuple[TextBlock | ToolBlock, ...]
    stop_reason: str | None = None
    output_tokens: int = 0
    fail_after: int | None = None
    fail_type: str = "overloaded_error"


@dataclass(frozen=True)
class HttpError:
    status: int
    error_type: str
    message: str = "scripted error"
    retry_after: float | None = None


Response = Reply | HttpError


def text_reply(*chunks: str, fail_after: int | None = None) -> Reply:
    return Reply(blocks=(TextBlock(tuple(chunks)),), fail_after=fail_after)


def tool_reply(name: str, input: dict[str, Any], *text: str, id: str = "") -> Reply:
    blocks: list[TextBlock | ToolBlock] = [TextBlock(tuple(text))] if text else []
    blocks.append(ToolBlock(name, input, id))
    return Reply(blocks=tuple(blocks))


def overloaded() -> HttpError:
    return HttpError(529, "overloaded_error", "Overloaded")


def rate_limited(retry_after: float | None = None) -> HttpError:
    return HttpError(429, "rate_limit_error", "rate limited", retry_after)


def server_error() -> HttpError:
    return HttpError(500, "api_error", "internal error")


def unauthorized() -> HttpError:
    return HttpError(401, "authentication_error", "invalid x-api-key")


@dataclass
class RecordedRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    system: Any
    max_tokens: int
    stream: bool
    headers: dict[str, str]


class FakeAnthropicAPI(Scripted[Response, RecordedRequest]):
    def __init__(
        self,
        api_key: str = "sk-ant-test-key",
        chunk_delay_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.api_key, self.chunk_delay_s, self.host, self.port = api_key, chunk_delay_s, host, port
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropicAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- HTTP ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(HttpError(400, "invalid_request_error", "body is not JSON"))
        if not isinstance(body, dict) or not all(
            k in body for k in ("model", "max_tokens", "messages")
        ):
            return _error(HttpError(400, "invalid_request_error", "missing field"))
        self.requests.append(
            RecordedRequest(
                model=body["model"],
                messages=body["messages"],
                tools=body.get("tools", []),
                system=body.get("system"),
                max_tokens=body["max_tokens"],
                stream=bool(body.get("stream")),
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        if not self._authorized(request):
            return _error(unauthorized())
        bad_image = _image_problem(body["messages"])
        if bad_image:
            return _error(HttpError(400, "invalid_request_error", bad_image))
        picked = self.pick(body["model"]) or _echo(body["messages"])
        if isinstance(picked, HttpError):
            return _error(picked)
        in_tokens = max(1, len(json.dumps(body["messages"])) // 4)
        if body.get("stream"):
            return await self._stream(request, body["model"], picked, in_tokens)
        return web.json_response(self._message(body["model"], picked, in_tokens))

    def _authorized(self, request: web.Request) -> bool:
        # Older SDKs send ``x-api-key``; newer ones send the key as a bearer token.
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or bearer.removeprefix("Bearer ")
        return hmac.compare_digest(key.encode(), self.api_key.encode())

    def _message(self, model: str, reply: Reply, in_tokens: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for block in reply.blocks:
            if isinstance(block, TextBlock):
                content.append({"type": "text", "text": "".join(block.chunks)})
            else:
                content.append(self._tool_block(block, block.input))
        return {
            "id": f"msg_fake_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": _out_tokens(reply)},
        }

    def _tool_block(self, block: ToolBlock, input: Any) -> dict[str, Any]:
        tool_id = block.id or f"toolu_fake_{next(self._ids)}"
        return {"type": "tool_use", "id": tool_id, "name": block.name, "input": input}

    async def _stream(
        self, request: web.Request, model: str, reply: Reply, in_tokens: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            payload = json.dumps({"type": event, **data})
            await resp.write(f"event: {event}\ndata: {payload}\n\n".encode())

        start = self._message(model, Reply(blocks=()), in_tokens)
        start["stop_reason"] = None
        start["usage"]["output_tokens"] = 1
        await send("message_start", {"message": start})
        deltas = 0
        for index, block in enumerate(reply.blocks):
            if isinstance(block, TextBlock):
                await send(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
                pieces = [("text_delta", "text", c) for c in block.chunks]
            else:
                await send(
                    "content_block_start",
                    {"index": index, "content_block": self._tool_block(block, {})},
                )
                raw = json.dumps(block.input)
                mid = len(raw) // 2
                pieces = [("input_json_delta", "partial_json", p) for p in (raw[:mid], raw[mid:])]
            for kind, key, piece in pieces:
                if reply.fail_after is not None and deltas >= reply.fail_after:
                    await resp.write(
                        b"event: error\ndata: "
                        + json.dumps(
                            {
                                "type": "error",
                                "error": {"type": reply.fail_type, "message": "scripted"},
                            }
                        ).encode()
                        + b"\n\n"
                    )
                    await resp.write_eof()
                    return resp
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await send(
                    "content_block_delta", {"index": index, "delta": {"type": kind, key: piece}}
                )
                deltas += 1
            await send("content_block_stop", {"index": index})
        await send(
            "message_delta",
            {
                "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": _out_tokens(reply)},
            },
        )
        await send("message_stop", {})
        await resp.write_eof()
        return resp


def _stop_reason(reply: Reply) -> str:
    if reply.stop_reason:
        return reply.stop_reason
    return "tool_use" if any(isinstance(b, ToolBlock) for b in reply.blocks) else "end_turn"


def _out_tokens(reply: Reply) -> int:
    if reply.output_tokens:
        return reply.output_tokens
    size = sum(
        len("".join(b.chunks)) if isinstance(b, TextBlock) else len(json.dumps(b.input))
        for b in reply.blocks
    )
    return max(1, size // 4)


def _error(err: HttpError) -> web.Response:
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(err.retry_after)
    body = {"type": "error", "error": {"type": err.error_type, "message": err.message}}
    return web.json_response(body, status=err.status, headers=headers)


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_IMAGE_MAX_BYTES = 5 * 1024 * 1024


def _image_problem(messages: list[dict[str, Any]]) -> str:
    """What the real API refuses in an image block (base64 source, one of four media types,
    at most 5 MB); '' if none."""
    for message in messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "image":
                continue
            source = block.get("source") or {}
            if source.get("type") != "base64" or source.get("media_type") not in _IMAGE_TYPES:
                return "image source must be base64 with a supported media_type"
            try:
                data = base64.b64decode(source.get("data", ""), validate=True)
            except (ValueError, TypeError):
                return "image data is not valid base64"
            if len(data) > _IMAGE_MAX_BYTES:
                return "image exceeds 5 MB maximum"
    return ""


def _echo(messages: list[dict[str, Any]]) -> Reply:
    """Default answer: echo the last user text (or the last tool result), word by word."""
    last = messages[-1] if messages else {}
    content = last.get("content", "")
    text = content if isinstance(content, str) else ""
    prefix = "echo: "
    if isinstance(content, list):
        for block in content:
            if block.get("type") == "text":
                text = block.get("text", "")
            elif block.get("type") == "tool_result":
                prefix = "tool returned: "
                inner = block.get("content", "")
                text = inner if isinstance(inner, str) else json.dumps(inner)
    words = (prefix + text).split(" ")
    chunks = [w + " " for w in words[:-1]] + [words[-1]]
    return text_reply(*chunks)


async def _serve(host: str, port: int, delay: float, api_key: str) -> None:
    api = FakeAnthropicAPI(api_key=api_key, chunk_delay_s=delay, host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with api:
        print(f"fake anthropic api on {api.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake Anthropic Messages API (echo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each delta")
    parser.add_argument("--api-key", default="sk-ant-test-key")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.delay, args.api_key))


if __name__ == "__main__":
    main()
