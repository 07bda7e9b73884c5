"""``moltbot node invite | join | leave``: add a machine to a home-lab moltbot cluster (Ray).

On the head: set ``cluster.head_ip`` to its LAN address and `moltbot up` (it makes the cluster's
TLS CA). For each machine to add, on the head::

    moltbot node invite 192.168.1.20 --out node.invite     # that machine's address

copy ``node.invite`` (0600: it holds the Ray token and a key) to that machine, and there::

    moltbot node join --invite node.invite --resources '{"signal_box": 1}'

``moltbot node leave`` stops what ``join`` started here. A head not started by moltbot (no TLS)
is joined with ``moltbot node join HEAD_IP:PORT --token-file FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.cluster.control import tree_control
from moltbot.errors import ConfigError
from moltbot.security import cluster_tls
from moltbot.security.fsmodes import atomic_write

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


def cmd_invite(args: argparse.Namespace) -> int:
    control = tree_control()

    home = paths.home()
    head = control.read_head(home)
    if head is None or head.tls is None:
        raise ConfigError(
            "cluster.head_ip",
            "no home-lab head runs here",
            fix="set cluster.head_ip to this machine's LAN address and `moltbot up`",
        )
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip() or _token(str(control.token_path()))
    assert token is not None
    data = cluster_tls.make_invite(home, head.address, args.node_ip, token)
    out = Path(args.out or f"moltbot-node-{args.node_ip}.invite")
    atomic_write(out, data)
    print(f"wrote {out} (0600: it holds the cluster token and a key for {args.node_ip})")
    print("copy it to that machine and run there: moltbot node join --invite FILE")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    resources = _resources(args.resources)
    labels = _labels(args.labels or [])
    control = tree_control()

    home = paths.home()
    node_ip: str | None = args.node_ip
    tls: cluster_tls.TlsFiles | None = None
    token: str | None
    if args.invite:
        invite = cluster_tls.read_invite(Path(args.invite))
        address, token, node_ip = invite.address, invite.token, node_ip or invite.node_ip
        tag = hashlib.sha256(invite.cert.encode()).hexdigest()[:10]
        tls = cluster_tls.store_invite(cluster_tls.tls_dir(home) / f"node-{tag}", invite)
    elif args.address:
        address, token = _address(args.address), _token(args.token_file)
    else:
        raise ConfigError("--invite", "no head to join", fix=cluster_tls.INVITE_FIX)
    node = control.join_node(
        home, address, resources=resources, labels=labels, token=token, node_ip=node_ip, tls=tls
    )
    print(f"joined {address} as {node.node_ip} (Ray files: {node.temp_dir})")
    print("`moltbot status` on the head lists this node; `moltbot node leave` here stops it")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    control = tree_control()

    print(f"left: {control.leave_nodes(paths.home())} node(s) stopped")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="join this machine to a home-lab cluster, or leave it")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    i = nsub.add_parser("invite", help="on the head: an invite file for a machine to join")
    i.add_argument("node_ip", help="that machine's address, as the head reaches it")
    i.add_argument("--out", help="where to write it (default moltbot-node-NODE_IP.invite)")
    i.set_defaults(func=cmd_invite)
    j = nsub.add_parser("join", help="ray start --address ADDRESS, as a managed daemon")
    j.add_argument("address", nargs="?", help="a head without TLS: its Ray HOST:PORT")
    j.add_argument("--invite", help="the invite file `moltbot node invite` made on the head")
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
