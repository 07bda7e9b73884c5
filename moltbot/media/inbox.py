"""The sender's inbox: files that came with messages, kept as data in the sender's workspace.

Files land in ``<workspace>/<sender folder>/inbox/`` under a name we make (``<day>-<hash>.<ext>``,
the extension from the sniffed type, ``bin`` for anything we will not vouch for), mode 0600 (never
executable), through the file tools' confinement (``Workspace.folder``): an ``inbox`` that the
sandbox replaced with a symbolic link to another folder is not followed out of the workspace.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

from moltbot.errors import MediaRefused
from moltbot.security.fsmodes import write_all
from moltbot.tools import scope
from moltbot.tools.files import Workspace

INBOX = "inbox"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def stored_name(msg_id: str, index: int, ext: str, received_at: float) -> str:
    """The same message and attachment always get the same name (a replay overwrites)."""
    day = time.strftime("%Y%m%d", time.gmtime(received_at or 0))
    digest = hashlib.sha256(f"{msg_id}\x00{index}".encode()).hexdigest()[:12]
    return f"{day}-{digest}.{ext}"


def workspace_of(root: Path, sender: str) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    return Workspace(scope.sender_folder(root, sender))


def save(ws: Workspace, name: str, data: bytes) -> str:
    """Write ``data`` as ``inbox/<name>`` (0600); the workspace-relative path."""
    with ws.folder((INBOX,), INBOX, create=True) as dir_fd:
        try:
            fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(name, dir_fd=dir_fd)
            fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o600)
            owner = os.stat(ws.root) if os.geteuid() == 0 else None
            if owner is not None:
                os.fchown(fd, owner.st_uid, owner.st_gid)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return f"{INBOX}/{name}"


def read(ws: Workspace, path: str, max_bytes: int) -> bytes:
    """A regular file of the workspace, at most ``max_bytes`` (MediaRefused when larger)."""
    with ws.file(path, os.O_RDONLY) as fd:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MediaRefused(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise MediaRefused(
                f"{path} is {st.st_size} bytes, more than the {max_bytes} allowed (media.max_bytes)"
            )
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise MediaRefused(f"{path} is larger than the {max_bytes} bytes allowed")
            chunks.append(chunk)
    return b"".join(chunks)
