"""``TreeControl`` over Ray (``moltbot.cluster.control``): the ``moltbot`` commands' way into
a tree, registered as the ``moltbot.tree_control`` entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors import control, nodes, ray_token
from moltbot.cluster.head import Head
from moltbot.config.schema import Config
from moltbot.security.cluster_tls import TlsFiles


class RayTreeControl:
    def read_head(self, home: Path) -> Head | None:
        return control.read_head(home)

    def head_alive(self, head: Head) -> bool:
        return bool(control.head_processes(head))

    def start_head(self, cfg: Config, home: Path, *, vault_passphrase: str | None) -> Head:
        return control.start_head(cfg, home, vault_passphrase=vault_passphrase)

    def stop_head(self, head: Head, home: Path | None = None) -> int:
        return control.stop_head(head, home)

    def token_path(self) -> Path:
        return ray_token.token_path()

    def connect(self, head: Head) -> None:
        control.connect(head)

    def boot(
        self, cfg: Config, home: Path, *, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> Any:
        return control.boot(cfg, home, progress=progress)

    def attach(self, home: Path) -> tuple[Head, Any]:
        return control.attach(home)

    def root_handle(self, namespace: str) -> Any | None:
        return control.root_handle(namespace)

    def wait_for_stop_request(
        self, root: Any, on_waiting: Callable[[], None] | None = None
    ) -> str | None:
        return control.wait_for_stop_request(root, on_waiting)

    def stop_tree(self, root: Any) -> None:
        control.stop_tree(root)

    def tree_status(self, root: Any) -> dict[str, Any]:
        return control.tree_status(root)

    def nodes(self) -> list[dict[str, Any]]:
        return control.nodes()

    def accounts_held(self) -> dict[str, dict[str, float]]:
        return control.accounts_held()

    def kill(self, namespace: str, name: str, how: str) -> str:
        return control.kill(namespace, name, how)

    def actor_call(self, namespace: str, path: str, method: str, *args: Any) -> Any:
        return control.actor_call(namespace, path, method, *args)

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
    ) -> Head:
        return nodes.join_node(
            home, address, resources=resources, labels=labels, token=token, node_ip=node_ip, tls=tls
        )

    def leave_nodes(self, home: Path) -> int:
        return nodes.leave_nodes(home)
