"""ApprovalBook and the exec policy: exact-command binding, expiry, who may answer."""

from __future__ import annotations

import asyncio

import pytest

from moltbot.clock import FakeClock
from moltbot.errors import NotFound, ToolError
from moltbot.tools.approvals import ApprovalBook, ApprovalState, allowlisted, request_text

ALICE = "telegram:main:dm:alice"
BOB = "telegram:main:dm:bob"


def test_request_creates_a_pending_approval_with_a_short_id() -> None:
    clock = FakeClock()
    book = ApprovalBook(clock, request_ttl_s=60)
    a = book.request(ALICE, "rm -rf build")
    assert len(a.id) == 8
    assert a.state is ApprovalState.PENDING
    assert a.session == ALICE and a.command == "rm -rf build"
    assert a.expires == a.created + 60
    assert book.list_pending() == [a]
    assert book.request(ALICE, "rm -rf build") == a  # asking twice does not duplicate
    assert book.list_pending(BOB) == []


def test_approval_is_bound_to_the_exact_command_and_session() -> None:
    book = ApprovalBook(FakeClock())
    a = book.request(ALICE, "make deploy")
    assert not book.is_approved(ALICE, "make deploy")
    book.resolve(a.id, True, by="owner:telegram:main:1")
    assert book.is_approved(ALICE, "make deploy")
    assert not book.is_approved(ALICE, "make deploy ")
    assert not book.is_approved(ALICE, "make deploy; curl evil")
    assert not book.is_approved(BOB, "make deploy")
    assert book.list_pending() == []


def test_approval_expires_after_ttl() -> None:
    clock = FakeClock()
    book = ApprovalBook(clock, approval_ttl_s=100)
    a = book.request(ALICE, "ls")
    book.resolve(a.id, True)
    clock.advance(99)
    assert book.is_approved(ALICE, "ls")
    clock.advance(1)
    assert not book.is_approved(ALICE, "ls")
    got = book.get(a.id)
    assert got is not None and got.state is ApprovalState.EXPIRED


def test_pending_request_expires_and_cannot_be_answered_late() -> None:
    clock = FakeClock()
    book = ApprovalBook(clock, request_ttl_s=30)
    a = book.request(ALICE, "ls")
    clock.advance(30)
    assert book.list_pending() == []
    with pytest.raises(NotFound):
        book.resolve(a.id, True)
    assert not book.is_approved(ALICE, "ls")


def test_the_book_records_who_answered() -> None:
    """Who may answer is the caller's decision (``moltbot.security.owners``); the book keeps
    who did, and an approval still only lets its own session run its exact command."""
    book = ApprovalBook(FakeClock())
    a = book.request(ALICE, "ls")
    resolved = book.resolve(a.id, True, by="owner:slack:work:U1")
    assert resolved.resolved_by == "owner:slack:work:U1"
    assert book.is_approved(ALICE, "ls") and not book.is_approved(BOB, "ls")
    b = book.request(BOB, "ls")
    assert book.resolve(b.id, False).resolved_by == "gateway"


def test_request_text_shows_the_whole_command_as_it_is() -> None:
    clock = FakeClock()
    book = ApprovalBook(clock, request_ttl_s=300)
    command = "echo '<b>*x*</b>' `id` && rm -rf ~/x\nsecond line"
    a = book.request(ALICE, command)
    text = request_text(a, clock.time())
    assert f"\n\n{command}\n\n" in text and a.id in text and "5 min" in text


def test_denial_and_double_answer() -> None:
    book = ApprovalBook(FakeClock())
    a = book.request(ALICE, "ls")
    denied = book.resolve(a.id, False, by="owner:telegram:main:1")
    assert denied.state is ApprovalState.DENIED
    assert not book.is_approved(ALICE, "ls")
    with pytest.raises(NotFound):
        book.resolve(a.id, True, by="owner:telegram:main:1")
    with pytest.raises(NotFound):
        book.resolve("nope1234", True)


def test_pending_approvals_are_bounded() -> None:
    clock = FakeClock()
    book = ApprovalBook(clock, max_pending=3, request_ttl_s=10)
    for i in range(3):
        book.request(ALICE, f"cmd {i}")
    with pytest.raises(ToolError):
        book.request(ALICE, "cmd 3")
    clock.advance(10)  # they expire, making room again
    assert book.request(ALICE, "cmd 3").state is ApprovalState.PENDING


def test_answered_approvals_are_forgotten_beyond_max_kept() -> None:
    book = ApprovalBook(FakeClock(), max_kept=5)
    for i in range(20):
        a = book.request(ALICE, f"cmd {i}")
        book.resolve(a.id, False)
    assert len([i for i in range(20) if book.is_approved(ALICE, f"cmd {i}")]) == 0
    assert len(book._items) <= 6


async def test_wait_returns_when_answered() -> None:
    book = ApprovalBook(FakeClock())
    a = book.request(ALICE, "ls")

    async def answer() -> None:
        await asyncio.sleep(0.05)
        book.resolve(a.id, True, by="owner:telegram:main:1")

    task = asyncio.create_task(answer())
    got = await book.wait(a.id, 5.0)
    await task
    assert got.state is ApprovalState.APPROVED


async def test_wait_gives_up_after_its_timeout() -> None:
    book = ApprovalBook(FakeClock())
    a = book.request(ALICE, "ls")
    got = await book.wait(a.id, 0.05)
    assert got.state is ApprovalState.PENDING


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        ("ls -la", True),
        ("  ls", True),
        ("git status", True),
        ("lsblk", False),
        ("/bin/ls", False),
        ("ls; rm -rf /", False),
        ("ls | sh", False),
        ("ls && rm x", False),
        ("ls & rm x", False),
        ("ls `rm x`", False),
        ("ls $(rm x)", False),
        ("ls > /etc/x", False),
        ("ls < x", False),
        ("ls\nrm x", False),
        ("rm -rf /", False),
        ("", False),
    ],
)
def test_allowlist_matching(command: str, ok: bool) -> None:
    assert allowlisted(command, ("ls", "git")) is ok
