"""Ray's temp dir (its sockets, logs and session files) lives under MOLTBOT_HOME/run, private
and ours, or the tree does not start; a home too deep for Ray's socket paths gets a short
private folder of this user's, linked from run/ray."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.ray_temp import RAY_TEMP_MAX, ray_temp_dir
from moltbot.errors import PermissionProblem


@pytest.fixture
def short_home() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="mb", dir="/tmp"))
    try:
        yield base / "h"
    finally:
        shutil.rmtree(base)


def test_a_short_home_keeps_ray_under_run(short_home: Path) -> None:
    short_home.mkdir()
    temp = Path(ray_temp_dir(short_home, "tag1"))
    assert temp == short_home / "run" / "ray" and len(str(temp)) <= RAY_TEMP_MAX
    for folder in (temp, temp.parent):
        assert (folder.stat().st_mode & 0o777, folder.stat().st_uid) == (0o700, os.geteuid())
    os.chmod(temp, 0o777)  # what Ray does to its temp dir: the next start still works,
    assert ray_temp_dir(short_home, "tag1") == str(temp)  # the private run/ keeps others out


def test_a_deep_home_gets_a_short_private_folder_linked_from_run(tmp_path: Path) -> None:
    home = tmp_path / ("deep" * 12) / "home"
    home.mkdir(parents=True)
    temp = Path(ray_temp_dir(home, "tag2"))
    assert temp == Path(tempfile.gettempdir()) / f"moltbot-{os.geteuid()}" / "tag2"
    assert (temp.stat().st_mode & 0o777, temp.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    link = home / "run" / "ray"
    assert link.is_symlink() and link.resolve() == temp.resolve()
    os.chmod(temp, 0o777)  # as Ray leaves it
    assert ray_temp_dir(home, "tag2") == str(temp)  # the same on the next start
    os.chmod(temp.parent, 0o777)
    with pytest.raises(PermissionProblem, match="open to group/other"):
        ray_temp_dir(home, "tag2")
    os.chmod(temp.parent, 0o700)
    temp.rmdir()


def test_an_open_or_foreign_run_folder_is_refused(short_home: Path) -> None:
    run = short_home / "run"
    run.mkdir(parents=True, mode=0o700)
    os.chmod(run, 0o777)
    with pytest.raises(PermissionProblem) as info:
        ray_temp_dir(short_home, "tag3")
    assert str(run) in info.value.user_message and "chmod" in info.value.hint
    os.chmod(run, 0o700)
    if os.geteuid() == 0:  # root can make a folder that belongs to someone else
        os.chown(run, 65534, 65534)
        with pytest.raises(PermissionProblem, match="belongs to another user"):
            ray_temp_dir(short_home, "tag3")
        os.chown(run, 0, 0)
    ray_link = run / "ray"
    ray_link.symlink_to("/tmp")
    with pytest.raises(PermissionProblem, match="not a folder"):
        ray_temp_dir(short_home, "tag3")
