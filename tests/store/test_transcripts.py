"""Transcripts: fsynced JSONL appends, torn last line, archive on reset, hostile keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moltbot.clock import FakeClock
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore, file_stem


def test_append_and_load_round_trip(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    store.append("s", {"role": "user", "content": "hi\nthere", "ts": 1.0})
    store.append("s", {"role": "assistant", "content": [{"type": "text", "text": "ü"}]})
    assert store.load("s") == [
        {"role": "user", "content": "hi\nthere", "ts": 1.0},
        {"role": "assistant", "content": [{"type": "text", "text": "ü"}]},
    ]
    assert store.load("unknown") == []
    lines = store.path_for("s").read_bytes().splitlines()
    assert len(lines) == 3  # header + two records, one per line


def test_every_append_is_fsynced(tmp_path: Path, fsyncs: list[str]) -> None:
    store = TranscriptStore(tmp_path)
    store.append("s", {"n": 0})
    synced = fsyncs
    synced.clear()
    for n in range(3):
        store.append("s", {"n": n + 1})
    target = str(store.path_for("s"))
    assert synced.count(target) == 3
    store.append_many("s", [{"n": 4}, {"n": 5}])  # one turn's records: one fsync
    assert synced.count(target) == 4
    store.append_many("s", [])
    assert synced.count(target) == 4
    assert [r["n"] for r in store.load("s")] == [0, 1, 2, 3, 4, 5]


def test_torn_last_line_is_skipped_and_next_append_starts_a_new_line(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    store.append("s", {"n": 1})
    with store.path_for("s").open("ab") as f:
        f.write(b'{"n": 2, "content": "half wri')  # a crash mid-write
    assert store.load("s") == [{"n": 1}]
    store.append("s", {"n": 3})
    assert store.load("s") == [{"n": 1}, {"n": 3}]
    assert store.path_for("s").read_bytes().endswith(b'wri\n{"n":3}\n')
    with store.path_for("s").open("ab") as f:
        f.write(b'{"n": 4')
    store.append_many("s", [{"n": 5}, {"n": 6}])
    assert store.load("s") == [{"n": 1}, {"n": 3}, {"n": 5}, {"n": 6}]


def test_reset_archives_instead_of_deleting(tmp_path: Path) -> None:
    clock = FakeClock()
    store = TranscriptStore(tmp_path, clock=clock)
    store.append("s", {"n": 1})
    archived = store.reset("s")
    assert archived is not None and archived.parent == tmp_path / "archive"
    assert b'{"n":1}' in archived.read_bytes()
    assert store.load("s") == [] and store.reset("s") is None
    store.append("s", {"n": 2})
    again = store.reset("s")  # same timestamp: a second, distinct archive
    assert again is not None and again != archived and archived.exists()


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "/etc/passwd", "..", ".", "", "a/../../b", "x\x00y", "é" * 300]
)
def test_hostile_session_keys_stay_inside_the_folder(tmp_path: Path, key: str) -> None:
    folder = tmp_path / "sessions"
    store = TranscriptStore(folder)
    store.append(key, {"n": 1})
    path = store.path_for(key)
    assert path.resolve().parent == folder.resolve()
    assert len(path.name) < 100
    assert store.load(key) == [{"n": 1}]
    assert [s.key for s in store.list_sessions()] == [key]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions"]


def test_similar_keys_do_not_collide() -> None:
    assert file_stem("a:b") != file_stem("a_b") != file_stem("a/b")


def test_list_sessions_names_counts_and_orders(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    store.append("telegram:main:dm:1", {"n": 1})
    store.append("telegram:main:dm:1", {"n": 2})
    store.append("slack:w:group:C1", {"n": 1})
    os.utime(store.path_for("telegram:main:dm:1"), (1000, 1000))
    infos = store.list_sessions()
    assert [(i.key, i.messages) for i in infos] == [
        ("slack:w:group:C1", 1),
        ("telegram:main:dm:1", 2),
    ]
    assert infos[1].updated == 1000


async def test_async_face(tmp_path: Path) -> None:
    log = AsyncTranscripts(TranscriptStore(tmp_path))
    await log.append("s", {"n": 1})
    assert await log.load("s") == [{"n": 1}]
    assert [i.key for i in await log.list_sessions()] == ["s"]
    assert await log.reset("s") is not None


def test_append_batch_writes_each_session_once_and_fails_per_item(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    store = TranscriptStore(tmp_path)
    store.append("a", {"n": 0})
    store.append("b", {"n": 0})
    store.path_for("broken").mkdir()  # this session's file cannot be opened for appending
    synced = fsyncs
    synced.clear()
    got = store.append_batch(
        [("a", [{"n": 1}]), ("broken", [{"n": 1}]), ("b", [{"n": 1}]), ("a", [{"n": 2}])]
    )
    assert got[0] is None and got[2] is None and got[3] is None
    assert got[1] == "the transcript could not be written"
    assert synced.count(str(store.path_for("a"))) == 1  # a's two items: one write, one fsync
    assert synced.count(str(store.path_for("b"))) == 1
    assert [r["n"] for r in store.load("a")] == [0, 1, 2]
    assert [r["n"] for r in store.load("b")] == [0, 1]
