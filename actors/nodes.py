"""A machine joining a home-lab cluster (``moltbot node join``) and leaving it again: Ray
started here as a managed daemon, with the invite's certificates when the head uses TLS."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import msgspec

from actors.control import (
    RAY_ENV,
    Head,
    _ray_bin,
    stop_head,
    worker_env,
)
from actors.ray_lean import node_flags
from actors.ray_temp import node_temp_dir
from actors.ray_token import has_token, token_path
from moltbot import paths
from moltbot.errors import SupervisionError
from moltbot.netaddr import is_loopback
from moltbot.security import cluster_tls
from moltbot.security.cluster_tls import TlsFiles

__all__ = ["RAY_ENV", "join_node", "leave_nodes", "local_ip_towards", "speaks_tls"]


def join_node(
    home: Path,
    address: str,
    *,
    resources: dict[str, float],
    labels: dict[str, str],
    token: str | None,
    node_ip: str | None = None,
    tls: TlsFiles | None = None,
) -> Head:
    """``ray start --address`` this machine into a cluster, as a daemon we can stop later.

    ``address`` is the head's ``cluster.head_ip`` and Ray port (``moltbot up`` prints it; it is
    in the head's ``run/ray.json``). ``token``: the head's Ray token (else this machine's own
    ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``). ``node_ip``: the address the head reaches this
    machine at; by default the one this machine sends from towards the head. ``tls``: this
    node's certificates from an invite (a head started by ``moltbot up`` requires them).
    """
    if not token and not has_token():
        raise SupervisionError(
            f"no Ray token to join {address} with (looked in $RAY_AUTH_TOKEN and {token_path()})",
            hint="copy the head's ~/.ray/auth_token here and pass --token-file FILE",
        )
    node_ip = node_ip or local_ip_towards(address)
    nodes_dir = paths.run_dir(home) / "nodes"
    nodes_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tag = hashlib.sha256(f"{home.resolve()}:{address}:{time.time()}".encode()).hexdigest()[:10]
    temp_dir = node_temp_dir(tag)
    argv = [
        _ray_bin(),
        "start",
        f"--address={address}",
        "--block",
        f"--temp-dir={temp_dir}",
        f"--node-ip-address={node_ip}",
        *node_flags(),  # leaves out Ray's processes the tree does not use
        f"--resources={json.dumps(resources)}",
    ]
    if labels:
        argv.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
    env = worker_env()
    if token:
        env["RAY_AUTH_TOKEN"] = token
    if tls is not None:
        env.update(cluster_tls.env(tls))
    elif speaks_tls(address):
        raise SupervisionError(
            f"the head at {address} only takes nodes with a certificate of its cluster",
            hint=f"on the head: moltbot node invite {node_ip} --out FILE; here: "
            "moltbot node join --invite FILE",
        )
    if not is_loopback(node_ip):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
    log_path = nodes_dir / f"{tag}.log"
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    node = Head(
        address=address, namespace="", temp_dir=temp_dir, pgid=proc.pid, node_ip=node_ip, tls=tls
    )
    (nodes_dir / f"{tag}.json").write_bytes(msgspec.json.encode(node))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SupervisionError(f"the node could not join {address}; see {log_path}")
        if b"Ray runtime started" in log_path.read_bytes():
            return node
        time.sleep(0.2)
    stop_head(node)
    raise SupervisionError(f"the node did not join {address} in 90 s; see {log_path}")


def speaks_tls(address: str, timeout: float = 5.0) -> bool:
    """Whether the Ray port at ``address`` answers a TLS hello (a head with cluster TLS)."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # a probe: nothing is sent
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as tls:
                return bool(tls.version())
    except ssl.SSLError as exc:  # an alert from a TLS server: it wants a client certificate
        return "WRONG_VERSION" not in str(exc.reason) and "RECORD_LAYER" not in str(exc.reason)
    except OSError:
        return False


def local_ip_towards(address: str) -> str:
    """This machine's source address for traffic to ``address`` (``HOST:PORT``): the one the
    head sees. No packet is sent (a UDP socket only picks its route)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])
    except OSError:
        raise SupervisionError(
            f"no route from here to {host}", hint="check the address, or pass --node-ip"
        ) from None


def leave_nodes(home: Path) -> int:
    """Stop every node this home joined. Returns how many were stopped."""
    count = 0
    for record in sorted((paths.run_dir(home) / "nodes").glob("*.json")):
        try:
            node = msgspec.json.decode(record.read_bytes(), type=Head)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        stop_head(node)
        record.unlink(missing_ok=True)
        count += 1
    return count
