"""Claude over the official ``anthropic`` SDK, streamed, with our own retry and model failover.

The SDK's own retries are off (``max_retries=0``): this adapter decides. 429, 529, 5xx, an
``overloaded_error`` sent inside the stream and connection errors are retried with exponential
backoff and jitter (honouring ``retry-after``) up to ``max_attempts`` per model, then the next
model in ``models`` is tried. 401/403 fail at once with a hint on how to set the key. A retry only
happens while nothing of that attempt was yielded, so streamed text is never duplicated.
Every SDK exception is mapped here, once; messages never carry ``str()`` of a foreign error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import anthropic
import httpx2

from moltbot.agent.providers.base import (
    Done,
    ModelRequest,
    ProviderEvent,
    TextDelta,
    ToolUse,
    backoff_delay,
)
from moltbot.errors import ProviderAuthError, ProviderError, ProviderOverloaded

log = logging.getLogger(__name__)

KEY_HINT = "set the key with `moltbot secrets set anthropic_api_key`"
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_RETRY_TYPES = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})

Sleep = Callable[[float], Awaitable[None]]


class _Retry(Exception):
    """Internal: this attempt failed in a retryable way before yielding anything."""

    def __init__(self, error: ProviderError, retry_after: float | None) -> None:
        super().__init__(error.user_message)
        self.error = error
        self.retry_after = retry_after


class _NextModel(Exception):
    """Internal: this model cannot serve the request (e.g. unknown model); try the next one."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.user_message)
        self.error = error


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # an HTTP date or garbage: fall back to our own backoff
        if value >= 0:
            return value
    return None


def map_error(exc: BaseException) -> Exception:
    """Map one SDK exception to ours (or to the internal retry/next-model signals)."""
    if isinstance(exc, anthropic.APIStatusError):
        status, kind = exc.status_code, exc.type or ""
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            return ProviderAuthError(
                f"the Anthropic API refused the key (HTTP {status})", hint=KEY_HINT
            )
        if status in _RETRY_STATUS or kind in _RETRY_TYPES:
            return _Retry(
                ProviderOverloaded(
                    f"the Anthropic API is overloaded or failing (HTTP {status}"
                    f"{', ' + kind if kind else ''})",
                    hint="try again in a minute",
                ),
                _retry_after(exc),
            )
        if status == 404 or kind == "not_found_error":
            return _NextModel(ProviderError("the configured model was not found (HTTP 404)"))
        return ProviderError(
            f"the Anthropic API rejected the request (HTTP {status}{', ' + kind if kind else ''})"
        )
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return _Retry(
            ProviderOverloaded(
                "could not reach the Anthropic API", hint="check the network and api_base"
            ),
            None,
        )
    return ProviderError("the Anthropic API returned something unexpected")


class AnthropicProvider:
    """A ``Provider`` for Claude. ``models`` is the ordered failover list."""

    def __init__(
        self,
        api_key: str,
        models: Sequence[str],
        *,
        base_url: str | None = None,
        max_attempts: int = 4,
        base_s: float = 0.5,
        max_s: float = 20.0,
        timeout_s: float = 120.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise ProviderAuthError("no Anthropic API key is configured", hint=KEY_HINT)
        if not models:
            raise ProviderError("no Anthropic model is configured")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._models = list(models)
        self._max_attempts = max_attempts
        self._base_s = base_s
        self._max_s = max_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def models(self) -> list[str]:
        return list(self._models)

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        last: ProviderError = ProviderOverloaded("the Anthropic API is overloaded")
        for model in self._models:
            for attempt in range(1, self._max_attempts + 1):
                started = False
                try:
                    async with contextlib.aclosing(self._attempt(model, request)) as events:
                        async for event in events:
                            started = True
                            yield event
                    return
                except (anthropic.AnthropicError, httpx2.TransportError, ValueError) as exc:
                    mapped = map_error(exc)
                    if isinstance(mapped, _Retry) and not started:
                        last = mapped.error
                        log.warning(
                            "anthropic %s attempt %d/%d failed: %s",
                            model,
                            attempt,
                            self._max_attempts,
                            type(exc).__name__,
                        )
                        if attempt < self._max_attempts:
                            await self._sleep(
                                backoff_delay(
                                    attempt,
                                    base_s=self._base_s,
                                    max_s=self._max_s,
                                    retry_after=mapped.retry_after,
                                    rng=self._rng,
                                )
                            )
                        continue
                    if isinstance(mapped, _NextModel) and not started:
                        last = mapped.error
                        break
                    if isinstance(mapped, (_Retry, _NextModel)):
                        raise mapped.error from None
                    raise mapped from None
            log.warning("anthropic model %s gave up; failing over", model)
        raise last

    async def _attempt(
        self, model: str, request: ModelRequest
    ) -> AsyncGenerator[ProviderEvent, None]:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": request.messages,
        }
        if request.system:
            kwargs["system"] = request.system
        if request.tools:
            kwargs["tools"] = request.tools
        async with self._client.messages.stream(**kwargs) as stream:
            async for event in stream:
                if event.type == "text":
                    if event.text:
                        yield TextDelta(text=event.text)
                elif event.type == "content_block_stop":
                    block = event.content_block
                    if block.type == "tool_use":
                        raw = block.input
                        yield ToolUse(
                            id=block.id,
                            name=block.name,
                            input=dict(raw) if isinstance(raw, dict) else {},
                        )
            final = await stream.get_final_message()
        yield Done(
            stop_reason=final.stop_reason or "end_turn",
            usage={
                "input_tokens": final.usage.input_tokens,
                "output_tokens": final.usage.output_tokens,
            },
        )
