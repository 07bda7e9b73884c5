"""The inbound journal: dedup across reopen, replay = accepted - done, torn lines, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.messages import InboundMessage
from moltbot.store.journal import InboundJournal


def msg(n: int, text: str = "hi") -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:1:{n}",
        channel="telegram",
        account="main",
        chat_id="1",
        sender_id="42",
        text=f"{text} {n}",
    )


def test_accept_dedups_by_id_also_after_reopen(tmp_path: Path) -> None:
    j = InboundJournal(tmp_path)
    assert j.accept(msg(1)) is True
    assert j.accept(msg(1)) is False
    assert j.mark_done(msg(1).id) is True
    assert j.accept(msg(1)) is False  # done ids are remembered too
    reopened = InboundJournal(tmp_path)
    assert reopened.accept(msg(1)) is False
    assert reopened.accept(msg(2)) is True


def test_pending_after_crash_is_accepted_minus_done_in_order(tmp_path: Path) -> None:
    j = InboundJournal(tmp_path)
    for n in range(1, 6):
        j.accept(msg(n))
    j.mark_done(msg(2).id)
    j.mark_done(msg(4).id)
    assert j.mark_done(msg(4).id) is False and j.mark_done("never") is False
    del j  # "crash": nothing is flushed or closed explicitly
    replay = InboundJournal(tmp_path).pending()
    assert replay == [msg(1), msg(3), msg(5)]


def test_every_write_is_fsynced(tmp_path: Path, fsyncs: list[str]) -> None:
    j = InboundJournal(tmp_path)
    synced = fsyncs
    synced.clear()
    j.accept(msg(1))
    j.mark_done(msg(1).id)
    j.accept(msg(1))  # a duplicate writes nothing
    assert synced.count(str(j.path)) == 2


def test_torn_last_line_is_tolerated(tmp_path: Path) -> None:
    j = InboundJournal(tmp_path)
    j.accept(msg(1))
    with j.path.open("ab") as f:
        f.write(b'{"k":"in","msg":{"id":"telegram:main:1:2","chan')
    j2 = InboundJournal(tmp_path)
    assert j2.pending() == [msg(1)]
    assert j2.accept(msg(2)) is True  # the torn accept never happened: the platform redelivers
    j2.mark_done(msg(1).id)
    assert InboundJournal(tmp_path).pending() == [msg(2)]


def test_done_ids_are_bounded_in_memory(tmp_path: Path) -> None:
    j = InboundJournal(tmp_path, max_done_ids=3)
    for n in range(6):
        j.accept(msg(n))
        j.mark_done(msg(n).id)
    assert j.stats()["done_ids"] == 3
    assert j.seen(msg(5).id) and not j.seen(msg(0).id)
    reopened = InboundJournal(tmp_path, max_done_ids=3)
    assert reopened.stats()["done_ids"] == 3
    assert reopened.accept(msg(5)) is False
    assert reopened.accept(msg(0)) is True  # older than the window: documented trade-off


def test_compaction_keeps_pending_and_recent_done_ids(tmp_path: Path) -> None:
    j = InboundJournal(tmp_path, max_done_ids=50, compact_bytes=4096)
    for n in range(200):
        j.accept(msg(n, "x" * 50))
        if n % 10:
            j.mark_done(msg(n).id)
    assert j.path.stat().st_size < 4096 * 2 + 1024
    pending = [m.id for m in j.pending()]
    assert pending == [msg(n).id for n in range(0, 200, 10)]
    reopened = InboundJournal(tmp_path, max_done_ids=50)
    assert [m.id for m in reopened.pending()] == pending
    assert reopened.accept(msg(199)) is False and reopened.accept(msg(0)) is False
    assert [p.name for p in tmp_path.iterdir()] == [j.path.name]  # no temporary file left


def test_accept_many_is_one_fsync_and_dedups_within_and_across_batches(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    j = InboundJournal(tmp_path)
    assert j.accept(msg(1)) is True
    synced = fsyncs
    synced.clear()
    assert j.accept_many([msg(1), msg(2), msg(3), msg(2)]) == [False, True, True, False]
    assert len(synced) == 1
    assert j.accept_many([]) == [] and len(synced) == 1  # nothing new: no write
    assert [m.id for m in InboundJournal(tmp_path).pending()] == [msg(n).id for n in (1, 2, 3)]


def test_mark_done_many_is_one_fsync_and_survives_reopen(tmp_path: Path, fsyncs: list[str]) -> None:
    j = InboundJournal(tmp_path)
    j.accept_many([msg(n) for n in range(4)])
    synced = fsyncs
    synced.clear()
    ids = [msg(0).id, msg(2).id, msg(2).id, "telegram:main:1:99"]
    assert j.mark_done_many(ids) == [True, True, False, False]  # twice: once; unknown: no
    assert len(synced) == 1
    again = InboundJournal(tmp_path)
    assert [m.id for m in again.pending()] == [msg(1).id, msg(3).id]
    assert again.accept(msg(2)) is False  # a done id is still a duplicate after reopen


@pytest.mark.parametrize("size", [20, 50, 80, 120])
def test_a_compaction_during_an_accept_or_a_done_mark_keeps_that_record(
    tmp_path: Path, size: int
) -> None:
    """The compaction that a write sets off rewrites the file from the in-memory state: that
    state must already hold the write (else the message accepted, or the done mark written,
    right then would be lost at the next start)."""
    j = InboundJournal(tmp_path / str(size), max_done_ids=1000, compact_bytes=1024)
    for n in range(120):
        j.accept(msg(n, "y" * size))
        assert j.seen(msg(n).id)
        reopened = InboundJournal(tmp_path / str(size), max_done_ids=1000)
        assert msg(n).id in [m.id for m in reopened.pending()], n
        if n % 3:
            j.mark_done(msg(n).id)
            reopened = InboundJournal(tmp_path / str(size), max_done_ids=1000)
            assert msg(n).id not in [m.id for m in reopened.pending()], n
