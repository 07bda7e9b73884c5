"""Where moltbot keeps its files. ``MOLTBOT_HOME`` moves the whole folder (``~/.moltbot``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("MOLTBOT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".moltbot"


def config_file(base: Path | None = None) -> Path:
    return (base or home()) / "config.json"


def credentials_dir(base: Path | None = None) -> Path:
    return (base or home()) / "credentials"


def key_file(base: Path | None = None) -> Path:
    return credentials_dir(base) / "vault.key"


def sessions_dir(base: Path | None = None) -> Path:
    return (base or home()) / "sessions"


def state_dir(base: Path | None = None) -> Path:
    """Journals, pairing, approvals: durable state owned by the store actor."""
    return (base or home()) / "state"


def workspace_dir(base: Path | None = None) -> Path:
    return (base or home()) / "workspace"


def run_dir(base: Path | None = None) -> Path:
    """Runtime files of a running tree (pid, Ray address)."""
    return (base or home()) / "run"


def audit_file(base: Path | None = None) -> Path:
    return (base or home()) / "audit" / "audit.jsonl"
