"""``moltbot doctor``'s live probe of every configured channel account: the account's own
adapter connects as it would in the tree (Telegram getMe, Slack auth.test, signal-cli's
accounts, Discord's current user, a BlueBubbles ping) and what the platform says becomes one
check with the fix. Accounts whose secrets do not resolve are left to the secrets check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from moltbot.channels.accounts import make_adapter
from moltbot.channels.base import MemoryCursors
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import ConfigError, MoltbotError, PlatformRejected, VaultError

PROBE_TIMEOUT_S = 15.0


async def _probe(
    kind: str, index: int, acct: Any, secret: Callable[[str, str], str]
) -> tuple[str, str, str, str] | None:
    """(status, name, detail, fix) for one account; None when its secrets do not resolve."""
    name = f"channel {kind}:{acct.account}"
    if kind == "whatsapp" and acct.mode == "web":  # never a second connection of the device
        from moltbot.channels.whatsapp import check_linked

        ok, detail, fix = check_linked(acct, secret)
        return ("ok" if ok else "FAIL"), name, detail, fix
    try:
        adapter = make_adapter(kind, index, acct, secret, cursor_store=MemoryCursors())
    except (ConfigError, VaultError):
        return None  # the secrets check says what is missing
    try:
        me = await asyncio.wait_for(adapter.connect(), PROBE_TIMEOUT_S)
    except PlatformRejected as exc:
        return "FAIL", name, exc.user_message, exc.hint
    except MoltbotError as exc:
        where = getattr(acct, "api_base", "") or "the platform"
        return (
            "FAIL",
            name,
            f"cannot reach {where}: {exc.user_message}",
            "check the network and that the service runs; moltbot retries it with backoff",
        )
    except TimeoutError:
        return (
            "FAIL",
            name,
            f"no answer within {PROBE_TIMEOUT_S:.0f}s",
            "check the network and the account's api_base",
        )
    finally:
        await adapter.close()
    who = me.get("username") or me.get("name") or me.get("id") or "ok"
    if kind == "whatsapp":  # cloud: Meta must reach the gateway's webhook
        hook = f"/hooks/whatsapp/{acct.account}"
        return "ok", name, f"connected as {who}; Meta must reach https://<public name>{hook}", ""
    return "ok", name, f"connected as {who}", ""


def probe_accounts(cfg: Config, vault_get: Callable[[str], str]) -> list[tuple[str, str, str, str]]:
    """Every enabled account's probe, all at once."""

    def secret(ref: str, at: str) -> str:
        return resolve_secret(ref, vault_get, at=at)

    jobs = [
        (kind, i, acct)
        for kind in CHANNEL_KINDS
        for i, acct in enumerate(getattr(cfg.channels, kind))
        if acct.enabled
    ]

    async def all_of() -> list[tuple[str, str, str, str] | None]:
        return list(await asyncio.gather(*(_probe(k, i, a, secret) for k, i, a in jobs)))

    if not jobs:
        return []
    return [r for r in asyncio.run(all_of()) if r is not None]
