"""The bash tool end to end (real bubblewrap): exec policy, approvals, output, fail closed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from moltbot.clock import FakeClock
from moltbot.sandbox import SandboxPolicy
from moltbot.tools import ApprovalBook, ExecPolicy, ToolRegistry, default_registry

ALICE = "telegram:main:dm:alice"
BOB = "telegram:main:dm:bob"


def registry(ws: Path, book: ApprovalBook, policy: ExecPolicy, **sandbox: object) -> ToolRegistry:
    options: dict[str, object] = {"timeout_s": 10.0, **sandbox}
    sb = SandboxPolicy(workspace=ws, **options)  # type: ignore[arg-type]
    return default_registry(ws, approvals=book, bash_policy=sb, exec_policy=policy)


def approval_id(text: str) -> str:
    match = re.search(r"/approve ([0-9a-f]{8})", text)
    assert match, text
    return match.group(1)


async def test_deny_mode_refuses_everything(tmp_path: Path) -> None:
    reg = registry(
        tmp_path, ApprovalBook(FakeClock()), ExecPolicy(mode="deny", allowlist=("touch",))
    )
    res = await reg.call("bash", {"command": "touch ran"}, ALICE)
    assert res.is_error and "deny" in res.text
    assert not (tmp_path / "operator" / "ran").exists()


async def test_allowlist_mode(tmp_path: Path) -> None:
    book = ApprovalBook(FakeClock())
    reg = registry(tmp_path, book, ExecPolicy(mode="allowlist", allowlist=("echo", "id")))
    res = await reg.call("bash", {"command": "echo hello from the sandbox"}, ALICE)
    assert not res.is_error
    assert res.text == "hello from the sandbox\n[exit code 0]"
    res = await reg.call("bash", {"command": "id -u"}, ALICE)
    assert res.text.splitlines()[0] != "0"
    for command in ("touch ran", "echo hi > ran", "echo hi; touch ran", "echo $(touch ran)"):
        res = await reg.call("bash", {"command": command}, ALICE)
        assert res.is_error and "not allowed" in res.text
    assert not (tmp_path / "operator" / "ran").exists()
    assert book.list_pending() == []


async def test_ask_mode_needs_an_approval_for_the_exact_command(tmp_path: Path) -> None:
    book = ApprovalBook(FakeClock())
    reg = registry(tmp_path, book, ExecPolicy(mode="ask", allowlist=("echo",)))
    res = await reg.call("bash", {"command": "echo allowlisted"}, ALICE)
    assert res.text.startswith("allowlisted")

    res = await reg.call("bash", {"command": "touch approved.txt"}, ALICE)
    assert res.is_error
    aid = approval_id(res.text)
    assert f"/deny {aid}" in res.text
    assert not (tmp_path / "operator" / "approved.txt").exists()
    assert [a.id for a in book.list_pending(ALICE)] == [aid]

    again = await reg.call("bash", {"command": "touch approved.txt"}, ALICE)
    assert approval_id(again.text) == aid  # same request, not a new one

    book.resolve(aid, True, by="owner:telegram:main:1")
    res = await reg.call("bash", {"command": "touch approved.txt"}, ALICE)
    assert not res.is_error, res.text
    assert (tmp_path / "operator" / "approved.txt").exists()

    res = await reg.call("bash", {"command": "touch approved.txt other.txt"}, ALICE)
    assert res.is_error and approval_id(res.text) != aid
    assert not (tmp_path / "operator" / "other.txt").exists()
    res = await reg.call("bash", {"command": "touch approved.txt"}, BOB)  # other session
    assert res.is_error and "/approve" in res.text


async def test_ask_mode_waits_for_the_answer(tmp_path: Path) -> None:
    book = ApprovalBook(FakeClock())
    reg = registry(tmp_path, book, ExecPolicy(mode="ask", wait_s=5.0))

    async def user_answers(approve: bool) -> None:
        while not book.list_pending():
            await asyncio.sleep(0.01)
        book.resolve(book.list_pending()[0].id, approve, by="owner:telegram:main:1")

    answer = asyncio.create_task(user_answers(True))
    res = await reg.call("bash", {"command": "echo waited > w.txt"}, ALICE)
    await answer
    assert not res.is_error, res.text
    assert (tmp_path / "operator" / "w.txt").read_text() == "waited\n"

    answer = asyncio.create_task(user_answers(False))
    res = await reg.call("bash", {"command": "echo no > n.txt"}, ALICE)
    await answer
    assert res.is_error and "denied" in res.text
    assert not (tmp_path / "operator" / "n.txt").exists()


async def test_ask_mode_wait_is_bounded(tmp_path: Path) -> None:
    reg = registry(tmp_path, ApprovalBook(FakeClock()), ExecPolicy(mode="ask", wait_s=0.1))
    res = await asyncio.wait_for(reg.call("bash", {"command": "touch x"}, ALICE), 2.0)
    assert res.is_error and "/approve" in res.text


def approve(book: ApprovalBook, session: str, command: str) -> None:
    book.resolve(book.request(session, command).id, True, by="gateway")


async def test_output_exit_code_and_timeout(tmp_path: Path) -> None:
    book = ApprovalBook(FakeClock())
    reg = registry(tmp_path, book, ExecPolicy(mode="ask"), output_limit_bytes=1000)
    command = "echo out; echo err >&2; exit 3"
    approve(book, ALICE, command)
    res = await reg.call("bash", {"command": command}, ALICE)
    assert res.text == "out\n[stderr]\nerr\n[exit code 3]"
    approve(book, ALICE, "yes | head -c 100000")
    res = await reg.call("bash", {"command": "yes | head -c 100000"}, ALICE)
    assert "[output truncated" in res.text and len(res.text) < 1200
    reg = registry(tmp_path, book, ExecPolicy(mode="ask"), timeout_s=1.0)
    approve(book, ALICE, "sleep 100")
    res = await reg.call("bash", {"command": "sleep 100"}, ALICE)
    assert res.is_error and "timed out after 1 s" in res.text


async def test_missing_sandbox_means_no_execution(tmp_path: Path) -> None:
    policy = ExecPolicy(mode="allowlist", allowlist=("touch",))
    reg = registry(tmp_path, ApprovalBook(FakeClock()), policy, bwrap_path="/nonexistent/bwrap")
    res = await reg.call("bash", {"command": "touch ran"}, ALICE)
    assert res.is_error and "apt-get install bubblewrap" in res.text
    assert not (tmp_path / "operator" / "ran").exists()
