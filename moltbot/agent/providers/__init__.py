"""Model providers: one protocol (``base``), Claude (``anthropic``), the offline echo."""

from moltbot.agent.providers.base import (
    Done,
    ModelRequest,
    Provider,
    ProviderEvent,
    TextDelta,
    ToolUse,
)

__all__ = ["Done", "ModelRequest", "Provider", "ProviderEvent", "TextDelta", "ToolUse"]
