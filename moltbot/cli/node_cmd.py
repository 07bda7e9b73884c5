"""``moltbot node join | leave``: add this machine to a home-lab moltbot cluster (Ray).

On the head: set ``cluster.head_ip`` to its LAN address, `moltbot up`, and copy the Ray token
from the head's ``~/.ray/auth_token``. On each other machine:
``moltbot node join HEAD_IP:6379 --token-file auth_token --resources '{"signal_box": 1}'``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.errors import ConfigError


def _resources(text: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(
            "--resources", "not JSON", fix="e.g. --resources '{\"gpu_box\": 1}'"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and v >= 0 for k, v in data.items()
    ):
        raise ConfigError("--resources", "must map names to numbers >= 0", fix='{"gpu_box": 1}')
    return {k: float(v) for k, v in data.items()}


def _labels(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                "--labels", f"{item!r} is not KEY=VALUE", fix="e.g. --labels zone=attic"
            )
        out[key] = value
    return out


def cmd_join(args: argparse.Namespace) -> int:
    from actors import control

    token = Path(args.token_file).read_text().strip() if args.token_file else None
    node = control.join_node(
        paths.home(),
        args.address,
        resources=_resources(args.resources),
        labels=_labels(args.labels or []),
        token=token,
        node_ip=args.node_ip,
    )
    print(f"joined {args.address} (this node's Ray files: {node.temp_dir}); `moltbot node leave`")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    from actors import control

    print(f"left: {control.leave_nodes(paths.home())} node(s) stopped")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="join this machine to a home-lab cluster, or leave it")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    j = nsub.add_parser("join", help="ray start --address ADDRESS, as a managed daemon")
    j.add_argument("address", help="the head's HOST:PORT (cluster.head_ip:head_port)")
    j.add_argument("--resources", default="{}", help="custom resources, e.g. '{\"signal_box\": 1}'")
    j.add_argument("--labels", nargs="*", help="node labels KEY=VALUE")
    j.add_argument("--token-file", help="a copy of the head's ~/.ray/auth_token")
    j.add_argument("--node-ip", default="127.0.0.1", help="this machine's address the head sees")
    j.set_defaults(func=cmd_join)
    lv = nsub.add_parser("leave", help="stop the nodes this machine joined")
    lv.set_defaults(func=cmd_leave)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
