"""Any OpenAI-compatible chat server (Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI) over
the official ``openai`` SDK, streamed, with the same retry and model failover as Claude.

The SDK's own retries are off: :func:`moltbot.agent.providers.retrying.stream_with_retries`
decides. 429 (honouring ``retry-after``), 408/409/5xx, an error sent inside the stream and
connection errors are retried with backoff up to ``max_attempts`` per model, a 404 (unknown
model) moves to the next model at once, 401/403 fail at once with the fix. Every SDK exception is
mapped here, once; messages never carry ``str()`` of a foreign error, a key, or the URL's path.

Streaming: text deltas are yielded as they come; a tool call's ``arguments`` arrive in pieces
over several chunks and are joined and parsed when the stream ends, then yielded as one
``ToolUse``. With no key configured no ``Authorization`` header is sent at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from moltbot.agent.providers.base import Done, ModelRequest, ProviderEvent, TextDelta, ToolUse
from moltbot.agent.providers.openai_format import stop_reason, to_messages, to_tools
from moltbot.agent.providers.retrying import (
    NextModel,
    Retry,
    RetryingProvider,
    RetryPolicy,
    Sleep,
    retry_after_header,
)
from moltbot.errors import ProviderAuthError, ProviderError, ProviderOverloaded, ProviderRateLimited

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 500, 502, 503, 504, 529})
_NO_KEY = "no-key"  # the SDK wants a string; the Authorization header is then omitted


def server_label(base_url: str) -> str:
    """``host:port`` of a base URL: enough to say which server, never a path or credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class ErrorMapper:
    """Maps one SDK exception to ours, naming the server (``host:port``) and the key's fix."""

    def __init__(self, where: str, key_hint: str) -> None:
        self.where = where
        self.key_hint = key_hint

    def __call__(self, exc: BaseException) -> Exception:
        where = self.where
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return ProviderAuthError(
                    f"the model server at {where} refused the key (HTTP {status})",
                    hint=self.key_hint,
                )
            if status == 429:
                after = retry_after_header(exc.response.headers)
                return Retry(
                    ProviderRateLimited(
                        f"the model server at {where} is rate limiting us (HTTP 429)",
                        retry_after=after,
                        hint="try again in a minute",
                    ),
                    after,
                )
            if status in _RETRY_STATUS or status >= 500:
                return Retry(
                    ProviderOverloaded(
                        f"the model server at {where} is overloaded or failing (HTTP {status})",
                        hint="try again in a minute",
                    ),
                    retry_after_header(exc.response.headers),
                )
            if status == 404:
                return NextModel(
                    ProviderError(
                        f"the model server at {where} does not know the model (HTTP 404)",
                        hint="check agent.providers[].models (e.g. `ollama list`)",
                    )
                )
            return ProviderError(
                f"the model server at {where} rejected the request (HTTP {status})"
            )
        if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
            return Retry(
                ProviderOverloaded(
                    f"could not reach the model server at {where}",
                    hint="is it running? check base_url",
                ),
                None,
            )
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return Retry(ProviderOverloaded(f"the model server at {where} failed mid-answer"), None)
        return ProviderError(f"the model server at {where} returned something unexpected")


class _Call:
    """One tool call being assembled from stream deltas."""

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments = ""

    def add(self, delta: Any) -> None:
        if delta.id and not self.id:
            self.id = delta.id
        fn = delta.function
        if fn is not None:
            if fn.name and not self.name:
                self.name = fn.name
            if fn.arguments:
                self.arguments += fn.arguments

    def event(self) -> ToolUse:
        try:
            parsed = json.loads(self.arguments) if self.arguments.strip() else {}
        except json.JSONDecodeError:
            log.warning("tool call %s: arguments are not JSON; sent as {}", self.name)
            parsed = {}
        return ToolUse(
            id=self.id or f"call_{uuid.uuid4().hex[:24]}",
            name=self.name,
            input=parsed if isinstance(parsed, dict) else {},
        )


class OpenAICompatProvider(RetryingProvider):
    """A ``Provider`` for an OpenAI-compatible server. ``models`` is the ordered failover list;
    ``api_key`` None or empty: the server needs none (typical of a local one)."""

    def __init__(
        self,
        base_url: str,
        models: Sequence[str],
        *,
        api_key: str | None = None,
        label: str = "openai",
        key_hint: str = "set api_key for this provider in agent.providers",
        max_attempts: int = 4,
        base_s: float = 0.5,
        max_s: float = 20.0,
        timeout_s: float = 300.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        policy = RetryPolicy(
            max_attempts=max_attempts, base_s=base_s, max_s=max_s, sleep=sleep, rng=rng
        )
        super().__init__(label, models, policy)
        self._map = ErrorMapper(server_label(base_url), key_hint)
        self._headers: dict[str, Any] = {} if api_key else {"Authorization": openai.Omit()}
        self._client = openai.AsyncOpenAI(
            api_key=api_key or _NO_KEY,
            base_url=base_url,
            organization=None,
            project=None,
            max_retries=0,
            timeout=timeout_s,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def map_error(self, exc: BaseException) -> Exception:
        return self._map(exc)

    def gave_up(self) -> ProviderError:
        return ProviderOverloaded(f"the model server at {self._map.where} is overloaded")

    catch = (openai.OpenAIError, httpx2.TransportError, ValueError)

    async def attempt(
        self, model: str, request: ModelRequest
    ) -> AsyncGenerator[ProviderEvent, None]:
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": to_messages(request),
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_headers": self._headers,
        }
        if request.tools:
            kwargs["tools"] = to_tools(request.tools)
        calls: dict[int, _Call] = {}
        finish: str | None = None
        usage = {"input_tokens": 0, "output_tokens": 0}
        stream = await self._client.chat.completions.create(**kwargs)
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = {
                        "input_tokens": chunk.usage.prompt_tokens or 0,
                        "output_tokens": chunk.usage.completion_tokens or 0,
                    }
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield TextDelta(text=delta.content)
                    for part in (delta.tool_calls if delta is not None else None) or []:
                        index = part.index if isinstance(part.index, int) else len(calls)
                        calls.setdefault(index, _Call()).add(part)
                    finish = choice.finish_reason or finish
        for index in sorted(calls):
            yield calls[index].event()
        yield Done(stop_reason=stop_reason(finish, bool(calls)), usage=usage)
