"""The pairing desk of a :class:`~moltbot.channels.service.ChannelService`: list, approve and
deny pairing codes of its account, persist the book through the service's port, and audit each
decision (a code's first characters only)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from moltbot.channels.ports import Ports
from moltbot.security.access import Pairing
from moltbot.security.audit import AuditSink

log = logging.getLogger(__name__)
CODE_PREFIX = 2  # characters of a pairing code kept in the audit log (enough to tell codes apart)


class PairingOps:
    """Mixed into the channel service, which sets these attributes."""

    pairing: Pairing
    ports: Ports
    _audit: AuditSink | None

    @property
    def _chan(self) -> str:
        raise NotImplementedError

    @property
    def _acct(self) -> str:
        raise NotImplementedError

    async def save_pairing(self) -> None:
        await self.ports.save_pairing(self.pairing.to_json())

    def pairing_list(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "pending": [msgspec.to_builtins(p) for p in self.pairing.list_pending()],
            "approved": [msgspec.to_builtins(a) for a in self.pairing.list_approved()],
        }

    async def pairing_approve(self, code: str, by: str = "") -> str:
        """Approve a pending code (NotFound if unknown or expired); returns the sender id.
        ``by`` names who decided (``cli``, ``gateway:<address>``) for the audit log."""
        sender = self.pairing.approve(code)
        await self.save_pairing()
        self._audit_pairing("approved", sender, code, by)
        return sender

    async def pairing_deny(self, code: str, by: str = "") -> str:
        sender = self.pairing.deny(code)
        await self.save_pairing()
        self._audit_pairing("denied", sender, code, by)
        return sender

    def _audit_pairing(self, action: str, sender_id: str, code: str, by: str = "") -> None:
        if self._audit is None:
            return
        fields: dict[str, Any] = {
            "channel": self._chan,
            "account": self._acct,
            "action": action,
            "sender_id": sender_id,
            "code_prefix": code.strip().upper()[:CODE_PREFIX],
        }
        if action != "requested":
            fields["by"] = by or "unknown"
        try:
            self._audit("pairing", fields)
        except Exception:  # the audit sink must not break the message path
            log.exception("%s %s: pairing %s not audited", self._chan, self._acct, action)
