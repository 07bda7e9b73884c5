"""``moltbot pairing list | approve CHANNEL CODE | deny CHANNEL CODE``.

An unknown sender who writes to the bot (DM policy ``pairing``) gets an 8-character code; the
owner approves it here. CHANNEL is ``telegram:main`` (or just ``telegram`` when that channel
has one account); a plugin's channel is ``<channel>:<plugin>`` (``matrix:bridge``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, NamedTuple

from moltbot import paths
from moltbot.cli.config_cmd import config_path
from moltbot.cluster.control import tree_control
from moltbot.config.loader import load_config
from moltbot.errors import NotFound, NotRunning
from moltbot.supervision.tree import channel_ids, channel_plugins


class Target(NamedTuple):
    """Where a channel's pairing book lives: a channel actor, or a plugin actor (whose
    methods also take the plugin channel's name)."""

    cid: str  # telegram:main, or <channel>:<plugin> for a plugin's channel
    path: str
    lead: tuple[str, ...] = ()


def _targets(args: argparse.Namespace, namespace: str) -> list[Target]:
    control = tree_control()

    cfg = load_config(config_path(args))
    out = [Target(cid, f"channels/{cid}") for cid, _kind, _acct in channel_ids(cfg)]
    for plugin in channel_plugins(cfg):
        path = f"plugins/plugin:{plugin}"
        try:
            described = control.actor_call(namespace, path, "describe")
        except NotRunning:
            continue
        for channel in sorted(described.get("channel_status", {})):
            out.append(Target(f"{channel}:{plugin}", path, (channel,)))
    return out


def _resolve(targets: list[Target], name: str) -> Target:
    for t in targets:
        if t.cid == name:
            return t
    matches = [t for t in targets if t.cid.split(":", 1)[0] == name]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(
        f"no channel {name!r} (or more than one account)",
        hint="one of: " + ", ".join(t.cid for t in targets),
    )


def cmd_list(args: argparse.Namespace) -> int:
    control = tree_control()

    head, _root = control.attach(paths.home())
    rows: list[dict[str, Any]] = []
    for t in _targets(args, head.namespace):
        book = control.actor_call(head.namespace, t.path, "pairing_list", *t.lead)
        rows += [{**item, "channel": t.cid} for item in book.get("pending", [])]
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no pending pairing requests")
    for r in rows if not args.json else []:
        who = r.get("sender_name") or r.get("sender_id")
        print(f"{r['channel']}  {r.get('code', '?')}  from {who}")
    return 0


def _decide(args: argparse.Namespace, method: str) -> int:
    control = tree_control()

    head, _root = control.attach(paths.home())
    t = _resolve(_targets(args, head.namespace), args.channel)
    sender = control.actor_call(head.namespace, t.path, method, *t.lead, args.code, "cli")
    verb = "approved" if method == "pairing_approve" else "denied"
    print(f"{verb}: {sender} on {t.cid}")
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
