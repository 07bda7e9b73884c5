"""The record of the Ray head (or joined node) moltbot started on this machine."""

from __future__ import annotations

from pathlib import Path

import msgspec

from moltbot import paths
from moltbot.security.cluster_tls import TlsFiles


class Head(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    namespace: str
    temp_dir: str = ""
    pgid: int = 0  # 0: joined someone else's cluster; we never stop it
    dashboard: str = ""
    node_ip: str = ""  # a joined node: this machine's address in the cluster
    tls: TlsFiles | None = None  # a home-lab cluster: Ray's mutual TLS (cluster_tls)


def head_file(home: Path) -> Path:
    return paths.run_dir(home) / "ray.json"


def read_head(home: Path) -> Head | None:
    try:
        return msgspec.json.decode(head_file(home).read_bytes(), type=Head)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
