"""An agent profile's memory: plain Markdown files in one private folder.

- ``USER.md``: what the owner told about themselves (``kind="user"``);
- ``MEMORY.md``: lasting facts (``kind="fact"``);
- ``memory/YYYY-MM-DD.md``: the day's notes (``kind="note"``, and the summaries of older turns
  that no longer fit a session's window, see ``moltbot.agent.memory_summary``).

The folder is 0700, every file 0600 and replaced atomically, reached without following links
(``memory_files.PrivateFolder``); a lock file serialises writers (the tools actor and the
agent may write at once). Files are read afresh on every search, so an
edit by hand counts at once. One ``MemoryStore`` per folder: one per agent profile.

``search`` ranks lines: by embeddings when an embedder is configured (falling back to keywords
when it fails), else by keywords (case-insensitive terms). ``recall`` is what a turn is given:
USER.md, then MEMORY.md, then the best hits for the turn's text, within a token budget.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from moltbot.agent.context import estimate_tokens
from moltbot.agent.memory_embed import Embedder
from moltbot.agent.memory_files import PrivateFolder
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import Config
from moltbot.errors import EmbeddingsUnavailable, ToolError

log = logging.getLogger(__name__)

Kind = Literal["fact", "user", "note"]
USER_FILE = "USER.md"
FACTS_FILE = "MEMORY.md"
NOTES_DIR = "memory"
MAX_ENTRY_CHARS = 4000
SNIPPET_CHARS = 240
_TERM = re.compile(r"\w+", re.UNICODE)
DEFAULT_PROFILE = "default"
_HEADS = {USER_FILE: "# About the user\n", FACTS_FILE: "# Lasting facts\n"}


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """One matching line: ``file`` relative to the memory folder, ``line`` 1-based."""

    file: str
    line: int
    snippet: str
    score: float


def terms(text: str) -> list[str]:
    """The distinct lower-case words of ``text`` (single letters are ignored)."""
    seen: dict[str, None] = {}
    for word in _TERM.findall(text.lower()):
        if len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)


def keyword_score(query_terms: list[str], line: str) -> float:
    """Distinct terms found weigh most, then how often they occur; 0 when none is found."""
    low = line.lower()
    counts = [low.count(t) for t in query_terms]
    found = sum(1 for c in counts if c)
    return 0.0 if not found else found * 10.0 + min(sum(counts), 10)


def text_tokens(text: str) -> int:
    """The project's token estimate (``context.estimate_tokens``) of a piece of text."""
    return estimate_tokens({"content": text})


def _snippet(line: str) -> str:
    line = line.strip()
    return line if len(line) <= SNIPPET_CHARS else line[: SNIPPET_CHARS - 1] + "…"


