"""The store's small durable values: plain keys only, a size cap, whole-value atomic replace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from moltbot.errors import BadRequest
from moltbot.store.kv import KV_MAX_BYTES, KeyValueStore, valid_kv_key


def test_kv_keys_are_plain_names() -> None:
    assert valid_kv_key("pairing.telegram.main") and valid_kv_key("pairing:slack:team-1")
    assert valid_kv_key("x" * 128)
    for bad in ("", "../x", "a/b", ".hidden", "a..b", "x" * 129, 3, "a b", "-lead", "a\x00b"):
        assert not valid_kv_key(bad), bad


def test_put_get_round_trip_and_missing_key(tmp_path: Path) -> None:
    kv = KeyValueStore(tmp_path / "kv")
    assert stat.S_IMODE((tmp_path / "kv").stat().st_mode) == 0o700
    assert kv.get("never.written") is None
    kv.put("pairing.telegram.main", b'{"codes": []}')
    assert kv.get("pairing.telegram.main") == b'{"codes": []}'
    assert stat.S_IMODE(kv.path_for("pairing.telegram.main").stat().st_mode) == 0o600
    assert KeyValueStore(tmp_path / "kv").get("pairing.telegram.main") == b'{"codes": []}'


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", "..", ".", "a/b"])
def test_path_keys_are_refused_and_write_nothing_outside(tmp_path: Path, key: str) -> None:
    kv = KeyValueStore(tmp_path / "kv")
    with pytest.raises(BadRequest) as info:
        kv.put(key, b"x")
    assert "store key" in info.value.user_message
    with pytest.raises(BadRequest):
        kv.get(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv"]
    assert list((tmp_path / "kv").iterdir()) == []


def test_size_cap_and_type_are_enforced_and_keep_the_old_value(tmp_path: Path) -> None:
    kv = KeyValueStore(tmp_path)
    kv.put("big", b"a" * KV_MAX_BYTES)  # exactly the cap is allowed
    assert len(kv.get("big") or b"") == KV_MAX_BYTES
    with pytest.raises(BadRequest) as info:
        kv.put("big", b"b" * (KV_MAX_BYTES + 1))
    assert str(KV_MAX_BYTES) in info.value.user_message
    with pytest.raises(BadRequest):
        kv.put("big", "text, not bytes")  # type: ignore[arg-type]
    assert kv.get("big") == b"a" * KV_MAX_BYTES


def test_put_replaces_atomically_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = KeyValueStore(tmp_path)
    kv.put("k", b"old")
    kv.put("k", b"new value")
    assert kv.get("k") == b"new value"
    assert os.listdir(tmp_path) == ["k"]

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)  # the write fails before the rename
    with pytest.raises(OSError):
        kv.put("k", b"never seen")
    monkeypatch.undo()
    assert kv.get("k") == b"new value"  # readers see the old value, never a part
    assert os.listdir(tmp_path) == ["k"]
