"""What a turn does with the agent's memory.

- :func:`with_memory`: the system prompt plus what ``MemoryStore.recall`` gives for the user's
  text (bounded by ``agent.memory.recall_tokens``), wrapped as data (``trust.mark``): a note
  may carry words an earlier web page put there, and must not pose as instructions.
- :func:`summarise_cut`: when a session's history passes ``agent.history_tokens``, the older
  turns the window cuts are summarised by the model (one extra call) into the day's notes
  before they are cut (``context.build_messages`` still cuts them as before). A ``meta``
  record ``{"type": "memory_summary", "turns": N}`` in the transcript says that turns
  ``[0, N)`` are summarised, so a range is summarised once. To spare calls, a summary runs
  ahead to what a window of half the budget would cut: the next one is due only after about
  half a window of new conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from moltbot.agent import trust
from moltbot.agent.context import Message, normalize, turns, window
from moltbot.agent.loop import TranscriptLog
from moltbot.agent.memory import MAX_ENTRY_CHARS, MemoryStore
from moltbot.agent.providers.base import SUMMARISE_MARK, ModelRequest, Provider, TextDelta
from moltbot.errors import MoltbotError

log = logging.getLogger(__name__)

SUMMARY_TYPE = "memory_summary"
RESULT_CHARS = 300
SUMMARY_INSTRUCTION = (
    f"{SUMMARISE_MARK} You keep the assistant's notes. Summarise the earlier part of a "
    "conversation given below in a few short bullet points: what the user asked and told, "
    "facts learned, decisions, open tasks. Never copy secrets or passwords. Write only the "
    "summary."
)
MEMORY_HEAD = "# Your memory (saved notes: USER.md, MEMORY.md, daily notes)"


async def with_memory(memory: MemoryStore, system_prompt: str, text: str, budget: int) -> str:
    """``system_prompt`` with the memory recalled for ``text``; unchanged when none."""
    if budget <= 0:
        return system_prompt
    try:
        recalled = await memory.recall(text, budget)
    except (MoltbotError, OSError):
        log.warning("memory: recall failed; this turn runs without it", exc_info=True)
        return system_prompt
    if not recalled:
        return system_prompt
    return f"{system_prompt}\n\n{MEMORY_HEAD}\n{trust.mark('memory', recalled)}".lstrip()


def summarised_turns(history: list[dict[str, Any]]) -> int:
    """How many leading turns of this transcript are already summarised into notes."""
    done = [
        r.get("turns", 0)
        for r in history
        if r.get("role") == "meta" and r.get("type") == SUMMARY_TYPE
    ]
    return max((n for n in done if isinstance(n, int)), default=0)


def render(groups: list[list[Message]], max_chars: int) -> str:
    """Turns as ``user: ...`` / ``assistant: ...`` lines, the newest ``max_chars`` kept."""
    lines: list[str] = []
    for group in groups:
        for msg in group:
            for block in msg["content"]:
                kind = block.get("type")
                if kind == "text" and str(block.get("text", "")).strip():
                    lines.append(f"{msg['role']}: " + " ".join(str(block["text"]).split()))
                elif kind == "tool_use":
                    lines.append(f"assistant: (called tool {block.get('name')})")
                elif kind == "tool_result":
                    body = block.get("content")
                    body = body if isinstance(body, str) else str(body)
                    lines.append("tool result: " + " ".join(body.split())[:RESULT_CHARS])
    out = "\n".join(lines)
    return out if len(out) <= max_chars else "(older lines left out)\n" + out[-max_chars:]


async def summarise_cut(
    transcripts: TranscriptLog,
    provider: Provider,
    memory: MemoryStore,
    session: str,
    history: list[dict[str, Any]],
    text: str,
    *,
    history_tokens: int,
    max_tokens: int,
) -> int:
    """Summarise the turns the window is about to cut, once; return how many turns are
    summarised now (0 when nothing was due). Failures are logged, never raised: the turn
    goes on, and the range is tried again next turn."""
    messages = normalize([*history, {"role": "user", "content": text}])
    _kept, dropped = window(messages, history_tokens)
    done = summarised_turns(history)
    if len(dropped) <= done:
        return 0
    _kept, ahead = window(messages, max(1, history_tokens // 2))
    upto = max(len(dropped), len(ahead))
    rendered = render(turns(messages)[done:upto], history_tokens * 4)
    request = ModelRequest(
        system=SUMMARY_INSTRUCTION,
        messages=[{"role": "user", "content": [{"type": "text", "text": rendered}]}],
        max_tokens=max_tokens,
    )
    try:
        summary = ""
        async with contextlib.aclosing(provider.stream(request)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    summary += event.text
        summary = summary.strip()[:MAX_ENTRY_CHARS]
        if not summary:
            return 0
        heading = f"summary of turns {done + 1}-{upto} of {session}"
        await asyncio.to_thread(memory.remember, summary, "note", heading=heading)
        mark = {"role": "meta", "type": SUMMARY_TYPE, "turns": upto, "ts": time.time()}
        await transcripts.append(session, mark)
    except (MoltbotError, OSError):
        log.warning("memory: summarising older turns of a session failed", exc_info=True)
        return 0
    return upto - done