class MemoryStore:
    """``anchor``: the trusted folder ``folder`` is walked from (``PrivateFolder``)."""

    def __init__(
        self,
        folder: Path,
        clock: Clock = SYSTEM_CLOCK,
        embedder: Embedder | None = None,
        *,
        anchor: Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.files = PrivateFolder(self.folder, anchor)
        self.clock = clock
        self.embedder = embedder

    # --- files ---------------------------------------------------------------------------
    def today(self) -> str:
        return datetime.fromtimestamp(self.clock.time()).strftime("%Y-%m-%d")

    def notes_name(self, day: str | None = None) -> str:
        return f"{NOTES_DIR}/{day or self.today()}.md"

    def read(self, name: str) -> str:
        return self.files.read(name)

    def names(self) -> list[str]:
        """Every memory file, USER.md and MEMORY.md first, then the notes newest first."""
        names = [n for n in (USER_FILE, FACTS_FILE) if self.read(n)]
        days = sorted((n for n in self.files.listing(NOTES_DIR) if n.endswith(".md")), reverse=True)
        return names + [f"{NOTES_DIR}/{d}" for d in days]

    def _append(self, name: str, head: str, text: str) -> None:
        with self.files.locked():
            old = self.read(name) or head
            if not old.endswith("\n"):
                old += "\n"
            self.files.write_bytes(name, (old + text).encode("utf-8"))

    def remember(self, text: str, kind: Kind = "fact", *, heading: str = "") -> str:
        """Save ``text``; return the file it went to (relative to the folder)."""
        text = text.strip()
        if not text:
            raise ToolError("there is nothing to remember: the text is empty")
        if len(text) > MAX_ENTRY_CHARS:
            raise ToolError(
                f"a memory entry holds at most {MAX_ENTRY_CHARS} characters; save a shorter summary"
            )
        if kind == "note":
            name = self.notes_name()
            stamp = time.strftime("%H:%M", time.localtime(self.clock.time()))
            title = f"{stamp} {heading}".strip()
            # a line of the note may not pose as a heading (headings are ours, never searched)
            body = re.sub(r"(?m)^(\s*)#", r"\1\\#", text)
            self._append(name, f"# Notes of {self.today()}\n", f"\n## {title}\n{body}\n")
            return name
        name = USER_FILE if kind == "user" else FACTS_FILE
        self._append(name, _HEADS[name], "- " + " ".join(text.split()) + "\n")
        return name

    # --- search --------------------------------------------------------------------------
    def lines(self) -> Iterator[tuple[str, int, str]]:
        """(file, 1-based line number, text) of every searchable line: no headings/blanks."""
        for name in self.names():
            for number, line in enumerate(self.read(name).splitlines(), 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    yield name, number, line

    def keyword_search(self, query: str, limit: int = 5) -> list[Hit]:
        wanted = terms(query)
        if not wanted or limit <= 0:
            return []
        hits = []
        for order, (name, number, line) in enumerate(self.lines()):
            score = keyword_score(wanted, line)
            if score:
                hits.append(
                    (
                        score,
                        -order,
                        Hit(file=name, line=number, snippet=_snippet(line), score=score),
                    )
                )
        hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
        return [h[2] for h in hits[:limit]]

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        """The best ``limit`` lines for ``query``: by embeddings when configured and working,
        else by keywords."""
        if self.embedder is not None and query.strip() and limit > 0:
            found = await asyncio.to_thread(lambda: list(self.lines()))
            if not found:
                return []
            try:
                scores = await self.embedder.similarities(query, [line for *_, line in found])
            except EmbeddingsUnavailable as exc:
                log.warning(
                    "memory: embeddings search failed (%s); using keywords", exc.user_message
                )
            else:
                ranked = sorted(zip(scores, found, strict=True), key=lambda p: -p[0])[:limit]
                return [
                    Hit(file=n, line=i, snippet=_snippet(t), score=round(s, 4))
                    for s, (n, i, t) in ranked
                ]
        return await asyncio.to_thread(self.keyword_search, query, limit)

    # --- recall --------------------------------------------------------------------------
    async def recall(self, query: str, max_tokens: int, *, hits: int = 8) -> str:
        """USER.md, MEMORY.md, then the best notes for ``query``, within ``max_tokens``
        (estimated as the context does). Lines that do not fit are left out whole."""
        parts: list[str] = []
        used = 0

        def add(line: str) -> bool:
            nonlocal used
            cost = text_tokens(line + "\n")
            if used + cost > max_tokens:
                return False
            parts.append(line)
            used += cost
            return True

        for name, title in ((USER_FILE, "About the user"), (FACTS_FILE, "Lasting facts")):
            body = [
                ln for ln in self.read(name).splitlines() if ln.strip() and not ln.startswith("#")
            ]
            if body and add(f"## {title} ({name})"):
                for line in body:
                    add(line)
        found = await self.search(query, hits * 2)  # facts are in already: keep notes
        notes = [h for h in found if h.file.startswith(NOTES_DIR)][:hits]
        if notes and add("## Notes that may be related"):
            for hit in notes:
                add(f"- [{hit.file}:{hit.line}] {hit.snippet.lstrip('- ')}")
        return "\n".join(parts)


def memory_folder(
    cfg: Config, workspace: Path | None = None, profile: str = DEFAULT_PROFILE
) -> Path:
    """``agent.memory.dir``, else ``<workspace>/memory-profiles/<profile>``."""
    if cfg.agent.memory.dir:
        return Path(cfg.agent.memory.dir).expanduser()
    ws = workspace or cfg.tools.workspace_path()
    return ws / "memory-profiles" / profile


def memory_store(
    cfg: Config,
    workspace: Path | None = None,
    *,
    vault_get: Callable[[str], str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    profile: str = DEFAULT_PROFILE,
) -> MemoryStore:
    """A profile's store (``cfg``: that profile's config, ``profiles.profile_config``), with an
    embedder when ``agent.memory`` names one. The embeddings key is resolved when first needed
    (``vault_get`` defaults to the vault)."""
    mem = cfg.agent.memory
    folder = memory_folder(cfg, workspace, profile)
    anchor = None if mem.dir else (workspace or cfg.tools.workspace_path())
    store = MemoryStore(folder, clock, anchor=anchor)
    if mem.embeddings_url and mem.embeddings_model:
        ref = mem.embeddings_api_key

        def key() -> str:
            assert ref is not None
            return resolve_secret(
                ref, vault_get or _vault_get, at="$.agent.memory.embeddings_api_key"
            )

        store.embedder = Embedder(
            mem.embeddings_url,
            mem.embeddings_model,
            api_key=key if ref else None,
            cache=store.files,
        )
    return store


def _vault_get(name: str) -> str:
    from moltbot.security.vault import Vault  # only when a secret: reference is used

    return Vault.open().get(name)
