"""The Ray cluster token (Ray 2.60 turns token auth on for a head): where it is kept, whether
one exists, and creating the head's own."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def token_path() -> Path:
    """Where Ray (and so ``moltbot up``) keeps the cluster token: ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``. Other machines join with a copy of it."""
    env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(env).expanduser() if env else Path.home() / ".ray" / "auth_token"


def has_token() -> bool:
    """True when a Ray started from here would find a token (environment or token file)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    try:
        return bool(token_path().read_text().strip())
    except OSError:
        return False


def token_source() -> str:
    """What another machine needs a copy of to join: the token file (or the variable)."""
    return "$RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else str(token_path())


def ensure_token() -> Path | None:
    """Create the head's token (0600) unless one exists: ``ray start --head`` does not (only
    ``ray.init`` does), so on a fresh machine it would refuse to start. Returns the token file
    (None: the token comes from ``RAY_AUTH_TOKEN``, or token auth is off)."""
    mode = os.environ.get("RAY_AUTH_MODE", "token")  # set by ``actors``, as Ray reads it
    if mode.lower() != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = token_path()
    if not has_token():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # as Ray's own generator: 256 bits
    return path
