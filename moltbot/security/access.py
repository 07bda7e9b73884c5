"""Who may talk to the assistant: DM policy (pairing | allowlist | open) and group rules.

A DM is answered when the sender passes the account's policy. A group message is answered only
when (1) it mentions the bot (unless ``require_mention`` is off), (2) the group is listed in the
account's ``groups.allow`` (closed by default: an empty list answers no group) and (3) the sender
passes the same policy as in a DM (allowlisted, paired, or everyone under ``open``), unless that
group's entry says ``members: "any"``. A stranger who adds the bot to their own group gets
nothing, and a stranger in an allowed group gets nothing either (no pairing code is handed out
in a group: pairing happens in a DM).

Pure: no I/O, the clock is injected, and the pairing book's state round-trips through JSON so
the store can persist it. Identity is the platform's immutable sender id, compared exactly:
no case folding, no prefixes, no wildcards (``open`` is the explicit way to allow everyone).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import NotFound
from moltbot.messages import InboundMessage

log = logging.getLogger(__name__)

DmPolicy = Literal["pairing", "allowlist", "open"]
Action = Literal["allow", "deny", "pair"]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 8
CODE_TTL = 3600.0
MAX_PENDING = 3


# refusals worth an audit record (a message addressed to the bot by someone it must not answer);
# chatter that merely does not mention the bot is not one
REFUSALS = frozenset({"not_allowlisted", "group_not_allowed", "group_sender_not_allowed"})


class AccessPolicy(msgspec.Struct, frozen=True, kw_only=True):
    dm_policy: DmPolicy = "pairing"
    allow_from: list[str] = []
    require_mention: bool = True
    group_allow: list[str] = []  # the groups answered at all (default: none)
    group_any_member: list[str] = []  # of those, the ones whose every member is answered


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

    def __init__(
        self,
        policy: AccessPolicy,
        *,
        clock: Clock = SYSTEM_CLOCK,
        state: PairingState | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._pending: dict[str, PendingPairing] = {}
        self._approved: dict[tuple[str, str, str], ApprovedSender] = {}
        for p in state.pending if state else []:
            self._pending[p.code] = p
        for a in state.approved if state else []:
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
        if self.policy.require_mention and not msg.mentioned:
            return Decision("deny", reason="not_mentioned")
        if msg.chat_id not in self.policy.group_allow:  # closed unless listed
            return Decision("deny", reason="group_not_allowed")
        if msg.chat_id in self.policy.group_any_member:
            return Decision("allow", reason="group_any_member")
        if self._sender_passes(msg):
            return Decision("allow", reason="group_member")
        return Decision("deny", reason="group_sender_not_allowed")

    def _sender_passes(self, msg: InboundMessage) -> bool:
        """The DM policy without its pairing step: allowlisted, open, or already paired."""
        if msg.sender_id in self.policy.allow_from or self.policy.dm_policy == "open":
            return True
        paired = (msg.channel, msg.account, msg.sender_id) in self._approved
        return self.policy.dm_policy == "pairing" and paired

    def _pair(self, msg: InboundMessage) -> Decision:
        self.purge_expired()
        for p in self._pending.values():
            if (p.channel, p.account, p.sender_id) == (msg.channel, msg.account, msg.sender_id):
                return Decision("pair", p.code, self._code_text(p), reason="pairing_pending")
        waiting = [
            p
            for p in self._pending.values()
            if (p.channel, p.account) == (msg.channel, msg.account)
        ]
        if len(waiting) >= MAX_PENDING:
            return Decision(
                "pair",
                None,
                "Hi! I can't take new pairing requests right now. Please try again later.",
                reason="pairing_full",
            )
        code = new_code()
        while code in self._pending:
            code = new_code()
        now = self._clock.time()
        p = PendingPairing(
            code=code,
            channel=msg.channel,
            account=msg.account,
            sender_id=msg.sender_id,
            sender_name=msg.sender_name,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        self._pending[code] = p
        return Decision("pair", code, self._code_text(p), reason="pairing_new")

    @staticmethod
    def _code_text(p: PendingPairing) -> str:
        return (
            f"Hi! I don't know you yet. Your pairing code is {p.code} (valid for 1 hour). "
            f"Ask my owner to run: moltbot pairing approve {p.channel} {p.code}"
        )

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
            channel=p.channel,
            account=p.account,
            sender_id=p.sender_id,
            approved_at=self._clock.time(),
        )
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
    def from_json(
        cls, data: bytes | str, policy: AccessPolicy, *, clock: Clock = SYSTEM_CLOCK
    ) -> Pairing:
        book = cls(policy, clock=clock, state=msgspec.json.decode(data, type=PairingState))
        book.purge_expired()
        return book


class RefusalAudit:
    """Audits refused messages (``REFUSALS``) without letting a flood flood the log: at most
    one record per (chat, sender, reason) per ``window_s``; the next one says how many were
    dropped meanwhile. The table is bounded (oldest entries go first)."""

    def __init__(
        self,
        sink: Callable[[str, dict[str, Any]], None] | None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        window_s: float = 60.0,
        max_keys: int = 1024,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._window = window_s
        self._max = max_keys
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}  # -> (when, suppressed)

    def refused(self, msg: InboundMessage, decision: Decision) -> bool:
        """Record ``msg``'s refusal if it is one and not throttled; True when recorded."""
        if self._sink is None or decision.action != "deny" or decision.reason not in REFUSALS:
            return False
        key = (msg.chat_id, msg.sender_id, decision.reason)
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._window:
            self._last[key] = (last[0], last[1] + 1)
            return False
        self._last.pop(key, None)
        while len(self._last) >= self._max:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (now, 0)
        fields: dict[str, Any] = {
            "channel": msg.channel,
            "account": msg.account,
            "chat_id": msg.chat_id,
            "sender_id": msg.sender_id,
            "group": msg.is_group,
            "reason": decision.reason,
        }
        if last is not None and last[1]:
            fields["suppressed"] = last[1]
        try:
            self._sink("access_refused", fields)
        except Exception:  # the audit sink must not break the message path
            log.exception("refused message from %s not audited", msg.channel)
            return False
        return True
