"""Build one model request from a session's transcript: system prompt, window, compaction.

- Tokens are approximated as ``len(json)/4``; no tokenizer is needed.
- The window is made of whole *turns*: a turn starts at a user message that holds no
  ``tool_result``. Whole turns are kept or dropped, so a ``tool_use`` is never split from its
  ``tool_result``. The newest turn is always kept; if it alone is over budget, its earlier
  tool results are cut to 1000 characters (the latest result stays whole).
- Turns that fall out of the window are replaced by a short deterministic summary (the first
  line of each dropped user message, newest kept, capped) put in front of the first kept message.
- Transcripts written by a crashed turn are repaired: consecutive same-role messages are merged,
  a ``tool_use`` without a result gets an error ``tool_result``, orphan results are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from moltbot.agent import trust
from moltbot.agent.providers.base import ModelRequest
from moltbot.messages import ToolResult

Message = dict[str, Any]
Block = dict[str, Any]

SUMMARY_LINES = 20
SUMMARY_LINE_CHARS = 120
INTERRUPTED = "no result: the tool call was interrupted"
TRUNCATED = "… [cut to fit the context window]"


IMAGE_TOKENS = 1600  # what the provider counts for an image at most (1568 px long edge)


def estimate_tokens(message: Message) -> int:
    content = message.get("content", "")
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "image" for b in content
    ):  # an image's base64 is not its token cost
        rest = [b for b in content if not (isinstance(b, dict) and b.get("type") == "image")]
        return IMAGE_TOKENS * (len(content) - len(rest)) + estimate_tokens({"content": rest})
    return math.ceil(len(msgspec.json.encode(content)) / 4)


def tool_result_block(tool_use_id: str, result: ToolResult, source: str = "tool") -> Block:
    """The block the model sees for a tool's result; untrusted text is marked as such."""
    text = trust.mark(source, result.text) if result.untrusted else result.text
    block: Block = {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}
    if result.is_error:
        block["is_error"] = True
    return block


def _blocks(content: Any) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [dict(b) for b in content if isinstance(b, dict) and b.get("type")]
    return []


def _ids(blocks: list[Block], kind: str, key: str) -> list[str]:
    return [str(b.get(key)) for b in blocks if b.get("type") == kind]


def normalize(history: list[Message]) -> list[Message]:
    """Return valid Messages-API messages (role + block list) from transcript records."""
    merged: list[Message] = []
    for record in history:
        role = record.get("role")
        if role not in ("user", "assistant"):
            continue
        blocks = _blocks(record.get("content"))
        if not blocks:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        elif merged or role == "user":
            merged.append({"role": role, "content": blocks})
    out: list[Message] = []
    for i, msg in enumerate(merged):
        if msg["role"] == "user":
            before = merged[i - 1]["content"] if i > 0 else []
            wanted = set(_ids(before, "tool_use", "id"))
            blocks = [
                b
                for b in msg["content"]
                if b.get("type") != "tool_result" or str(b.get("tool_use_id")) in wanted
            ]
            have = set(_ids(blocks, "tool_result", "tool_use_id"))
            missing = [
                {"type": "tool_result", "tool_use_id": t, "content": INTERRUPTED, "is_error": True}
                for t in _ids(before, "tool_use", "id")
                if t not in have
            ]
            # tool results must come first in the message that answers the tool calls
            blocks = missing + blocks
            blocks.sort(key=lambda b: b.get("type") != "tool_result")
            msg = {"role": "user", "content": blocks or [{"type": "text", "text": "(empty)"}]}
        out.append(msg)
        if msg["role"] == "assistant" and _ids(msg["content"], "tool_use", "id"):
            nxt = merged[i + 1] if i + 1 < len(merged) else None
            if nxt is None or nxt["role"] != "user":
                out.append(
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": t,
                                "content": INTERRUPTED,
                                "is_error": True,
                            }
                            for t in _ids(msg["content"], "tool_use", "id")
                        ],
                    }
                )
    return out


def turns(messages: list[Message]) -> list[list[Message]]:
    """Split normalized messages into turns (each starts at a user message with no result)."""
    groups: list[list[Message]] = []
    for msg in messages:
        starts = msg["role"] == "user" and not _ids(msg["content"], "tool_result", "tool_use_id")
        if starts or not groups:
            groups.append([msg])
        else:
            groups[-1].append(msg)
    return groups


def summarize(dropped: list[list[Message]]) -> str:
    lines: list[str] = []
    for group in dropped:
        texts = [b.get("text", "") for b in group[0]["content"] if b.get("type") == "text"]
        first = next((t.strip().splitlines()[0] for t in texts if t.strip()), "")
        if first:
            cut = first[:SUMMARY_LINE_CHARS]
            lines.append("- " + (cut + "…" if len(first) > SUMMARY_LINE_CHARS else cut))
    omitted = len(lines) - SUMMARY_LINES
    lines = lines[-SUMMARY_LINES:]
    head = f"[Summary of {len(dropped)} earlier turns that no longer fit; the user said:]"
    if omitted > 0:
        head += f"\n- ({omitted} older lines omitted)"
    return "\n".join([head, *lines])


def window(messages: list[Message], budget: int) -> tuple[list[Message], list[list[Message]]]:
    """Keep the newest whole turns within ``budget`` tokens; return (kept, dropped turns)."""
    groups = turns(messages)
    kept: list[list[Message]] = []
    used = 0
    for group in reversed(groups):
        cost = sum(estimate_tokens(m) for m in group)
        if kept and used + cost > budget:
            break
        kept.append(group)
        used += cost
    kept.reverse()
    dropped = groups[: len(groups) - len(kept)]
    return [m for g in kept for m in g], dropped


def shrink_results(messages: list[Message], budget: int) -> list[Message]:
    """Over budget with only the newest turn left: cut long tool results, except the last one."""
    if sum(estimate_tokens(m) for m in messages) <= budget:
        return messages
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if i < len(messages) - 1 and msg["role"] == "user":
            blocks = []
            for b in msg["content"]:
                body = b.get("content")
                if b.get("type") == "tool_result" and isinstance(body, str) and len(body) > 1000:
                    b = {**b, "content": body[:1000] + TRUNCATED}
                blocks.append(b)
            msg = {"role": "user", "content": blocks}
        out.append(msg)
    return out


def build_messages(history: list[Message], history_tokens: int) -> list[Message]:
    kept, dropped = window(normalize(history), history_tokens)
    kept = shrink_results(kept, history_tokens)
    if dropped and kept:
        first = kept[0]
        summary: Block = {"type": "text", "text": summarize(dropped)}
        kept[0] = {"role": first["role"], "content": [summary, *first["content"]]}
    return kept


def build_request(
    history: list[Message],
    *,
    system_prompt: str,
    tools: list[dict[str, Any]],
    max_tokens: int,
    history_tokens: int,
) -> ModelRequest:
    return ModelRequest(
        system=system_prompt,
        messages=build_messages(history, history_tokens),
        tools=list(tools),
        max_tokens=max_tokens,
    )
