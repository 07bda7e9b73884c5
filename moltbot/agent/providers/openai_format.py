"""moltbot's requests (Anthropic Messages shape) as OpenAI chat-completions messages and tools.

- a user text → ``{"role": "user", "content": text}``;
- an assistant turn → its text as ``content`` and each ``tool_use`` block as one of its
  ``tool_calls`` (``type: function``, the input as JSON ``arguments``);
- each ``tool_result`` block → a ``{"role": "tool", "tool_call_id": ..., "content": ...}``
  message right after the assistant message that asked (errors are prefixed ``[error]``);
- a tool spec ``{name, description, input_schema}`` → ``{"type": "function", "function":
  {name, description, parameters}}``.
Pure functions: no SDK types, so they are tested on plain data.
"""

from __future__ import annotations

import json
from typing import Any

from moltbot.agent.providers.base import ModelRequest

Message = dict[str, Any]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _tool_message(block: dict[str, Any]) -> Message:
    text = _text_of(block.get("content", ""))
    if block.get("is_error"):
        text = f"[error] {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}


def _assistant(blocks: list[dict[str, Any]]) -> Message:
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": str(b.get("id", "")),
            "type": "function",
            "function": {
                "name": str(b.get("name", "")),
                "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False),
            },
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message: Message = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def to_messages(request: ModelRequest) -> list[Message]:
    """The chat messages for ``request``: the system prompt first, then the history."""
    out: list[Message] = [{"role": "system", "content": request.system}] if request.system else []
    for msg in request.messages:
        blocks = _blocks(msg.get("content"))
        if msg.get("role") == "assistant":
            out.append(_assistant(blocks))
            continue
        # tool results answer the assistant message just before, so they come first
        out.extend(_tool_message(b) for b in blocks if b.get("type") == "tool_result")
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        images = [_image_part(b) for b in blocks if b.get("type") == "image"]
        if any(images):  # a vision model (llava ...) takes them as data URIs
            parts: list[Any] = [{"type": "text", "text": text}] if text else []
            out.append({"role": "user", "content": parts + [p for p in images if p]})
        elif text:
            out.append({"role": "user", "content": text})
    return out


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    if source.get("type") != "base64" or not source.get("data"):
        return None
    url = f"data:{source.get('media_type', 'image/jpeg')};base64,{source['data']}"
    return {"type": "image_url", "image_url": {"url": url}}


def to_tools(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools for moltbot's tool specs."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec["name"],
                "description": spec.get("description", ""),
                "parameters": spec.get("input_schema") or {"type": "object", "properties": {}},
            },
        }
        for spec in specs
    ]


def stop_reason(finish_reason: str | None, has_calls: bool) -> str:
    """moltbot's stop reason for an OpenAI ``finish_reason`` (some servers say ``stop`` even
    after tool calls, so the calls decide)."""
    if has_calls or finish_reason in ("tool_calls", "function_call"):
        return "tool_use"
    if finish_reason == "length":
        return "max_tokens"
    return "end_turn"
