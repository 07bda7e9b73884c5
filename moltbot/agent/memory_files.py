"""The memory folder's files, reached without trusting its path.

The default memory folder lies in the tools' workspace. Sandboxed commands and the file tools
reach only a sender's own folder of it (``tools.scope``), never ``memory-profiles``; but were
anything able to swap ``memory-profiles`` for a symbolic link to another folder, the gateway
would then write (and chmod) there. So the folder is walked from an ``anchor`` (the workspace,
or the parent of ``agent.memory.dir``) one component at a time with ``O_NOFOLLOW``: a symbolic
link, or a folder owned by another user, is refused (``PermissionProblem``). Every read and
write then goes through the descriptor of the opened folder (``/proc/self/fd/N``), so a swap
after the walk cannot redirect it. Folders are made 0700, files 0600 (``atomic_write``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from moltbot.errors import PermissionProblem
from moltbot.security.fsmodes import atomic_write

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO
LOCK_FILE = ".lock"


def _regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


class PrivateFolder:
    """``folder`` below ``anchor`` (default: its parent). Names are ``/``-separated paths
    relative to ``folder`` and never hold ``..`` (they are ours, never the model's)."""

    def __init__(self, folder: Path, anchor: Path | None = None) -> None:
        self.folder = Path(folder)
        self.anchor = Path(anchor) if anchor is not None else self.folder.parent
        self._parts = self.folder.relative_to(self.anchor).parts
        if not self._parts or ".." in self._parts:
            raise ValueError("the memory folder must lie below its anchor")

    def _refuse(self, shown: str, problem: str) -> PermissionProblem:
        return PermissionProblem(
            f"memory folder {shown} {problem}", hint=f"move {shown} away; moltbot makes it again"
        )

    def _walk(self, sub: tuple[str, ...], create: bool) -> int | None:
        """An fd of ``folder/sub`` (the caller closes it); None when missing and not created."""
        if create:
            self.anchor.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.anchor, _DIR)
        except FileNotFoundError:
            return None
        shown = self.anchor
        try:
            for name in (*self._parts, *sub):
                shown = shown / name
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=fd)
                try:
                    nxt = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    return None
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._refuse(str(shown), "is not a real folder (a link?)") from None
                    raise
                os.close(fd)
                fd = nxt
                st = os.fstat(fd)
                if st.st_uid != os.geteuid():
                    raise self._refuse(str(shown), f"belongs to another user (uid {st.st_uid})")
                if st.st_mode & _OPEN_BITS:
                    os.fchmod(fd, 0o700)
            opened, fd = fd, -1
            return opened
        finally:
            if fd >= 0:
                os.close(fd)

    @contextlib.contextmanager
    def _dir(self, sub: tuple[str, ...], create: bool) -> Iterator[int | None]:
        fd = self._walk(sub, create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    @staticmethod
    def _split(name: str) -> tuple[tuple[str, ...], str]:
        *sub, leaf = name.split("/")
        return tuple(sub), leaf

    def read_bytes(self, name: str) -> bytes | None:
        sub, leaf = self._split(name)
        with self._dir(sub, create=False) as fd:
            if fd is None:
                return None
            try:
                file_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise self._refuse(f"{self.folder}/{name}", "is a symbolic link") from None
                raise
            with os.fdopen(file_fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise self._refuse(f"{self.folder}/{name}", "is not a regular file")
                return fh.read()

    def read(self, name: str) -> str:
        data = self.read_bytes(name)
        return data.decode("utf-8", errors="replace") if data is not None else ""

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace ``name`` atomically (0600) in the opened folder."""
        sub, leaf = self._split(name)
        with self._dir(sub, create=True) as fd:
            assert fd is not None
            atomic_write(Path(f"/proc/self/fd/{fd}") / leaf, data)

    def listing(self, sub: str) -> list[str]:
        """The regular files in ``folder/sub`` (no links), by name."""
        with self._dir(tuple(sub.split("/")), create=False) as fd:
            if fd is None:
                return []
            names = os.listdir(fd)
            return [n for n in names if _regular(os.stat(n, dir_fd=fd, follow_symlinks=False))]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock: writers in other processes wait."""
        with self._dir((), create=True) as fd:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            lock = os.open(LOCK_FILE, flags, 0o600, dir_fd=fd)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
            finally:
                os.close(lock)  # closing releases the lock
