# ruff: noqa: I001  (actors must be imported before ray: it pins Ray to loopback)
"""Run by test_placement_cluster.py in its own process (a multi-node Ray on this machine with
``ray.cluster_utils.Cluster``; one process can hold only one Ray). Prints one JSON line."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import actors  # noqa: F401 - pins Ray to loopback before ray is imported
import ray
from ray.cluster_utils import Cluster

from actors.supervisor import Supervisor
from moltbot.config.loader import load_config_text
from moltbot.supervision.spec import Backoff, ChildSpec, ChildType, SupervisorFlags
from moltbot.supervision.tree import HEAD, build_tree, resources_for

CONFIG = {
    # an agent profile on the local model of the GPU box: its own pool, placed there
    "agent": {"profiles": {"local": {"placement": {"gpu_box": 0.01}}}},
    "cluster": {
        "placement": {
            "channels/signal:*": {"resources": {"signal_box": 0.01}},
            "tools/*": {"resources": {"sandbox_box": 0.01}},
        }
    },
}


def wait(cond: Any, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def main() -> None:
    cfg = load_config_text(json.dumps(CONFIG))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "object_store_memory": 100 * 1024 * 1024},
    )
    signal_node = cluster.add_node(
        num_cpus=1, resources={"signal_box": 1}, object_store_memory=80 * 1024 * 1024
    )
    sandbox_node = cluster.add_node(
        num_cpus=1, resources={"sandbox_box": 1}, object_store_memory=80 * 1024 * 1024
    )
    gpu_node = cluster.add_node(
        num_cpus=1, resources={"gpu_box": 1}, object_store_memory=80 * 1024 * 1024
    )
    ray.init(address=cluster.address, log_to_driver=False)
    ns = f"c-{uuid.uuid4().hex[:6]}"
    flags = SupervisorFlags(
        intensity=20, period=60, backoff=Backoff(base_s=0.05, max_s=0.5), ping_interval_s=0.5
    )

    def worker(path: str) -> ChildSpec:
        return ChildSpec(
            id=path.split("/")[-1], kind="worker", resources=resources_for(cfg, path), shutdown=2
        )

    def sup(cid: str, kids: list[ChildSpec]) -> ChildSpec:
        return ChildSpec(
            id=cid,
            kind="supervisor",
            child_type=ChildType.SUPERVISOR,
            shutdown=20,
            resources=dict(HEAD),
            args={"flags": flags, "children": kids},
        )

    [agents] = [c for c in build_tree(cfg) if c.id == "agents"]
    pool = [  # the built tree's specs of the profile's pool, as plain workers
        ChildSpec(id=c.id, kind="worker", resources=c.resources, shutdown=2)
        for c in agents.args["children"]
        if c.id.startswith("profile:")
    ]
    children = [
        worker("store"),
        sup("agents", pool),
        sup("tools", [worker("tools/sandbox-0")]),
        sup("channels", [worker("channels/telegram:main"), worker("channels/signal:phone")]),
    ]
    root = Supervisor.options(
        name="moltbot", namespace=ns, num_cpus=0, resources=dict(HEAD)
    ).remote(path="", flags=flags, children=children, namespace=ns)
    ray.get(root.start_detached.remote())
    ray.get(root.ready.remote(), timeout=120)

    def flat() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}

        def walk(n: dict[str, Any]) -> None:
            for c in n.get("children", []):
                out[c["name"]] = c
                walk(c)

        walk(ray.get(root.status.remote(), timeout=30))
        return out

    sig, sbx = "moltbot.channels.signal:phone", "moltbot.tools.sandbox-0"
    gpu = "moltbot.agents.profile:local-0"
    wait(lambda: all(flat()[n]["state"] == "running" for n in (sig, sbx, gpu)))
    first = flat()
    result: dict[str, Any] = {
        "nodes": {
            "head": cluster.head_node.node_id,
            "signal": signal_node.node_id,
            "sandbox": sandbox_node.node_id,
            "gpu": gpu_node.node_id,
        },
        "placed": {name: first[name]["node"] for name in first},
        "states": {name: first[name]["state"] for name in first},
    }
    cluster.remove_node(signal_node)  # the Signal box goes away
    wait(lambda: flat()[sig]["state"] == "waiting" and flat()[sig]["restarts"] >= 1, 180)
    gone = flat()
    result["after_removal"] = {"signal": gone[sig]["state"], "restarts": gone[sig]["restarts"]}
    lost = signal_node.node_id
    result["untouched"] = {  # actors on the other nodes: same process, no restart
        n: (gone[n]["pid"] == first[n]["pid"] and gone[n]["restarts"] == 0)
        for n in first
        if first[n]["node"] != lost
    }
    moved = [n for n in first if first[n]["node"] == lost and n != sig]
    wait(lambda: all(flat()[n]["state"] == "running" for n in moved), 180)
    result["moved"] = {  # unpinned actors that were on the lost node: restarted elsewhere
        n: (flat()[n]["state"], flat()[n]["node"] != lost) for n in moved
    }
    new_node = cluster.add_node(
        num_cpus=1, resources={"signal_box": 1}, object_store_memory=80 * 1024 * 1024
    )
    wait(lambda: flat()[sig]["state"] == "running", 180)
    back = flat()
    result["after_rejoin"] = {"state": back[sig]["state"], "node": back[sig]["node"]}
    result["new_node"] = new_node.node_id
    ray.get(root.stop.remote(), timeout=60)
    ray.kill(root)
    ray.shutdown()
    cluster.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
