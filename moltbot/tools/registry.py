"""The tool registry the agent loop talks to: ``specs()`` for the model, ``call()`` to run one.

Each tool declares its input as a ``msgspec.Struct``; the JSON Schema the model sees is generated
from it, and the model's input is validated against it before the handler runs. Whatever happens,
``call`` returns a :class:`~moltbot.messages.ToolResult`: our own errors carry their safe
``user_message``, anything else becomes a generic message (never ``str()`` of the exception).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from moltbot.errors import MoltbotError
from moltbot.messages import ToolContext, ToolResult
from moltbot.tools.scope import acting_for

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 100_000
Handler = Callable[[Any, str], Awaitable[ToolResult | str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_type: type[msgspec.Struct]
    handler: Handler  # (validated input struct, session key) -> result


def input_schema(input_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema of a flat input struct, as an inline object schema (a fresh copy: the
    schema is made once per type, as tool lists are built for every turn)."""
    return copy.deepcopy(_schema(input_type))


@functools.cache
def _schema(input_type: type[msgspec.Struct]) -> dict[str, Any]:
    (ref,), components = msgspec.json.schema_components([input_type])
    schema = dict(components[ref["$ref"].rsplit("/", 1)[1]])
    schema.pop("title", None)
    schema["additionalProperties"] = False
    return schema


def _describe(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type", "value")
        parts.append(f"{name} ({kind}{', required' if name in required else ''})")
    return ", ".join(parts) or "no fields"


def cap_text(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... cut at {limit} characters]"


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._schemas: dict[str, dict[str, Any]] = {}

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        self._schemas[tool.name] = input_schema(tool.input_type)

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        """Anthropic tool definitions: name, description, input_schema."""
        return [
            {"name": t.name, "description": t.description, "input_schema": self._schemas[t.name]}
            for t in self._tools.values()
        ]

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        """Run one tool call acting for ``ctx`` (``moltbot.tools.scope``)."""
        with acting_for(ctx):
            return await self._call(name, input, session)

    async def _call(self, name: str, input: dict[str, Any], session: str) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            text = f"unknown tool {name!r}; available tools: {known}"
            return ToolResult(text=text, is_error=True)
        try:
            args = msgspec.convert(input, type=tool.input_type, strict=True)
        except msgspec.ValidationError:
            expected = _describe(self._schemas[name])
            return ToolResult(
                text=f"invalid input for {name}: expected an object with {expected}",
                is_error=True,
            )
        try:
            result = await tool.handler(args, session)
        except MoltbotError as exc:
            return ToolResult(
                text=cap_text(exc.user_message),
                is_error=True,
                code=exc.code,
                approval_id=getattr(exc, "approval_id", ""),
            )
        except Exception:
            log.exception("tool %s failed", name)
            return ToolResult(text=f"the {name} tool failed unexpectedly", is_error=True)
        if isinstance(result, str):
            return ToolResult(text=cap_text(result))
        return ToolResult(
            text=cap_text(result.text), is_error=result.is_error, untrusted=result.untrusted
        )
