"""``TreeControl``: what the ``moltbot`` commands need from a running (or starting) tree.

The CLI asks ``tree_control()`` for the implementation (over Ray: ``actors.tree_control``),
named by the ``moltbot.tree_control`` entry point in the package's metadata; it never imports
``actors`` itself. ``Root`` is the implementation's handle of the tree's root, opaque here."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from moltbot.cluster.head import Head
from moltbot.config.schema import Config
from moltbot.errors import MoltbotError
from moltbot.security.cluster_tls import TlsFiles

ENTRY_POINT_GROUP = "moltbot.tree_control"
Root = Any


class TreeControl(Protocol):
    # --- the head on this machine -----------------------------------------------------------
    def read_head(self, home: Path) -> Head | None: ...
    def head_alive(self, head: Head) -> bool: ...
    def start_head(self, cfg: Config, home: Path, *, vault_passphrase: str | None) -> Head: ...
    def stop_head(self, head: Head, home: Path | None = None) -> int: ...
    def token_path(self) -> Path: ...

    # --- the tree ---------------------------------------------------------------------------
    def connect(self, head: Head) -> None: ...
    def boot(
        self, cfg: Config, home: Path, *, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> Root: ...
    def attach(self, home: Path) -> tuple[Head, Root]: ...
    def root_handle(self, namespace: str) -> Root | None: ...
    def wait_for_stop_request(
        self, root: Root, on_waiting: Callable[[], None] | None = None
    ) -> str | None: ...
    def stop_tree(self, root: Root) -> None: ...
    def tree_status(self, root: Root) -> dict[str, Any]: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def accounts_held(self) -> dict[str, dict[str, float]]: ...
    def kill(self, namespace: str, name: str, how: str) -> str: ...
    def actor_call(self, namespace: str, path: str, method: str, *args: Any) -> Any: ...

    # --- machines joining a home-lab cluster ------------------------------------------------
    def join_node(
        self,
        home: Path,
        address: str,
        *,
        resources: dict[str, float],
        labels: dict[str, str],
        token: str | None,
        node_ip: str | None = None,
        tls: TlsFiles | None = None,
    ) -> Head: ...
    def leave_nodes(self, home: Path) -> int: ...


def tree_control() -> TreeControl:
    """The installed implementation (``pip install -e .`` registers the Ray one)."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    for ep in found:
        control: TreeControl = ep.load()()
        return control
    raise MoltbotError(
        "no tree control is installed with this moltbot",
        hint="reinstall it: pip install -e . (make install)",
    )
