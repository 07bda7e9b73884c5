"""Bearer tokens: generated from the OS CSPRNG, compared in constant time."""

from __future__ import annotations

import hmac
import secrets


def new_token() -> str:
    """A fresh URL-safe token carrying 256 bits of randomness (43 characters)."""
    return secrets.token_urlsafe(32)


def tokens_equal(a: str, b: str) -> bool:
    """Compare two tokens without leaking, through timing, where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
