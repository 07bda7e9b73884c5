"""memory_write and memory_search: the agent's tools over its profile's ``MemoryStore``.

The memory is the owner's: a call made in a turn for anyone else (``scope.current().sender``
not an owner, as ``may_use`` says) is refused, so a stranger in a group cannot read what the
owner told, nor plant notes in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from moltbot.agent.memory import MAX_ENTRY_CHARS, MemoryStore
from moltbot.errors import AccessDenied
from moltbot.messages import ToolResult
from moltbot.tools import scope
from moltbot.tools.registry import Tool

NOT_OWNER = "the memory belongs to the owner of this assistant: only their turns may use it"

WRITE_DESCRIPTION = (
    'Save something to your long-term memory, kept across conversations. kind: "fact" for a '
    'lasting fact (MEMORY.md), "user" for something about the user (USER.md), "note" for '
    "today's notes (memory/YYYY-MM-DD.md). Save only what the user would want remembered; "
    "never secrets or passwords."
)
SEARCH_DESCRIPTION = (
    "Search your long-term memory (facts, what you know about the user, daily notes). Returns "
    "the best matching lines as file:line: text."
)


class MemoryWriteInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENTRY_CHARS)]
    kind: Literal["fact", "user", "note"] = "fact"


class MemorySearchInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5


def memory_tools(store: MemoryStore, may_use: Callable[[str], bool]) -> list[Tool]:
    """``may_use(sender)``: whether a turn for ``sender`` may use the memory."""

    def check() -> None:
        if not may_use(scope.current().sender):
            raise AccessDenied(NOT_OWNER)

    async def write(args: MemoryWriteInput, session: str) -> ToolResult:
        check()
        name = await asyncio.to_thread(store.remember, args.text, args.kind)
        return ToolResult(text=f"saved to {name}")

    async def search(args: MemorySearchInput, session: str) -> ToolResult:
        check()
        hits = await store.search(args.query, args.limit)
        if not hits:
            return ToolResult(text=f"nothing in memory matches {args.query!r}")
        found = "\n".join(f"{h.file}:{h.line}: {h.snippet}" for h in hits)
        # notes may hold words an earlier page or file put there: data, never orders
        return ToolResult(text=found, untrusted=True)

    return [
        Tool("memory_write", WRITE_DESCRIPTION, MemoryWriteInput, write),
        Tool("memory_search", SEARCH_DESCRIPTION, MemorySearchInput, search),
    ]
