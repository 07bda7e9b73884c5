"""``moltbot up | down | status | kill``: run and watch the supervision tree.

The Ray work is in ``actors.control`` (imported inside each command): ``moltbot/`` itself never
imports Ray.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.cli.progress import StartProgress
from moltbot.cli.render import nodes_table, table
from moltbot.cluster.control import tree_control
from moltbot.cluster.head import Head
from moltbot.config.loader import load_config
from moltbot.config.schema import Config
from moltbot.errors import NotRunning, VaultKeyError
from moltbot.netaddr import is_loopback
from moltbot.security import cluster_tls
from moltbot.security.vault import PASSPHRASE_ENV, Vault, needs_passphrase


def _config(args: argparse.Namespace) -> Config:
    from moltbot.cli.config_cmd import config_path

    return load_config(config_path(args))


def _provider_note(cfg: Config) -> str:
    if cfg.agent.providers:
        return "providers, tried in order: " + "; ".join(
            f"{p.name or p.kind} ({', '.join(p.models) or 'echo'})" for p in cfg.agent.providers
        )
    if cfg.agent.provider == "offline":
        return (
            "provider: offline (echo, no API key needed). To talk to Claude: "
            '`moltbot secrets set anthropic_api_key` and set agent.provider to "anthropic".'
        )
    return f"provider: anthropic, models {', '.join(cfg.agent.models)}"


def _vault_passphrase(home: Path) -> str | None:
    """A passphrase vault's passphrase, checked (``MOLTBOT_VAULT_PASSPHRASE``, else asked for
    on a terminal), for the vault agent; None for a key-file vault or no vault."""
    if not Vault.exists(home) or not needs_passphrase(home):
        return None
    passphrase = os.environ.get(PASSPHRASE_ENV, "")
    if not passphrase and sys.stdin.isatty():
        passphrase = getpass.getpass("vault passphrase: ")
    if not passphrase or "\n" in passphrase:
        raise VaultKeyError(
            "the vault is locked with a passphrase and none was given",
            hint=f"set {PASSPHRASE_ENV} for `moltbot up`, or run it in a terminal to be asked",
        )
    Vault.open(home, passphrase)  # a wrong one is refused here, before Ray starts
    return passphrase


def cmd_up(args: argparse.Namespace) -> int:
    from moltbot.cli.config_cmd import check_gateway_secrets

    cfg = _config(args)
    check_gateway_secrets(cfg)  # no gateway without a strong token: refused before Ray starts
    home = paths.home()
    if not cfg.cluster.address and not is_loopback(cfg.cluster.head_ip):
        # a home-lab head: mutual TLS between nodes, set before Ray is imported (it reads once)
        cluster_tls.use_for_ray(cluster_tls.head_files(home, cfg.cluster.head_ip))
    control = tree_control()

    if cfg.cluster.address:
        head = Head(address=cfg.cluster.address, namespace=cfg.cluster.namespace)
    else:
        running = control.read_head(home)
        if running is not None and control.head_alive(running):
            raise NotRunning(
                "moltbot is already running here", hint="see `moltbot status`, or `moltbot down`"
            )
        passphrase = _vault_passphrase(home)
        print(f"starting Ray (head on {cfg.cluster.head_ip}) ...", flush=True)
        head = control.start_head(cfg, home, vault_passphrase=passphrase)
    started = time.monotonic()
    progress = StartProgress()
    try:
        control.connect(head)
        root = control.boot(cfg, home, progress=progress)
    except BaseException:
        progress.done()
        if head.pgid:
            control.stop_head(head, home)
        raise
    progress.done()
    gw = cfg.gateway
    scheme = "https" if gw.tls else "http"
    print(f"moltbot is up in {time.monotonic() - started:.1f}s (Ray at {head.address})")
    print(f"  gateway:   {scheme}://{gw.bind}:{gw.port}/  (web page; log in with the token")
    print("             from `moltbot secrets get gateway_token`; or `moltbot chat`)")
    if head.dashboard:
        print(f"  dashboard: {head.dashboard}")
    print(f"  {_provider_note(cfg)}")
    if head.pgid and not is_loopback(head.address):
        print("  add a machine (Ray traffic between machines is mutual TLS):")
        print("             moltbot node invite ITS_IP --out FILE      (here)")
        print("             moltbot node join --invite FILE            (there)")
    if args.detach:
        print("running in the background: `moltbot status`, `moltbot down`")
        return 0
    outcome = control.wait_for_stop_request(
        root, on_waiting=lambda: print("Ctrl-C stops it.", flush=True)
    )
    if outcome is None:
        print("\nstopping (reverse order) ...", flush=True)
        control.stop_tree(root)
        code = 0
    else:
        print(f"the tree stopped: {outcome}", file=sys.stderr)
        code = 1
    if head.pgid:
        control.stop_head(head, home)
    print("moltbot is down", flush=True)
    return code


def cmd_down(args: argparse.Namespace) -> int:
    control = tree_control()

    home = paths.home()
    head = control.read_head(home)
    if head is None:
        print("moltbot is not running")
        return 0
    try:
        control.connect(head)
        root = control.root_handle(head.namespace)
        if root is not None:
            control.stop_tree(root)
            print("tree stopped")
    except Exception as exc:  # the head may be half dead: still clean up its processes
        print(f"could not stop the tree cleanly ({type(exc).__name__}); ending processes")
    joined = control.leave_nodes(home)
    if joined:
        print(f"stopped {joined} joined node(s)")
    left = control.stop_head(head, home)
    if left:
        print(f"{left} Ray processes did not exit", file=sys.stderr)
        return 1
    print("moltbot is down")
    return 0


Nodes = list[dict[str, Any]]
Accounts = dict[str, dict[str, float]]


def _status(args: argparse.Namespace) -> tuple[Any, dict[str, Any], tuple[Nodes, Accounts]]:
    control = tree_control()

    head, root = control.attach(paths.home())
    return head, control.tree_status(root), (control.nodes(), control.accounts_held())


def cmd_status(args: argparse.Namespace) -> int:
    head, status, (nodes, accounts) = _status(args)
    if args.json:
        out = {
            "ray": head.address,
            "dashboard": head.dashboard,
            "tree": status,
            "nodes": nodes,
            "accounts": accounts,
        }
        print(json.dumps(out))
    else:
        print(
            f"Ray: {head.address}" + (f"   dashboard: {head.dashboard}" if head.dashboard else "")
        )
        print(table(status))
        print()
        print(nodes_table(nodes))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    control = tree_control()

    head, _root = control.attach(paths.home())
    full = control.kill(head.namespace, args.name, args.how)
    print(f"crashed {full} ({args.how}); its supervisor restarts it: see `moltbot status`")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="start the supervision tree (Ray, gateway, channels, ...)")
    p.add_argument("--detach", action="store_true", help="return once the tree is ready")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop the tree in reverse order and the Ray head we started")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="every actor: name, state, restarts, node, uptime")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("kill", help="crash one actor on purpose, to watch supervision work")
    p.add_argument("name", help="actor path or name, e.g. channels/telegram:main")
    p.add_argument("--how", choices=["kill", "raise", "exit", "hang"], default="kill")
    p.set_defaults(func=cmd_kill)
