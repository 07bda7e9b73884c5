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
import random
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anthropic
import httpx2

from moltbot.agent.providers.base import (
    Done,
    ModelRequest,
    ProviderEvent,
    TextDelta,
    ToolUse,
)
from moltbot.agent.providers.retrying import (
    NextModel,
    Retry,
    RetryingProvider,
    RetryPolicy,
    Sleep,
    retry_after_header,
)
from moltbot.errors import ProviderAuthError, ProviderError, ProviderOverloaded

KEY_HINT = "set the key with `moltbot secrets set anthropic_api_key`"
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_RETRY_TYPES = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})


def map_error(exc: BaseException) -> Exception:
    """Map one SDK exception to ours (or to the internal retry/next-model signals)."""
    if isinstance(exc, anthropic.APIStatusError):
        status, kind = exc.status_code, exc.type or ""
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            return ProviderAuthError(
                f"the Anthropic API refused the key (HTTP {status})", hint=KEY_HINT
            )
        if status in _RETRY_STATUS or kind in _RETRY_TYPES:
            return Retry(
                ProviderOverloaded(
                    f"the Anthropic API is overloaded or failing (HTTP {status}"
                    f"{', ' + kind if kind else ''})",
                    hint="try again in a minute",
                ),
                retry_after_header(exc.response.headers),
            )
        if status == 404 or kind == "not_found_error":
            return NextModel(ProviderError("the configured model was not found (HTTP 404)"))
        return ProviderError(
            f"the Anthropic API rejected the request (HTTP {status}{', ' + kind if kind else ''})"
        )
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return Retry(
            ProviderOverloaded(
                "could not reach the Anthropic API", hint="check the network and api_base"
            ),
            None,
        )
    return ProviderError("the Anthropic API returned something unexpected")


class AnthropicProvider(RetryingProvider):
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
        policy = RetryPolicy(
            max_attempts=max_attempts, base_s=base_s, max_s=max_s, sleep=sleep, rng=rng
        )
        super().__init__("anthropic", models, policy)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._client.close()

    def map_error(self, exc: BaseException) -> Exception:
        return map_error(exc)

    def gave_up(self) -> ProviderError:
        return ProviderOverloaded("the Anthropic API is overloaded")

    catch = (anthropic.AnthropicError, httpx2.TransportError, ValueError)

    async def attempt(
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
