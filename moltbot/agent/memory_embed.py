"""Embeddings for memory search: an OpenAI-compatible ``/v1/embeddings`` endpoint over httpx.

Vectors are cached by (model, sha256 of the text) in memory and in ``embeddings.json`` (0600)
in the memory folder, so a line is sent to the endpoint once. Any failure (no answer, an HTTP
error, a malformed body, a key that cannot be resolved) raises ``EmbeddingsUnavailable``;
the store then searches by keywords.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Protocol

import httpx
import msgspec

from moltbot.errors import EmbeddingsUnavailable, MoltbotError

CACHE_FILE = "embeddings.json"
MAX_CACHED = 20_000
BATCH = 64


class CacheFiles(Protocol):
    """Where the vector cache lives (``memory_files.PrivateFolder``)."""

    def read_bytes(self, name: str) -> bytes | None: ...

    def write_bytes(self, name: str, data: bytes) -> None: ...


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Answer(msgspec.Struct):
    data: list[_Item]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class Embedder:
    """``api_key`` is asked for when the endpoint is first called (it may raise our errors)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: Callable[[], str] | None = None,
        cache: CacheFiles | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.url, self.model, self._key, self.timeout_s = url, model, api_key, timeout_s
        self._files = cache
        self._cache: dict[str, list[float]] | None = None

    def _digest(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}\x00{text}".encode()).hexdigest()

    def _load(self) -> dict[str, list[float]]:
        if self._cache is None:
            self._cache = {}
            try:
                raw = self._files.read_bytes(CACHE_FILE) if self._files is not None else None
                if raw is not None:
                    self._cache = msgspec.json.decode(raw, type=dict[str, list[float]])
            except (OSError, MoltbotError, msgspec.DecodeError):
                self._cache = {}  # a broken cache is only a cache: start again
        return self._cache

    def _save(self, keep: set[str]) -> None:
        cache = self._load()
        if len(cache) > MAX_CACHED:  # keep what the current lines use
            self._cache = cache = {k: v for k, v in cache.items() if k in keep}
        if self._files is not None:
            try:
                self._files.write_bytes(CACHE_FILE, msgspec.json.encode(cache))
            except (OSError, MoltbotError):
                pass  # the vectors stay cached in this process

    async def _call(self, texts: list[str]) -> list[list[float]]:
        headers = {}
        try:
            if self._key is not None:
                headers["Authorization"] = f"Bearer {self._key()}"
        except MoltbotError as exc:
            raise EmbeddingsUnavailable(
                f"the embeddings API key is not available: {exc.user_message}", hint=exc.hint
            ) from None
        body = {"model": self.model, "input": texts}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                resp = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EmbeddingsUnavailable(
                f"the embeddings endpoint did not answer ({type(exc).__name__})"
            ) from None
        if resp.status_code != 200:
            raise EmbeddingsUnavailable(f"the embeddings endpoint answered {resp.status_code}")
        try:
            items = msgspec.json.decode(resp.content, type=_Answer).data
        except msgspec.DecodeError:
            raise EmbeddingsUnavailable("the embeddings endpoint sent a malformed body") from None
        if len(items) != len(texts):
            raise EmbeddingsUnavailable("the embeddings endpoint sent the wrong number of vectors")
        return [i.embedding for i in sorted(items, key=lambda i: i.index)]

    async def vectors(self, texts: list[str]) -> list[list[float]]:
        cache = self._load()
        keys = [self._digest(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        if missing:
            by_key = dict(zip(keys, texts, strict=True))
            for start in range(0, len(missing), BATCH):
                chunk = missing[start : start + BATCH]
                got = await self._call([by_key[k] for k in chunk])
                cache.update(zip(chunk, got, strict=True))
            self._save(set(keys))
        return [cache[k] for k in keys]

    async def similarities(self, query: str, texts: list[str]) -> list[float]:
        """Cosine similarity of ``query`` to each of ``texts`` (the query is not cached)."""
        (wanted,) = await self._call([query])
        return [cosine(wanted, v) for v in await self.vectors(texts)]
