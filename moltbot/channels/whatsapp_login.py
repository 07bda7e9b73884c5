"""Linking and unlinking a WhatsApp web-mode account (``moltbot channels login|logout``).

Linking starts a fresh device session, shows each QR code WhatsApp issues (they rotate about
every 20 s) until the phone scans one (WhatsApp > Settings > Linked devices > Link a device),
then saves the session encrypted (``moltbot.channels.whatsapp_session``). Unlinking tells
WhatsApp to remove the device when it can be reached, then deletes the session here either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from moltbot.channels.whatsapp_port import WaClient, WaConnected, WaLoggedOut, WaPaired, WaQr
from moltbot.channels.whatsapp_session import SessionFile
from moltbot.errors import ConfigError, PlatformRejected, PlatformUnavailable

LINK_TIMEOUT_S = 180.0
UNLINK_TIMEOUT_S = 20.0


async def link_device(
    client: WaClient,
    session: SessionFile,
    show_qr: Callable[[str], None],
    *,
    timeout_s: float = LINK_TIMEOUT_S,
) -> str:
    """Link this account as a new device; the JID it was linked as."""
    if session.exists():
        raise ConfigError(
            f"$.channels.whatsapp[account={session.account}]",
            "this account is already linked",
            f"unlink it first: moltbot channels logout whatsapp:{session.account}",
        )
    db = await asyncio.to_thread(session.open, fresh=True)
    try:
        await client.start(db)
        jid = ""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    ev = await client.next_event()
                    if isinstance(ev, WaQr):
                        show_qr(ev.code)
                    elif isinstance(ev, WaPaired):
                        jid = ev.jid
                    elif isinstance(ev, WaConnected) and (jid or ev.jid):
                        jid = jid or ev.jid
                        break
                    elif isinstance(ev, WaLoggedOut):
                        raise PlatformRejected(
                            "WhatsApp refused to link this device", hint="try again"
                        )
        except TimeoutError:
            raise PlatformUnavailable(
                f"no QR code was scanned within {timeout_s:.0f} s",
                hint="run the login again and scan the code with WhatsApp > Linked devices",
            ) from None
        await asyncio.to_thread(session.save)
        return jid
    finally:
        await client.stop()
        await asyncio.to_thread(session.close, save=False)


async def unlink_device(
    client: WaClient, session: SessionFile, *, timeout_s: float = UNLINK_TIMEOUT_S
) -> bool:
    """Remove the linked device: True when WhatsApp confirmed it; the session here is deleted
    in any case (then remove "moltbot" under Linked devices on the phone by hand)."""
    if not session.exists():
        return False
    confirmed = False
    db = await asyncio.to_thread(session.open)
    try:
        await client.start(db)
        async with asyncio.timeout(timeout_s):
            while not isinstance(await client.next_event(), WaConnected | WaLoggedOut):
                pass
        await client.logout()
        confirmed = True
    except (TimeoutError, PlatformUnavailable, PlatformRejected):
        confirmed = False
    finally:
        await client.stop()
        await asyncio.to_thread(session.close, save=False)
        session.remove()
    return confirmed
