"""Webhooks: an HTTP request a platform makes to the gateway, carried to the channel that
owns it (``/hooks/<channel>/<account>``), and the answer that goes back.

The gateway only parses and routes; the channel decides (it holds the secrets that verify a
request). Both structs cross actors, so they are frozen msgspec Structs. ``audit``: fields of
an audit record the receiving side writes for a refused request (a bad signature), never a
secret.
"""

from __future__ import annotations

import msgspec

MAX_BODY = 1 << 20  # bytes of a webhook body at most (Meta's payloads are far smaller)


class HookRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str  # "GET" | "POST"
    channel: str
    account: str
    query: str = ""  # the raw query string
    headers: dict[str, str] = {}  # names lower-cased; a repeated header: its first value
    body: bytes = b""
    address: str = ""  # the peer's address (for the audit log)


class HookReply(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    audit: dict[str, str] | None = None  # a refusal worth an audit record


def refused(status: int, text: str, reason: str, req: HookRequest) -> HookReply:
    """A refusal with its audit record (``reason`` names why; the address says from where)."""
    fields = {
        "channel": req.channel,
        "account": req.account,
        "method": req.method,
        "reason": reason,
        "address": req.address,
    }
    return HookReply(status=status, body=text, audit=fields)
