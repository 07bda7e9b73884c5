"""File tools stay inside the workspace: `..`, absolute paths and symlink escapes are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moltbot.errors import PathEscape, ToolError
from moltbot.tools.files import Workspace, edit_text, list_folder, read_text, write_text


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Workspace, Path, Path]:
    ws_dir = tmp_path / "ws"
    ws_dir.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the-secret\n")
    return Workspace(ws_dir), ws_dir, outside


def test_write_read_roundtrip_creates_parents(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    assert "wrote 6 bytes" in write_text(ws, "a/b/c.txt", "hello\n")
    assert (root / "a" / "b" / "c.txt").read_text() == "hello\n"
    assert read_text(ws, "a/b/c.txt") == "hello\n"
    assert read_text(ws, "/workspace/a/b/c.txt") == "hello\n"
    assert read_text(ws, str(root / "a" / "b" / "c.txt")) == "hello\n"
    assert read_text(ws, "./a//b/c.txt") == "hello\n"


def test_overwrite_truncates(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    write_text(ws, "f.txt", "a long first version\n")
    write_text(ws, "f.txt", "short\n")
    assert (root / "f.txt").read_text() == "short\n"


def test_read_offset_and_limit(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    (root / "lines.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = read_text(ws, "lines.txt", offset=3, limit=2)
    assert out.startswith("line 3\nline 4\n")
    assert "offset=5" in out
    assert read_text(ws, "lines.txt", offset=10) == "line 10\n"


def test_binary_file_is_not_dumped(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    (root / "bin").write_bytes(b"\x00\x01\x02" * 10)
    assert "binary" in read_text(ws, "bin")


@pytest.mark.parametrize("path", ["../outside/secret.txt", "a/../../outside/secret.txt", ".."])
def test_dotdot_is_refused(setup: tuple[Workspace, Path, Path], path: str) -> None:
    ws, _, _ = setup
    with pytest.raises(PathEscape):
        read_text(ws, path)
    with pytest.raises(PathEscape):
        write_text(ws, path, "x")


def test_absolute_path_outside_is_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, _, outside = setup
    for path in (str(outside / "secret.txt"), "/etc/passwd", "/etc/shadow"):
        with pytest.raises(PathEscape) as err:
            read_text(ws, path)
        assert "outside the workspace" in err.value.user_message
    with pytest.raises(PathEscape):
        write_text(ws, "/tmp/moltbot-should-not-exist", "x")
    assert not Path("/tmp/moltbot-should-not-exist").exists()


def test_symlinked_parent_folder_escape_is_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, outside = setup
    (root / "link").symlink_to(outside)
    with pytest.raises(PathEscape):
        read_text(ws, "link/secret.txt")
    with pytest.raises(PathEscape):
        write_text(ws, "link/new.txt", "x")
    assert not (outside / "new.txt").exists()
    with pytest.raises(PathEscape):
        list_folder(ws, "link")


def test_symlinked_final_component_escape_is_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, outside = setup
    (root / "evil.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathEscape):
        read_text(ws, "evil.txt")
    with pytest.raises(PathEscape):
        write_text(ws, "evil.txt", "overwritten")
    with pytest.raises(PathEscape):
        edit_text(ws, "evil.txt", "the-secret", "x")
    assert (outside / "secret.txt").read_text() == "the-secret\n"
    (root / "etc-passwd").symlink_to("/etc/passwd")
    with pytest.raises(PathEscape):
        read_text(ws, "etc-passwd")


def test_dangling_symlink_outside_cannot_be_created_through(
    setup: tuple[Workspace, Path, Path],
) -> None:
    ws, root, outside = setup
    (root / "dangling").symlink_to(outside / "created-through-link.txt")
    with pytest.raises(PathEscape):
        write_text(ws, "dangling", "x")
    assert not (outside / "created-through-link.txt").exists()


def test_relative_symlink_escape_is_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("../../outside/secret.txt")
    with pytest.raises(PathEscape):
        read_text(ws, "sub/up")


def test_symlinks_inside_the_workspace_are_followed(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside\n")
    (root / "alias").symlink_to("real")
    (root / "f-link").symlink_to("real/f.txt")
    assert read_text(ws, "alias/f.txt") == "inside\n"
    assert read_text(ws, "f-link") == "inside\n"
    write_text(ws, "f-link", "changed\n")
    assert (root / "real" / "f.txt").read_text() == "changed\n"
    assert (root / "f-link").is_symlink()


def test_hard_links_are_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, outside = setup
    os.link(outside / "secret.txt", root / "hard.txt")
    with pytest.raises(PathEscape):
        read_text(ws, "hard.txt")


def test_devices_are_refused(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    os.mkfifo(root / "fifo")
    with pytest.raises(ToolError):
        read_text(ws, "fifo")


def test_edit_requires_exactly_one_occurrence(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    (root / "code.py").write_text("x = 1\ny = 1\nx = 1\n")
    with pytest.raises(ToolError) as err:
        edit_text(ws, "code.py", "x = 1", "x = 2")
    assert "2 times" in err.value.user_message
    with pytest.raises(ToolError) as err:
        edit_text(ws, "code.py", "z = 1", "z = 2")
    assert "not found" in err.value.user_message
    assert (root / "code.py").read_text() == "x = 1\ny = 1\nx = 1\n"
    edit_text(ws, "code.py", "y = 1", "y = 22222")
    assert (root / "code.py").read_text() == "x = 1\ny = 22222\nx = 1\n"
    edit_text(ws, "code.py", "y = 22222\n", "")
    assert (root / "code.py").read_text() == "x = 1\nx = 1\n"


def test_list_dir(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, outside = setup
    (root / "d").mkdir()
    (root / "f.txt").write_text("abc")
    (root / "l").symlink_to(outside)
    out = list_folder(ws, ".").splitlines()
    assert out == ["d/", "f.txt  (3 bytes)", "l@"]
    assert list_folder(ws, "d") == "d is empty"


def test_missing_file_is_a_clear_error(setup: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = setup
    with pytest.raises(ToolError) as err:
        read_text(ws, "nope/missing.txt")
    assert "nope/missing.txt" in err.value.user_message
    assert str(root) not in err.value.user_message


def test_created_files_get_the_workspace_owner(setup: tuple[Workspace, Path, Path]) -> None:
    """As root (CI), what the gateway creates is handed to the sandbox uid owning the root."""
    ws, root, _ = setup
    owner = 65534 if os.geteuid() == 0 else os.geteuid()
    if os.geteuid() == 0:
        os.chown(root, 65534, 65534)
    write_text(ws, "new/dir/file.txt", "x")
    assert (root / "new").stat().st_uid == owner
    assert (root / "new" / "dir" / "file.txt").stat().st_uid == owner
