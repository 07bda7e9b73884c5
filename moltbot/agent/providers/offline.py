"""The OFFLINE provider: no model, no key, no network. Deterministic, for first runs and tests.

Every reply starts with ``[offline]`` so nobody mistakes it for Claude.

- Plain text: replies ``[offline] you said: <text>``, streamed in a few deltas.
- Tool syntax: if the last user text contains ``!tool NAME {json}`` (NAME = letters, digits,
  ``_`` or ``-``; the JSON object runs to the end of that line, ``{}`` if omitted) it asks for a
  call of tool NAME with that input, e.g. ``!tool bash {"command": "ls"}``.
- After a tool result: replies ``[offline] tool NAME returned: <first 200 chars of the result>``.
- A summary request (system prompt starting with ``SUMMARISE_MARK``): replies
  ``[offline] summary: <the first 60 characters of each "user: " line, joined by " | ">``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncGenerator
from typing import Any

from moltbot.agent.providers.base import (
    SUMMARISE_MARK,
    Done,
    ModelRequest,
    ProviderEvent,
    TextDelta,
    ToolUse,
)

TOOL_SYNTAX = re.compile(r"!tool\s+([A-Za-z0-9_\-]+)[ \t]*(\{.*\})?[ \t]*$", re.MULTILINE)
RESULT_PREVIEW = 200
SUMMARY_LINE = 60


def _last_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return texts[-1] if texts else ""


def _result_text(block: dict[str, Any]) -> str:
    inner = block.get("content", "")
    if isinstance(inner, str):
        return inner
    return "".join(b.get("text", "") for b in inner if isinstance(b, dict))


def _tool_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for msg in messages:
        content = msg.get("content")
        if msg.get("role") == "assistant" and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
    return names


class OfflineProvider:
    """A ``Provider`` that echoes. ``chunk_chars`` sets the size of the streamed deltas."""

    def __init__(self, *, chunk_chars: int = 12) -> None:
        self._chunk = max(1, chunk_chars)

    @property
    def name(self) -> str:
        return "offline"

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        last = request.messages[-1] if request.messages else {"role": "user", "content": ""}
        content = last.get("content", "")
        results = [
            b
            for b in (content if isinstance(content, list) else [])
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        in_tokens = max(1, len(json.dumps(request.messages)) // 4)
        if request.system.startswith(SUMMARISE_MARK):
            said = [
                ln[6:].strip()[:SUMMARY_LINE]
                for ln in _last_text(content).splitlines()
                if ln.startswith("user: ")
            ]
            reply = "[offline] summary: " + " | ".join(said)
        elif results:
            names = _tool_names(request.messages)
            reply = "\n".join(
                f"[offline] tool {names.get(str(b.get('tool_use_id')), '?')} returned: "
                f"{_result_text(b)[:RESULT_PREVIEW]}"
                for b in results
            )
        else:
            text = _last_text(content)
            match = TOOL_SYNTAX.search(text)
            if match:
                name, raw = match.group(1), match.group(2) or "{}"
                try:
                    tool_input = json.loads(raw)
                except json.JSONDecodeError:
                    tool_input = None
                if isinstance(tool_input, dict):
                    digest = hashlib.sha256(
                        f"{len(request.messages)}:{name}:{raw}".encode()
                    ).hexdigest()[:16]
                    yield ToolUse(id=f"toolu_offline_{digest}", name=name, input=tool_input)
                    yield Done(
                        stop_reason="tool_use",
                        usage={"input_tokens": in_tokens, "output_tokens": len(raw) // 4 + 1},
                    )
                    return
                reply = f"[offline] could not read the input of tool {name}: not a JSON object"
            else:
                reply = f"[offline] you said: {text}"
        for i in range(0, len(reply), self._chunk):
            yield TextDelta(text=reply[i : i + self._chunk])
        yield Done(
            stop_reason="end_turn",
            usage={"input_tokens": in_tokens, "output_tokens": len(reply) // 4 + 1},
        )
