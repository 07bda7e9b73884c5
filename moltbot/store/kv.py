"""Small durable values of the store (``state/kv/<key>``): key rules, size cap, atomic replace.

A key is a plain name (``pairing.telegram.main``), never a path; a value is bytes of at most
``KV_MAX_BYTES``. A write replaces the whole value atomically (temp file, fsync, rename, fsync
folder), so a reader sees the old or the new value, never a part. Synchronous: the store actor
runs these calls off its event loop.
"""

from __future__ import annotations

import re
from pathlib import Path

from moltbot.errors import BadRequest
from moltbot.security.fsmodes import atomic_write

KV_MAX_BYTES = 1024 * 1024

_KV_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def valid_kv_key(key: object) -> bool:
    """A key of the store's small blobs: a plain name (``pairing.telegram.main``), no paths."""
    return isinstance(key, str) and bool(_KV_KEY.match(key)) and ".." not in key


class KeyValueStore:
    """Values under one private folder, one file per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_for(self, key: str) -> Path:
        """The file of ``key``; ``BadRequest`` for anything but a plain name."""
        if not valid_kv_key(key):
            raise BadRequest(
                "a store key is 1-128 characters of letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit, without '..'"
            )
        return self.folder / key

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, None when it was never written."""
        target = self.path_for(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, value: bytes) -> None:
        """Replace the value of ``key`` atomically; ``BadRequest`` for a bad key or value."""
        target = self.path_for(key)
        if not isinstance(value, bytes) or len(value) > KV_MAX_BYTES:
            raise BadRequest(f"a stored value is bytes of at most {KV_MAX_BYTES} bytes")
        atomic_write(target, value)
