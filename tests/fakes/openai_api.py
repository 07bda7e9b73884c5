"""A fake OpenAI-compatible chat-completions server (what Ollama, vLLM, llama.cpp's server and
LM Studio speak): a real HTTP server on 127.0.0.1, written from OpenAI's public API reference.

In tests::

    async with FakeOpenAIAPI() as api:                # api_key=None: any key, or none, is fine
        api.script(text("Hel", "lo"), http_error(503))
        api.always("llama-a", http_error(500))        # this model always answers 500
        ...
        api.requests[-1].messages                     # what the SDK really sent

- ``POST /v1/chat/completions``: with ``"stream": true`` it answers Server-Sent Events, one
  ``data: {chat.completion.chunk}`` per piece: text in ``choices[0].delta.content``, each tool
  call's ``arguments`` split over several chunks of ``delta.tool_calls`` (the first carries its
  ``id`` and ``function.name``), a chunk with ``finish_reason``, then, when
  ``stream_options.include_usage`` is set, a chunk with empty ``choices`` and the ``usage``, and
  finally ``data: [DONE]``. Without ``stream`` it answers one ``chat.completion`` object.
- ``GET /v1/models``: the models it knows.
- A wrong ``Authorization: Bearer`` key gets 401 (only when ``api_key`` is set).
- Planned failures: ``http_error(status, retry_after=)`` answers an OpenAI-style error body.
What answers, first match wins: ``always(model)``, the ``script(..., model=)`` queue, the global
``script()`` queue, else an echo of the last user (or tool) message.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.scripted import Scripted


@dataclass(frozen=True)
class Call:
    """A tool call the fake model makes; ``pieces`` is how many chunks its arguments take;
    ``raw``, if set, is sent as the arguments instead (e.g. broken JSON from a small model)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    pieces: int = 3
    raw: str | None = None

    def text(self) -> str:
        return json.dumps(self.arguments) if self.raw is None else self.raw


@dataclass(frozen=True)
class Reply:
    """A successful answer. ``fail_after``: send an ``error`` chunk after that many text chunks
    (what a server does when the model crashes mid-answer) and end the stream."""

    chunks: tuple[str, ...] = ()
    calls: tuple[Call, ...] = ()
    finish_reason: str = ""
    fail_after: int | None = None


@dataclass(frozen=True)
class HttpError:
    status: int
    message: str = "scripted error"
    retry_after: float | None = None


Response = Reply | HttpError


def text(*chunks: str) -> Reply:
    return Reply(chunks=chunks)


def tool_call(name: str, arguments: dict[str, Any], *chunks: str, id: str = "") -> Reply:
    return Reply(chunks=chunks, calls=(Call(name, arguments, id),))


def http_error(status: int, retry_after: float | None = None) -> HttpError:
    return HttpError(status, f"scripted {status}", retry_after)


@dataclass
class RecordedRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    body: dict[str, Any]
    headers: dict[str, str]


