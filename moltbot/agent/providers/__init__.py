"""Model providers: one protocol (``base``), Claude (``anthropic``), any OpenAI-compatible
server (``openai_compat``), the offline echo, and failover across them (``failover``), built
from the config by ``build``."""

from moltbot.agent.providers.base import (
    Done,
    ModelRequest,
    Provider,
    ProviderEvent,
    TextDelta,
    ToolUse,
)

__all__ = ["Done", "ModelRequest", "Provider", "ProviderEvent", "TextDelta", "ToolUse"]
