"""Audit records written by CLI commands, straight into ``$MOLTBOT_HOME/audit/audit.jsonl``.

The exclusive ``flock`` of :class:`~moltbot.security.audit.AuditLog` makes this safe beside a
running store actor appending to the same file. A command that changes the config file or the
vault opens the log *before* it changes anything (a damaged log stops it there, unchanged) and
appends one ``config_change`` record per change once it is done. A command that reads a secret
to use it passes :func:`reads_by` to ``Vault.open`` as ``on_read``: the ``secret_read`` record is
written before the value is used, and if it cannot be written the value is not returned.
Records carry names (a JSON path, a secret's name) and actions, never a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.security.audit import AuditLog, secret_read_fields
from moltbot.security.vault import ReadHook


class Changes:
    """The ``config_change`` records of one CLI command (``by`` names it: ``cli:init``)."""

    def __init__(self, by: str, home: Path | None = None) -> None:
        self.by = by
        self.log = AuditLog(paths.audit_file(home))  # checks the chain's head now

    def record(self, target: str, action: str, **detail: Any) -> None:
        """``target`` is ``config`` (with ``file`` and ``json_path``) or ``vault`` (with
        ``secret_name`` when one secret changed)."""
        fields = {"target": target, "action": action, **detail, "by": self.by}
        self.log.append("config_change", fields)


def reads_by(reader: str, home: Path | None = None) -> ReadHook:
    """A vault ``on_read`` hook recording each secret this command reads (``cli:chat``)."""

    def hook(name: str) -> None:
        AuditLog(paths.audit_file(home)).append("secret_read", secret_read_fields(name, reader))

    return hook