class FakeOpenAIAPI(FakeServer, Scripted[Response, RecordedRequest]):
    def __init__(
        self,
        api_key: str | None = None,  # None: like a local server, any key (or none) is accepted
        models: tuple[str, ...] = ("llama-test",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        Scripted.__init__(self)
        self.api_key, self.models, self.host, self.port = api_key, models, host, port
        self._ids = itertools.count(1)
        self.transcripts: dict[bytes, str] = {}
        self.transcriptions: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # --- HTTP ------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)

    async def _transcriptions(self, request: web.Request) -> web.Response:
        """``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``): answers
        ``{"text": ...}``, the text from ``transcripts[<file bytes>]`` (else a default);
        each call is kept in ``transcriptions`` (model, filename, bytes)."""
        if not self._authorized(request):
            return _error(HttpError(401, "Incorrect API key provided"))
        form = await request.post()
        upload = form.get("file")
        model = form.get("model")
        if not isinstance(upload, web.FileField) or not isinstance(model, str):
            return _error(HttpError(400, "file and model are required"))
        data = upload.file.read()
        self.transcriptions.append({"model": model, "filename": upload.filename, "data": data})
        return web.json_response({"text": self.transcripts.get(data, "(inaudible)")})

    async def _ctl_inject(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.script(text(*body.get("chunks", [])), model=body.get("model"))
        return web.json_response({"ok": True})

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response([r.body for r in self.requests])

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        failure = http_error(int(body["status"]), body.get("retry_after"))
        self.script(*[failure] * int(body.get("count", 1)), model=body.get("model"))
        return web.json_response({"ok": True})

    def _authorized(self, request: web.Request) -> bool:
        if self.api_key is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), self.api_key.encode())

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(HttpError(401, "Incorrect API key provided"))
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(HttpError(400, "body is not JSON"))
        if not isinstance(body, dict) or not {"model", "messages"} <= body.keys():
            return _error(HttpError(400, "model and messages are required"))
        self.requests.append(
            RecordedRequest(
                model=body["model"],
                messages=body["messages"],
                tools=body.get("tools", []),
                body=body,
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        if not self._authorized(request):
            return _error(HttpError(401, "Incorrect API key provided"))
        picked = self.pick(body["model"]) or _echo(body["messages"])
        if isinstance(picked, HttpError):
            return _error(picked)
        usage = _usage(body["messages"], picked)
        ident = f"chatcmpl-fake-{next(self._ids)}"
        if body.get("stream"):
            options = body.get("stream_options") or {}
            with_usage = bool(options.get("include_usage"))
            return await self._stream(request, ident, body["model"], picked, usage, with_usage)
        return web.json_response(self._completion(ident, body["model"], picked, usage))

    def _call_ids(self, reply: Reply) -> list[str]:
        return [c.id or f"call_fake_{next(self._ids)}" for c in reply.calls]

    def _completion(
        self, ident: str, model: str, reply: Reply, usage: dict[str, int]
    ) -> dict[str, Any]:
        calls = [
            {
                "id": cid,
                "type": "function",
                "function": {"name": c.name, "arguments": c.text()},
            }
            for cid, c in zip(self._call_ids(reply), reply.calls, strict=True)
        ]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.chunks) or None}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": _finish(reply)}
        return {**_envelope(ident, model, "chat.completion"), "choices": [choice], "usage": usage}

    async def _stream(
        self,
        request: web.Request,
        ident: str,
        model: str,
        reply: Reply,
        usage: dict[str, int],
        with_usage: bool,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)
        head = _envelope(ident, model, "chat.completion.chunk")

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**head, "choices": [choice]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for n, piece in enumerate(reply.chunks):
            if n == reply.fail_after:
                error = {"message": "the model crashed", "type": "server_error", "code": None}
                await resp.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                await resp.write_eof()
                return resp
            await send({"content": piece})
        for index, (cid, call) in enumerate(zip(self._call_ids(reply), reply.calls, strict=True)):
            raw = call.text()
            step = max(1, -(-len(raw) // max(1, call.pieces)))
            first = {"id": cid, "type": "function", "function": {"name": call.name}}
            await send({"tool_calls": [{"index": index, **first}]})
            for start in range(0, len(raw), step):
                part = {"index": index, "function": {"arguments": raw[start : start + step]}}
                await send({"tool_calls": [part]})
        await send({}, _finish(reply))
        if with_usage:
            await resp.write(
                f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n".encode()
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _envelope(ident: str, model: str, kind: str) -> dict[str, Any]:
    return {"id": ident, "object": kind, "created": int(time.time()), "model": model}


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.calls else "stop")


def _usage(messages: list[dict[str, Any]], reply: Reply) -> dict[str, int]:
    prompt = max(1, len(json.dumps(messages)) // 4)
    out = len("".join(reply.chunks)) + sum(len(json.dumps(c.arguments)) for c in reply.calls)
    completion = max(1, out // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(err: HttpError) -> web.Response:
    headers = {"retry-after": str(err.retry_after)} if err.retry_after is not None else {}
    kind = "invalid_request_error" if err.status < 500 else "server_error"
    body = {"error": {"message": err.message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=err.status, headers=headers)


def _echo(messages: list[dict[str, Any]]) -> Reply:
    """Default answer: echo the last message (a tool's result, or the user's text)."""
    last = messages[-1] if messages else {}
    content = last.get("content") or ""
    said = content if isinstance(content, str) else json.dumps(content)
    prefix = "tool returned: " if last.get("role") == "tool" else "echo: "
    words = (prefix + said).split(" ")
    return text(*[w + " " for w in words[:-1]], words[-1])


async def _serve(host: str, port: int, api_key: str | None) -> None:
    async with FakeOpenAIAPI(api_key=api_key, host=host, port=port) as api:
        print(f"fake openai-compatible api on {api.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible chat API (echo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="required bearer key (default: none)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
