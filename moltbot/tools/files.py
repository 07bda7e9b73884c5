"""read_file, write_file, edit_file, list_dir: confined to the workspace folder.

Confinement does not trust path strings. A path is split into components (``..`` refused,
absolute paths accepted only inside the workspace or under ``/workspace``, the name the sandbox
uses). Folders are then opened one component at a time with ``dir_fd``; after each step the real
path of the *opened* descriptor (``/proc/self/fd``) must still be inside the workspace, so a
symlink in a parent folder, or one swapped in mid-walk, cannot lead outside. The last component is
opened with ``O_NOFOLLOW``; when it is a symlink its target is resolved and accepted only if it
stays inside. Hard-linked files, devices and FIFOs are refused.

The sandbox (``moltbot.sandbox``) runs as another uid than the gateway; when the gateway runs as
root, files and folders created here get the owner of the workspace root, so sandboxed commands
can change them too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec

from moltbot.errors import PathEscape, ToolError
from moltbot.messages import ToolResult
from moltbot.sandbox import SANDBOX_WORKSPACE
from moltbot.security.fsmodes import write_all
from moltbot.tools import scope
from moltbot.tools.registry import Tool

MAX_READ_CHARS = 100_000
MAX_WRITE_BYTES = 1024 * 1024
MAX_EDIT_BYTES = 4 * 1024 * 1024
MAX_LINE_CHARS = 10_000
MAX_LIST_ENTRIES = 1000
_MAX_LINK_HOPS = 8
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Workspace:
    """A folder the file tools may touch, and nothing outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve(strict=True)
        if not self.root.is_dir():
            raise ValueError("the workspace must be a folder")
        self._root = str(self.root)

    # --- path handling -------------------------------------------------------------------
    def parts(self, path: str) -> tuple[str, ...]:
        """Workspace-relative components of ``path``; PathEscape when it points elsewhere."""
        if "\x00" in path:
            raise PathEscape("paths may not contain NUL characters")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            for base in (PurePosixPath(SANDBOX_WORKSPACE), PurePosixPath(self._root)):
                if pure.is_relative_to(base):
                    pure = pure.relative_to(base)
                    break
            else:
                raise PathEscape(
                    f"{path} is outside the workspace; use a path relative to the workspace"
                )
        parts = tuple(p for p in pure.parts if p not in ("", "."))
        if ".." in parts:
            raise PathEscape(f"{path}: `..` is not allowed; use a path inside the workspace")
        return parts

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root + "/")

    def _check_fd(self, fd: int, shown: str) -> None:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not self._inside(real):
            raise PathEscape(f"{shown} leads outside the workspace (through a symbolic link)")

    def _owner(self) -> tuple[int, int] | None:
        """Who should own what we create: the workspace root's owner, when we are root."""
        if os.geteuid() != 0:
            return None
        st = os.stat(self._root)
        return st.st_uid, st.st_gid

    # --- opening -------------------------------------------------------------------------
    @contextmanager
    def folder(self, parts: tuple[str, ...], shown: str, *, create: bool = False) -> Iterator[int]:
        """An fd of the folder ``parts``, checked to be inside after every component."""
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            owner = self._owner() if create else None
            for name in parts:
                if create:
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                        if owner:
                            os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                    except FileExistsError:
                        pass
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
                self._check_fd(fd, shown)
            yield fd
        except FileNotFoundError as exc:
            raise ToolError(f"no such file or folder: {shown}") from exc
        except NotADirectoryError as exc:
            raise ToolError(f"{shown}: a part of this path is not a folder") from exc
        except PermissionError as exc:
            raise ToolError(f"{shown}: permission denied") from exc
        finally:
            os.close(fd)

    @contextmanager
    def file(self, path: str, flags: int, *, create: bool = False, hops: int = 0) -> Iterator[int]:
        """An fd of the regular file at ``path`` (``flags`` e.g. ``os.O_RDONLY``)."""
        parts = self.parts(path)
        shown = "/".join(parts) or "."
        if not parts:
            raise ToolError("a file path is needed, not the workspace folder itself")
        with self.folder(parts[:-1], shown, create=create) as dir_fd:
            fd, target = self._open_last(dir_fd, parts[-1], flags, shown, create)
        if target is not None:  # the last component was a symlink that stays inside
            if hops >= _MAX_LINK_HOPS:
                raise ToolError(f"{shown}: too many levels of symbolic links")
            with self.file(target, flags, create=create, hops=hops + 1) as fd2:
                yield fd2
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{shown} is not a regular file")
            if st.st_nlink > 1:
                raise PathEscape(f"{shown} is hard-linked; refusing to touch it")
            yield fd
        finally:
            os.close(fd)

    def _open_last(
        self, dir_fd: int, name: str, flags: int, shown: str, create: bool
    ) -> tuple[int, str | None]:
        base = flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            try:
                return os.open(name, base, dir_fd=dir_fd), None
            except FileNotFoundError:
                if not create:
                    raise
                fd = os.open(name, base | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
                owner = self._owner()
                if owner:
                    os.fchown(fd, *owner)
                return fd, None
        except FileNotFoundError as exc:
            raise ToolError(f"no such file: {shown}") from exc
        except IsADirectoryError as exc:
            raise ToolError(f"{shown} is a folder, not a file") from exc
        except PermissionError as exc:
            raise ToolError(f"{shown}: permission denied") from exc
        except OSError as exc:
            # ELOOP (O_NOFOLLOW met a symlink) or EEXIST (O_EXCL met a dangling one)
            if exc.errno not in (errno.ELOOP, errno.EEXIST):
                raise ToolError(f"{shown} could not be opened") from exc
            try:
                link = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                raise ToolError(f"{shown} could not be opened") from exc
        # The last component is a symbolic link: follow it only if it stays inside.
        folder = os.readlink(f"/proc/self/fd/{dir_fd}")
        real = os.path.realpath(os.path.join(folder, link))
        if not self._inside(real):
            raise PathEscape(f"{shown} is a symbolic link pointing outside the workspace")
        return -1, real


# --- the operations ----------------------------------------------------------------------
def read_text(ws: Workspace, path: str, offset: int = 1, limit: int = 2000) -> str:
    """Lines ``offset`` .. ``offset+limit-1`` (1-based) of a UTF-8 text file."""
    with ws.file(path, os.O_RDONLY) as fd, os.fdopen(os.dup(fd), "rb") as fh:
        if b"\x00" in fh.read(8192):
            return f"{path} looks like a binary file ({os.fstat(fd).st_size} bytes); not shown"
        fh.seek(0)
        out: list[str] = []
        size = 0
        line_no = 0
        more = False
        while raw := fh.readline(MAX_LINE_CHARS * 4):
            line_no += 1
            if line_no < offset:
                continue
            if len(out) >= limit or size >= MAX_READ_CHARS:
                more = True
                break
            line = raw.decode("utf-8", "replace")
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + " [line cut]\n"
            out.append(line)
            size += len(line)
    text = "".join(out)
    if more:
        text += f"\n[more lines follow; read again with offset={offset + len(out)}]"
    return text or f"{path} has no lines from {offset} on"


def write_text(ws: Workspace, path: str, content: str) -> str:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(f"content is {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
    with ws.file(path, os.O_WRONLY, create=True) as fd:
        os.ftruncate(fd, 0)
        write_all(fd, data)
    return f"wrote {len(data)} bytes to {'/'.join(ws.parts(path))}"


def edit_text(ws: Workspace, path: str, old: str, new: str) -> str:
    if not old:
        raise ToolError("`old` must not be empty")
    with ws.file(path, os.O_RDWR) as fd:
        size = os.fstat(fd).st_size
        if size > MAX_EDIT_BYTES:
            raise ToolError(f"{path} is {size} bytes; edit_file handles up to {MAX_EDIT_BYTES}")
        raw = _read_all(fd, size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(f"{path} is not UTF-8 text") from exc
        count = text.count(old)
        if count == 0:
            raise ToolError(f"`old` was not found in {path}; read the file and copy it exactly")
        if count > 1:
            raise ToolError(
                f"`old` occurs {count} times in {path}; include more surrounding text "
                "so it occurs exactly once"
            )
        data = text.replace(old, new, 1).encode("utf-8")
        os.lseek(fd, 0, os.SEEK_SET)
        write_all(fd, data)
        os.ftruncate(fd, len(data))
    return f"edited {path}"


def list_folder(ws: Workspace, path: str = ".") -> str:
    parts = ws.parts(path)
    shown = "/".join(parts) or "."
    lines: list[str] = []
    with ws.folder(parts, shown) as fd:
        entries = sorted(os.scandir(fd), key=lambda e: e.name)
        for entry in entries[:MAX_LIST_ENTRIES]:
            if entry.is_symlink():
                lines.append(f"{entry.name}@")
            elif entry.is_dir(follow_symlinks=False):
                lines.append(f"{entry.name}/")
            else:
                size = entry.stat(follow_symlinks=False).st_size
                lines.append(f"{entry.name}  ({size} bytes)")
    if len(entries) > MAX_LIST_ENTRIES:
        lines.append(f"[{len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
    return "\n".join(lines) if lines else f"{shown} is empty"


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, max(size, 65536)):
        chunks.append(chunk)
    return b"".join(chunks)


# --- tool definitions ----------------------------------------------------------------------
_PATH_HELP = "Path relative to the workspace (or starting with /workspace/)."
PathArg = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, description=_PATH_HELP)]


class ReadFileInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: PathArg
    offset: Annotated[int, msgspec.Meta(ge=1, description="First line to return (1-based).")] = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000, description="Number of lines.")] = 2000


class WriteFileInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: PathArg
    content: Annotated[str, msgspec.Meta(description="The whole new content of the file.")]


class EditFileInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: PathArg
    old: Annotated[str, msgspec.Meta(min_length=1, description="Exact text; must occur once.")]
    new: Annotated[str, msgspec.Meta(description="The text that replaces it.")]


class ListDirInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(max_length=4096, description=_PATH_HELP)] = "."


def file_tools(root: Path) -> list[Tool]:
    """The file tools over ``root``: each call works in the folder of the sender it acts for
    (``moltbot.tools.scope``). What ``read_file`` returns is untrusted content."""

    def ws() -> Workspace:
        return Workspace(scope.sender_folder(root, scope.current().sender))

    async def read_file(args: ReadFileInput, session: str) -> ToolResult:
        return ToolResult(text=read_text(ws(), args.path, args.offset, args.limit), untrusted=True)

    async def write_file(args: WriteFileInput, session: str) -> str:
        return write_text(ws(), args.path, args.content)

    async def edit_file(args: EditFileInput, session: str) -> str:
        return edit_text(ws(), args.path, args.old, args.new)

    async def list_dir(args: ListDirInput, session: str) -> str:
        return list_folder(ws(), args.path)

    return [
        Tool("read_file", "Read a UTF-8 text file from the workspace.", ReadFileInput, read_file),
        Tool(
            "write_file",
            "Create or overwrite a file in the workspace (parent folders are created).",
            WriteFileInput,
            write_file,
        ),
        Tool(
            "edit_file",
            "Replace one exact, unique occurrence of `old` with `new` in a workspace file.",
            EditFileInput,
            edit_file,
        ),
        Tool("list_dir", "List a folder of the workspace.", ListDirInput, list_dir),
    ]
