"""``moltbot pairing list | approve CHANNEL CODE | deny CHANNEL CODE``.

An unknown sender who writes to the bot (DM policy ``pairing``) gets an 8-character code; the
owner approves it here. CHANNEL is ``telegram:main`` (or just ``telegram`` when that channel
has one account).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from moltbot import paths
from moltbot.cli.config_cmd import config_path
from moltbot.config.loader import load_config
from moltbot.errors import NotFound
from moltbot.supervision.tree import channel_ids


def _channels(args: argparse.Namespace) -> list[str]:
    return [cid for cid, _kind, _acct in channel_ids(load_config(config_path(args)))]


def _resolve(args: argparse.Namespace, name: str) -> str:
    ids = _channels(args)
    if name in ids:
        return name
    matches = [cid for cid in ids if cid.split(":", 1)[0] == name]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(
        f"no channel {name!r} (or more than one account)", hint="one of: " + ", ".join(ids)
    )


def cmd_list(args: argparse.Namespace) -> int:
    from actors import control

    head, _root = control.attach(paths.home())
    rows: list[dict[str, Any]] = []
    for cid in _channels(args):
        book = control.channel_call(head.namespace, cid, "pairing_list")
        rows += [{"channel": cid, **item} for item in book.get("pending", [])]
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no pending pairing requests")
    for r in rows if not args.json else []:
        who = r.get("sender_name") or r.get("sender_id")
        print(f"{r['channel']}  {r.get('code', '?')}  from {who}")
    return 0


def _decide(args: argparse.Namespace, method: str) -> int:
    from actors import control

    head, _root = control.attach(paths.home())
    cid = _resolve(args, args.channel)
    sender = control.channel_call(head.namespace, cid, method, args.code, "cli")
    verb = "approved" if method == "pairing_approve" else "denied"
    print(f"{verb}: {sender} on {cid}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("pairing", help="approve or deny people who asked to talk to the bot")
    psub = p.add_subparsers(dest="pairing_command", metavar="ACTION")
    lst = psub.add_parser("list", help="pending pairing codes")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
    for name, method in (("approve", "pairing_approve"), ("deny", "pairing_deny")):
        q = psub.add_parser(name, help=f"{name} a pairing code")
        q.add_argument("channel", help="telegram:main, or telegram when it has one account")
        q.add_argument("code")
        q.set_defaults(func=lambda a, m=method: _decide(a, m))
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
