"""Exec approvals: which bash commands may run, and the book of pending/answered approvals.

Policy modes (``ExecPolicy.mode``):

- ``deny``: the bash tool refuses every command.
- ``allowlist``: a command runs when :func:`allowlisted` says so; anything else is refused.
- ``ask``: allowlisted commands run; any other command needs an approval from an owner
  (``/approve ID`` from a chat by an account's ``owners``, or ``approvals.resolve`` on the
  gateway). *Who* may answer is decided by the caller (``moltbot.security.owners``); the book
  records who did.

An approval is tied to the *exact* command string and the session that asked; once approved it
lets that command run again in that session until ``approval_ttl_s`` has passed. A pending request
expires after ``request_ttl_s``; the turn that asked waits for the answer that long.
The book is pure (clock injected); :meth:`ApprovalBook.wait` lets a
caller await a decision with a timeout, so nothing is blocked forever.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from typing import Literal

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import NotFound, ToolError

# Characters that let one "allowlisted" command chain, substitute or redirect into another.
SHELL_METACHARACTERS = frozenset(";|&`$<>()\\\n\r")


class ExecPolicy(msgspec.Struct, frozen=True, kw_only=True):
    mode: Literal["deny", "allowlist", "ask"] = "ask"
    allowlist: tuple[str, ...] = ()  # exact first words, e.g. ("ls", "cat", "git")
    wait_s: float = 0.0  # how long the bash tool awaits a decision before answering "pending"


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session: str
    command: str
    created: float  # wall clock (for people)
    expires: float  # wall clock: end of the pending window, or of the approval once approved
    state: ApprovalState = ApprovalState.PENDING
    resolved_by: str | None = None  # "owner:<channel>:<account>:<id>" or "gateway:<client>"


def allowlisted(command: str, allowlist: tuple[str, ...] | frozenset[str]) -> bool:
    """True when the first word is exactly in ``allowlist`` and nothing can chain a second one."""
    if any(ch in SHELL_METACHARACTERS for ch in command):
        return False
    words = command.split(None, 1)
    return bool(words) and words[0] in allowlist


class ApprovalBook:
    """Pending and answered approvals, in memory. All times come from the injected clock."""

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        request_ttl_s: float = 300.0,
        approval_ttl_s: float = 600.0,
        max_pending: int = 32,
        max_kept: int = 256,
    ) -> None:
        self._clock = clock
        self._request_ttl = request_ttl_s
        self._approval_ttl = approval_ttl_s
        self._max_pending = max_pending
        self._max_kept = max_kept
        self._items: dict[str, Approval] = {}
        self._deadline: dict[str, float] = {}  # monotonic deadline per id
        self._events: dict[str, asyncio.Event] = {}

    # --- queries -------------------------------------------------------------------------
    def get(self, approval_id: str) -> Approval | None:
        self._expire()
        return self._items.get(approval_id)

    def list_pending(self, session: str | None = None) -> list[Approval]:
        self._expire()
        return [
            a
            for a in self._items.values()
            if a.state is ApprovalState.PENDING and (session is None or a.session == session)
        ]

    def is_approved(self, session: str, command: str) -> bool:
        """An unexpired approval exists for exactly this command in exactly this session."""
        self._expire()
        return any(
            a.state is ApprovalState.APPROVED and a.session == session and a.command == command
            for a in self._items.values()
        )

    # --- changes -------------------------------------------------------------------------
    def request(self, session: str, command: str) -> Approval:
        """A pending approval for this command (the existing one if already asked)."""
        self._expire()
        for a in self._items.values():
            if a.state is ApprovalState.PENDING and a.session == session and a.command == command:
                return a
        if len(self.list_pending()) >= self._max_pending:
            raise ToolError(
                "too many commands are waiting for approval; answer or let them expire first"
            )
        approval_id = self._new_id()
        wall = self._clock.time()
        approval = Approval(
            id=approval_id,
            session=session,
            command=command,
            created=wall,
            expires=wall + self._request_ttl,
        )
        self._items[approval_id] = approval
        self._deadline[approval_id] = self._clock.monotonic() + self._request_ttl
        self._trim()
        return approval

    def resolve(self, approval_id: str, approve: bool, by: str = "gateway") -> Approval:
        """Answer a pending approval. The caller has checked that ``by`` may (an owner, or the
        gateway); ``by`` is recorded."""
        self._expire()
        current = self._items.get(approval_id)
        if current is None or current.state is not ApprovalState.PENDING:
            raise NotFound(f"no pending approval with id {approval_id}")
        now = self._clock.monotonic()
        wall = self._clock.time()
        if approve:
            self._deadline[approval_id] = now + self._approval_ttl
            state, expires = ApprovalState.APPROVED, wall + self._approval_ttl
        else:
            state, expires = ApprovalState.DENIED, wall
        updated = msgspec.structs.replace(current, state=state, expires=expires, resolved_by=by)
        self._items[approval_id] = updated
        self._notify(approval_id)
        return updated

    async def wait(self, approval_id: str, wait_s: float) -> Approval:
        """The approval once answered, or as it stands after ``wait_s`` (real) seconds."""
        current = self.get(approval_id)
        if current is None:
            raise NotFound(f"no approval with id {approval_id}")
        if current.state is not ApprovalState.PENDING or wait_s <= 0:
            return current
        event = self._events.setdefault(approval_id, asyncio.Event())
        try:
            async with asyncio.timeout(wait_s):
                await event.wait()
        except TimeoutError:
            pass
        return self.get(approval_id) or current

    # --- internals -----------------------------------------------------------------------
    def _new_id(self) -> str:
        while True:
            candidate = secrets.token_hex(4)  # 8 characters
            if candidate not in self._items:
                return candidate

    def _notify(self, approval_id: str) -> None:
        event = self._events.pop(approval_id, None)
        if event is not None:
            event.set()

    def _expire(self) -> None:
        now = self._clock.monotonic()
        for approval_id, approval in list(self._items.items()):
            live = approval.state in (ApprovalState.PENDING, ApprovalState.APPROVED)
            if live and now >= self._deadline.get(approval_id, now):
                self._items[approval_id] = msgspec.structs.replace(
                    approval, state=ApprovalState.EXPIRED
                )
                self._notify(approval_id)

    def _trim(self) -> None:
        """Forget the oldest answered/expired approvals beyond ``max_kept``."""
        done = [a for a in self._items.values() if a.state is not ApprovalState.PENDING]
        excess = len(self._items) - self._max_kept
        for approval in sorted(done, key=lambda a: a.created)[: max(excess, 0)]:
            self._items.pop(approval.id, None)
            self._deadline.pop(approval.id, None)


def request_text(approval: Approval, now: float) -> str:
    """The system message a chat gets when a command waits for approval: the exact command,
    whole, on lines of its own (sent as plain text, so nothing in it is formatting), its id and
    how long it waits."""
    left = max(0, int(approval.expires - now))
    return (
        "[moltbot] Approval needed: the assistant wants to run this, exactly:\n\n"
        f"{approval.command}\n\n"
        f"Approval id: {approval.id} (waits {left // 60} min {left % 60} s). "
        f"An owner answers /approve {approval.id} or /deny {approval.id}."
    )
