"""``moltbot node join | leave``: add this machine to a home-lab moltbot cluster (Ray).

On the head: set ``cluster.head_ip`` to its LAN address and `moltbot up`; it prints the Ray
address (``HEAD_IP:PORT``, also in ``run/ray.json``) and the token file to copy
(``~/.ray/auth_token``). On each other machine::

    moltbot node join HEAD_IP:PORT --token-file auth_token --resources '{"signal_box": 1}'

``moltbot node leave`` stops what ``join`` started here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.errors import ConfigError

TOKEN_FIX = "copy the head's ~/.ray/auth_token to this machine and pass its path"  # noqa: S105


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


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "address",
            f"{text!r} is not HOST:PORT",
            fix="e.g. 192.168.1.10:6379, as `moltbot up` prints it",
        )
    return text


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "--token-file", f"cannot read {path} ({exc.strerror})", fix=TOKEN_FIX
        ) from None
    if not token:
        raise ConfigError("--token-file", f"{path} is empty", fix=TOKEN_FIX)
    return token


def cmd_join(args: argparse.Namespace) -> int:
    address = _address(args.address)
    resources = _resources(args.resources)
    labels = _labels(args.labels or [])
    token = _token(args.token_file)
    from actors import control

    node = control.join_node(
        paths.home(),
        address,
        resources=resources,
        labels=labels,
        token=token,
        node_ip=args.node_ip,
    )
    print(f"joined {address} as {node.node_ip} (Ray files: {node.temp_dir})")
    print("`moltbot status` on the head lists this node; `moltbot node leave` here stops it")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    from actors import control

    print(f"left: {control.leave_nodes(paths.home())} node(s) stopped")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="join this machine to a home-lab cluster, or leave it")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    j = nsub.add_parser("join", help="ray start --address ADDRESS, as a managed daemon")
    j.add_argument("address", help="the head's Ray HOST:PORT, as `moltbot up` prints it")
    j.add_argument("--resources", default="{}", help="custom resources, e.g. '{\"signal_box\": 1}'")
    j.add_argument("--labels", nargs="*", help="node labels KEY=VALUE")
    j.add_argument("--token-file", help="a copy of the head's ~/.ray/auth_token")
    j.add_argument(
        "--node-ip",
        help="this machine's address the head reaches (default: the one it sends from to the head)",
    )
    j.set_defaults(func=cmd_join)
    lv = nsub.add_parser("leave", help="stop the nodes this machine joined")
    lv.set_defaults(func=cmd_leave)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
