"""What every model provider speaks: one request in, a stream of small events out.

A provider adapter (Anthropic, OpenAI-compatible servers, the offline echo) maps its
SDK's stream and errors to these types once, so the turn loop never sees a foreign type.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import msgspec

from moltbot import backoff


class TextDelta(msgspec.Struct, frozen=True, kw_only=True, tag="text"):
    """A piece of assistant text, in stream order."""

    text: str


class ToolUse(msgspec.Struct, frozen=True, kw_only=True, tag="tool_use"):
    """A complete tool call the model asked for (its input already parsed)."""

    id: str
    name: str
    input: dict[str, Any]


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done"):
    """The end of one model call. ``usage`` has ``input_tokens`` and ``output_tokens``."""

    stop_reason: str
    usage: dict[str, int] = {}


ProviderEvent = TextDelta | ToolUse | Done

# a system prompt starting with this asks for a summary of the conversation in the message
# (``moltbot.agent.memory_turn``); the offline provider answers it deterministically
SUMMARISE_MARK = "[moltbot:summarise]"


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One model call. ``messages`` and ``tools`` are in the Anthropic Messages format."""

    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = []
    max_tokens: int = 4096


class Provider(Protocol):
    """Streams one model call. Raises only ``moltbot.errors.ProviderError`` subclasses."""

    @property
    def name(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]: ...


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    ``moltbot.backoff`` with "equal jitter" (half fixed, half random) capped at ``max_s``. A
    server's ``retry-after`` wins when it asks for longer, and is itself capped at
    ``max(max_s, 60)`` so a hostile or broken header cannot park a turn for hours.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    r = (rng or random).random()
    delay = backoff.delay(attempt - 1, base=base_s, cap=max_s, jitter=0.5, rand=r)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(max_s, 60.0))
    return max(0.0, delay)
