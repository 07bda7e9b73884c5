"""The gateway's ``whatsapp.link`` method: watch a WhatsApp link in progress and stream its QR
code to the (authenticated) page as ``whatsapp.qr`` events.

The link is made by ``moltbot channels login whatsapp:<account>`` on the gateway's machine: it
alone can put the session key in the vault (``moltbot.channels.whatsapp_qr``). This method
only observes: each time the code or the state changes it emits ``{"account", "state",
"rows"}`` (``rows``: the QR modules, '1' dark, drawn by the page), and it returns when the
link ends (``linked`` / ``failed``) or after ``wait_s``. It never carries the session, the key
or anything but the code the phone is to scan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from moltbot.channels.whatsapp_qr import LinkBoard, check_account, rows
from moltbot.gateway.frames import Params

MAX_WAIT_S = 300.0
POLL_S = 0.25
Emit = Callable[[str, Any], Awaitable[None]]


class WhatsAppLinkParams(Params, frozen=True):
    account: str
    wait_s: float = 180.0


async def watch_link(
    board: LinkBoard, p: WhatsAppLinkParams, emit: Emit, *, poll_s: float = POLL_S
) -> dict[str, Any]:
    account = check_account(p.account)
    deadline = time.monotonic() + max(0.0, min(p.wait_s, MAX_WAIT_S))
    shown: tuple[str, str] | None = None
    state = "none"
    while True:
        now = await asyncio.to_thread(board.read, account)
        state = now.state
        if (now.state, now.code) != shown:
            shown = (now.state, now.code)
            qr = await asyncio.to_thread(rows, now.code) if now.code else []
            await emit("whatsapp.qr", {"account": account, "state": now.state, "rows": qr})
        if state in ("linked", "failed") or time.monotonic() >= deadline:
            break
        await asyncio.sleep(poll_s)
    hint = f"run `moltbot channels login whatsapp:{account}` on the gateway's machine"
    return {"account": account, "state": state, "hint": hint if state == "none" else ""}
