import os
import stat

import pytest

from moltbot.errors import PermissionProblem
from moltbot.security.fsmodes import (
    atomic_write,
    check_private,
    ensure_private_dir,
    require_private,
)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ensure_private_dir_creates_0700(tmp_path):
    target = tmp_path / "a" / "b"
    assert ensure_private_dir(target) == target
    assert target.is_dir()
    assert mode(target) == 0o700


def test_ensure_private_dir_tightens_open_folder(tmp_path):
    target = tmp_path / "open"
    target.mkdir()
    os.chmod(target, 0o755)
    ensure_private_dir(target)
    assert mode(target) == 0o700


def test_ensure_private_dir_refuses_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(PermissionProblem) as err:
        ensure_private_dir(target)
    assert str(target) in str(err.value)


def test_atomic_write_creates_0600_and_leaves_no_tmp(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_other_mode(tmp_path):
    target = tmp_path / "public.txt"
    atomic_write(target, b"hello", mode=0o644)
    assert mode(target) == 0o644


def test_atomic_write_replaces_loose_file_with_0600(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chmod(target, 0o666)
    atomic_write(target, b"new")
    assert mode(target) == 0o600


def test_atomic_write_failure_leaves_old_file_and_no_tmp(tmp_path):
    target = tmp_path / "f"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_check_private_reports_open_modes(tmp_path):
    folder = ensure_private_dir(tmp_path / "creds")
    good = folder / "good"
    atomic_write(good, b"x")
    assert check_private(folder) == []
    bad = folder / "bad"
    bad.write_bytes(b"x")
    os.chmod(bad, 0o644)
    os.chmod(folder, 0o750)
    problems = check_private(folder)
    assert len(problems) == 2
    assert any(f"chmod 700 {folder}" in p for p in problems)
    assert any(f"chmod 600 {bad}" in p and "0644" in p for p in problems)


def test_check_private_missing_path_is_fine(tmp_path):
    assert check_private(tmp_path / "nope") == []


def test_require_private(tmp_path):
    f = tmp_path / "key"
    atomic_write(f, b"k")
    require_private(f)
    os.chmod(f, 0o640)
    with pytest.raises(PermissionProblem) as err:
        require_private(f)
    assert err.value.hint == f"chmod 600 {f}"
