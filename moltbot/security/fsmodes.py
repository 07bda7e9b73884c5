"""Private files and folders: 0700 folders, 0600 files, atomic writes.

``ensure_private_dir`` and ``atomic_write`` are for writers; ``check_private`` reports problems
(for ``moltbot doctor``) and never raises; ``require_private`` raises ``PermissionProblem``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from moltbot.errors import PermissionProblem

_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def _fix_command(path: Path, is_dir: bool) -> str:
    return f"chmod {'700' if is_dir else '600'} {path}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or tighten an existing folder to 0700.

    Raises ``PermissionProblem`` when ``path`` is not a folder or its mode cannot be fixed.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise PermissionProblem(
            f"{path} exists but is not a folder", hint=f"move {path} away, then retry"
        ) from None
    st = path.stat()
    if st.st_mode & _OPEN_BITS:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise PermissionProblem(
                f"{path} is accessible by group/other and could not be fixed ({exc.strerror})",
                hint=_fix_command(path, True),
            ) from None
        if path.stat().st_mode & _OPEN_BITS:  # pragma: no cover - exotic filesystems
            raise PermissionProblem(
                f"{path} is still accessible by group/other", hint=_fix_command(path, True)
            )
    return path


def owned_private_dir(path: Path, *, any_mode: bool = False) -> Path:
    """``path`` as a folder only we may enter: made 0700 when missing; an existing one must be
    a real folder (no symlink), ours and 0700, else ``PermissionProblem`` (refused, not fixed:
    another user could have planted it, or read what lives there). ``any_mode``: inside such a
    folder, a program of ours may open its own modes (Ray makes its temp dir 0777)."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionProblem(f"{path} is not a folder", hint=f"move {path} away, then retry")
    if st.st_uid != os.geteuid():
        raise PermissionProblem(
            f"{path} belongs to another user (uid {st.st_uid})",
            hint=f"remove {path} (it must be made by the user who runs moltbot)",
        )
    if st.st_mode & _OPEN_BITS and not any_mode:
        raise PermissionProblem(
            f"{path} is open to group/other (mode {stat.S_IMODE(st.st_mode):o})",
            hint=_fix_command(path, True),
        )
    return path


def short_private_base() -> Path:
    """``/tmp/moltbot-<uid>``: a short private folder of ours (0700, refused if planted), for
    Unix sockets whose home is too deep for a socket path."""
    return owned_private_dir(Path(tempfile.gettempdir()) / f"moltbot-{os.geteuid()}")


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, unlinks) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new file, never a part.

    The temporary file is created in the same folder with mode 0600 (then set to ``mode``),
    written, fsynced, renamed over ``path``, and the folder is fsynced.
    """
    path = Path(path)
    parent = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != 0o600:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(parent)


def _problem(path: Path, st: os.stat_result) -> str | None:
    is_dir = stat.S_ISDIR(st.st_mode)
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OPEN_BITS:
        kind = "folder" if is_dir else "file"
        return (
            f"{kind} {path} has mode {mode:04o}: group/other can access it; "
            f"fix: {_fix_command(path, is_dir)}"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by you; fix: chown $(id -u) {path}"
    return None


def check_private(path: Path) -> list[str]:
    """Problems with ``path`` (and, for a folder, the entries directly in it). Never raises.

    A missing path has no problems. Each problem names the path and the command that fixes it.
    """
    path = Path(path)
    problems: list[str] = []
    try:
        st = path.stat()
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return [f"{path} cannot be checked ({exc.strerror})"]
    found = _problem(path, st)
    if found:
        problems.append(found)
    if stat.S_ISDIR(st.st_mode):
        try:
            children = sorted(path.iterdir())
        except OSError as exc:
            return [*problems, f"{path} cannot be listed ({exc.strerror})"]
        for child in children:
            try:
                found = _problem(child, child.stat())
            except OSError:
                continue
            if found:
                problems.append(found)
    return problems


def require_private(path: Path) -> None:
    """Raise ``PermissionProblem`` if ``path`` itself is open to group/other (or not ours)."""
    path = Path(path)
    st = path.stat()
    is_dir = stat.S_ISDIR(st.st_mode)
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OPEN_BITS:
        raise PermissionProblem(
            f"{path} has mode {mode:04o}: group/other can access it",
            hint=_fix_command(path, is_dir),
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionProblem(
            f"{path} is owned by uid {st.st_uid}, not by you", hint=f"chown $(id -u) {path}"
        )
