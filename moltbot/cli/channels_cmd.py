"""``moltbot channels login|logout whatsapp:<account>``: link moltbot as a device of your own
WhatsApp (web mode) by scanning a QR code shown in the terminal, or unlink it.

``login`` keeps the session encrypted under ``$MOLTBOT_HOME/whatsapp/`` with a key it stores in
the vault (``whatsapp_session.<account>``) only once the link succeeded, so a running tree that
parked the account starts it as soon as it sees the new secret. While it waits for the scan it
also publishes the code for the web page (``moltbot.channels.whatsapp_qr``). ``logout`` asks
WhatsApp to remove the device, then deletes the session file and its key. Both are audited
(``config_change``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from moltbot import paths
from moltbot.channels.whatsapp_login import link_device, unlink_device
from moltbot.channels.whatsapp_neonize import NeonizeClient
from moltbot.channels.whatsapp_port import WaClient
from moltbot.channels.whatsapp_qr import LinkBoard
from moltbot.channels.whatsapp_session import SessionFile, decode_key, key_name, new_key
from moltbot.cli.config_cmd import config_path
from moltbot.cli.trail import Changes
from moltbot.config.loader import load_config
from moltbot.config.schema import WhatsAppAccount
from moltbot.errors import ConfigError
from moltbot.security.vault import Vault


def _account(args: argparse.Namespace) -> WhatsAppAccount:
    kind, _, name = str(args.target).partition(":")
    if kind != "whatsapp" or not name:
        raise ConfigError(
            "channels login",
            f"{args.target!r} is not a linkable account",
            "name a WhatsApp web-mode account: moltbot channels login whatsapp:<account>",
        )
    cfg = load_config(config_path(args))
    for i, acct in enumerate(cfg.channels.whatsapp):
        if acct.account == name:
            if acct.mode != "web":
                raise ConfigError(
                    f"$.channels.whatsapp[{i}].mode",
                    "a cloud-mode account is not linked by QR",
                    'set "mode": "web" to link your own WhatsApp, or set up the Cloud API webhook',
                )
            return acct
    raise ConfigError(
        "$.channels.whatsapp",
        f"no WhatsApp account {name!r} in the config",
        f'add {{"account": "{name}", "mode": "web"}} to channels.whatsapp',
    )


def show_qr(code: str) -> None:
    import segno

    print("\nScan with WhatsApp > Settings > Linked devices > Link a device:\n", flush=True)
    segno.make_qr(code).terminal(out=sys.stdout, compact=True)
    print("(the code changes every ~20 s; waiting for the scan)", flush=True)


async def login(client: WaClient, account: str, vault: Vault, board: LinkBoard) -> str:
    """Link ``account``: each QR to the terminal and to the web page's board; the session key
    into the vault once linked, and only then the board says ``linked``."""
    name = key_name(account)
    fresh = name not in vault
    key = new_key() if fresh else vault.get(name)
    session = SessionFile(account, decode_key(key))

    def shown(code: str) -> None:
        board.tell(account, "waiting", code)
        show_qr(code)

    try:
        jid = await link_device(client, session, shown)
        if fresh:
            vault.set(name, key)
    except BaseException:
        board.tell(account, "failed")
        raise
    Changes("cli:channels login").record("vault", "set", secret_name=name, replaced=not fresh)
    board.tell(account, "linked")
    return jid


def cmd_login(args: argparse.Namespace) -> int:
    acct = _account(args)
    vault = Vault.open(paths.home())
    jid = asyncio.run(login(NeonizeClient(acct.account), acct.account, vault, LinkBoard()))
    session = SessionFile(acct.account, decode_key(vault.get(key_name(acct.account))))
    print(f"linked whatsapp:{acct.account} as {jid.split(':', 1)[0].split('@', 1)[0]}")
    print(f"the session is kept encrypted in {session.path}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    acct = _account(args)
    vault = Vault.open(paths.home())
    name = key_name(acct.account)
    if name not in vault:
        print(f"whatsapp:{acct.account} is not linked here")
        return 0
    session = SessionFile(acct.account, decode_key(vault.get(name)))
    confirmed = asyncio.run(unlink_device(NeonizeClient(acct.account), session))
    vault.delete(name)
    Changes("cli:channels logout").record("vault", "delete", secret_name=name)
    print(f"whatsapp:{acct.account}: the session and its key are deleted here")
    if not confirmed:
        print("WhatsApp could not be told: remove 'moltbot' under Linked devices on the phone")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("channels", help="link or unlink a channel account (WhatsApp web mode)")
    csub = p.add_subparsers(dest="channels_command", metavar="ACTION", required=True)
    login = csub.add_parser("login", help="link a WhatsApp account by QR code")
    login.add_argument("target", help="whatsapp:<account>")
    login.set_defaults(func=cmd_login)
    logout = csub.add_parser("logout", help="unlink a WhatsApp account and delete its session")
    logout.add_argument("target", help="whatsapp:<account>")
    logout.set_defaults(func=cmd_logout)
