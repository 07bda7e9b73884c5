"""Who a tool call acts for: the call's :class:`~moltbot.messages.ToolContext` and the sender's
own workspace folder.

The registry sets the context of the call it runs (a ``ContextVar``, so handlers keep their
``(args, session)`` signature); the file tools and bash then work in
``<workspace>/<channel>/<account>/<sender>`` (the gateway's operator: ``<workspace>/operator``),
so one person's files are out of reach of another person's turn. Folder names are made safe
(no separators, no dots at the start) and carry a short hash of the id, so two ids that clean
up to the same text still get two folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from moltbot.messages import ToolContext

OPERATOR = "operator"
_UNSAFE = re.compile(r"[^A-Za-z0-9_+@-]")
_NOBODY = ToolContext()  # frozen: the gateway operator, nothing untrusted yet
_CURRENT: ContextVar[ToolContext | None] = ContextVar("moltbot_tool_context", default=None)


def current() -> ToolContext:
    return _CURRENT.get() or _NOBODY


@contextlib.contextmanager
def acting_for(ctx: ToolContext | None) -> Iterator[None]:
    token = _CURRENT.set(ctx)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _safe(part: str) -> str:
    clean = _UNSAFE.sub("_", part)[:48] or "_"
    digest = hashlib.sha256(part.encode()).hexdigest()[:8]
    return f"{clean}-{digest}"


def relative_folder(sender: str) -> Path:
    """The sender's folder below the workspace root (``channel/account/id-hash``)."""
    if not sender:
        return Path(OPERATOR)
    channel, _, rest = sender.partition(":")
    account, _, sender_id = rest.partition(":")
    return Path(_safe(channel), _safe(account), _safe(sender_id))


def sender_folder(root: Path, sender: str) -> Path:
    """``root``'s folder of ``sender``, made (0755, owned like ``root`` when we are root)."""
    folder = root / relative_folder(sender)
    if not folder.is_dir():
        owner = os.stat(root) if os.geteuid() == 0 else None
        for part in [*reversed(folder.relative_to(root).parents), folder.relative_to(root)]:
            path = root / part
            if str(part) == "." or path.is_dir():
                continue
            path.mkdir(mode=0o755)
            if owner is not None:
                os.chown(path, owner.st_uid, owner.st_gid)
    return folder
