"""Who may talk to the assistant: DM policy (pairing | allowlist | open) and group rules.

Pure: no I/O, the clock is injected, and the pairing book's state round-trips through JSON so
the store can persist it. Identity is the platform's immutable sender id, compared exactly:
no case folding, no prefixes, no wildcards (``open`` is the explicit way to allow everyone).
"""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import NotFound
from moltbot.messages import InboundMessage

DmPolicy = Literal["pairing", "allowlist", "open"]
Action = Literal["allow", "deny", "pair"]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 8
CODE_TTL = 3600.0
MAX_PENDING = 3


class AccessPolicy(msgspec.Struct, frozen=True, kw_only=True):
    dm_policy: DmPolicy = "pairing"
    allow_from: list[str] = []
    require_mention: bool = True
    group_allow: list[str] = []


class Decision(msgspec.Struct, frozen=True):
    """``allow``: hand to the agent. ``deny``: drop (send ``reply_text`` if any).
    ``pair``: do not process; send ``reply_text`` (it carries the code when there is one)."""

    action: Action
    code: str | None = None
    reply_text: str | None = None
    reason: str = ""


class PendingPairing(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    channel: str
    account: str
    sender_id: str
    sender_name: str = ""
    created_at: float
    expires_at: float


class ApprovedSender(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    account: str
    sender_id: str
    approved_at: float


class PairingState(msgspec.Struct, kw_only=True):
    version: int = 1
    pending: list[PendingPairing] = []
    approved: list[ApprovedSender] = []


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _normalise_code(code: str) -> str:
    return code.strip().upper()


class Pairing:
    """The access check plus the pairing book of one channel account (or several)."""

    def __init__(self, policy: AccessPolicy, *, clock: Clock = SYSTEM_CLOCK,
                 state: PairingState | None = None) -> None:
        self.policy = policy
        self._clock = clock
        self._pending: dict[str, PendingPairing] = {}
        self._approved: dict[tuple[str, str, str], ApprovedSender] = {}
        for p in (state.pending if state else []):
            self._pending[p.code] = p
        for a in (state.approved if state else []):
            self._approved[(a.channel, a.account, a.sender_id)] = a

    # --- the check -------------------------------------------------------------------------
    def check(self, msg: InboundMessage) -> Decision:
        if msg.is_group:
            return self._check_group(msg)
        if msg.sender_id in self.policy.allow_from:  # exact list membership
            return Decision("allow", reason="allowlisted")
        if self.policy.dm_policy == "open":
            return Decision("allow", reason="open")
        if self.policy.dm_policy == "allowlist":
            return Decision("deny", reason="not_allowlisted")
        if (msg.channel, msg.account, msg.sender_id) in self._approved:
            return Decision("allow", reason="paired")
        return self._pair(msg)

    def _check_group(self, msg: InboundMessage) -> Decision:
        if self.policy.group_allow and msg.chat_id not in self.policy.group_allow:
            return Decision("deny", reason="group_not_allowed")
        if self.policy.require_mention and not msg.mentioned:
            return Decision("deny", reason="not_mentioned")
        return Decision("allow", reason="group")

    def _pair(self, msg: InboundMessage) -> Decision:
        self.purge_expired()
        for p in self._pending.values():
            if (p.channel, p.account, p.sender_id) == (msg.channel, msg.account, msg.sender_id):
                return Decision("pair", p.code, self._code_text(p), reason="pairing_pending")
        waiting = [p for p in self._pending.values()
                   if (p.channel, p.account) == (msg.channel, msg.account)]
        if len(waiting) >= MAX_PENDING:
            return Decision("pair", None, "Hi! I can't take new pairing requests right now. "
                            "Please try again later.", reason="pairing_full")
        code = new_code()
        while code in self._pending:
            code = new_code()
        now = self._clock.time()
        p = PendingPairing(code=code, channel=msg.channel, account=msg.account,
                           sender_id=msg.sender_id, sender_name=msg.sender_name,
                           created_at=now, expires_at=now + CODE_TTL)
        self._pending[code] = p
        return Decision("pair", code, self._code_text(p), reason="pairing_new")

    @staticmethod
    def _code_text(p: PendingPairing) -> str:
        return (f"Hi! I don't know you yet. Your pairing code is {p.code} (valid for 1 hour). "
                f"Ask my owner to run: moltbot pairing approve {p.channel} {p.code}")

    # --- the book --------------------------------------------------------------------------
    def purge_expired(self) -> list[PendingPairing]:
        now = self._clock.time()
        gone = [p for p in self._pending.values() if p.expires_at <= now]
        for p in gone:
            del self._pending[p.code]
        return gone

    def _take(self, code: str) -> PendingPairing:
        self.purge_expired()
        p = self._pending.pop(_normalise_code(code), None)
        if p is None:
            raise NotFound("no pending pairing with that code (it may have expired)")
        return p

    def approve(self, code: str) -> str:
        """Approve a pending code; the sender may talk from now on. Returns the sender id."""
        p = self._take(code)
        self._approved[(p.channel, p.account, p.sender_id)] = ApprovedSender(
            channel=p.channel, account=p.account, sender_id=p.sender_id,
            approved_at=self._clock.time())
        return p.sender_id

    def deny(self, code: str) -> str:
        """Drop a pending code (the sender may ask again later). Returns the sender id."""
        return self._take(code).sender_id

    def revoke(self, channel: str, account: str, sender_id: str) -> bool:
        return self._approved.pop((channel, account, sender_id), None) is not None

    def list_pending(self) -> list[PendingPairing]:
        self.purge_expired()
        return sorted(self._pending.values(), key=lambda p: p.created_at)

    def list_approved(self) -> list[ApprovedSender]:
        return sorted(self._approved.values(), key=lambda a: a.approved_at)

    # --- persistence -----------------------------------------------------------------------
    def state(self) -> PairingState:
        return PairingState(pending=self.list_pending(), approved=self.list_approved())

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.state())

    @classmethod
    def from_json(cls, data: bytes | str, policy: AccessPolicy, *,
                  clock: Clock = SYSTEM_CLOCK) -> Pairing:
        book = cls(policy, clock=clock, state=msgspec.json.decode(data, type=PairingState))
        book.purge_expired()
        return book
