"""The supervision tree, built from the config as pure data (``ChildSpec``s). Nothing starts here.

```
root (one_for_one)
├── store      ├── gateway      ├── agents → agent-0..N, profile:<name>-0..K   ├── tools → …
├── channels → telegram → telegram:<account> …, slack → slack:<account> …, signal → …
├── scheduler (unless schedule.enabled is false)      └── plugins → plugin:<name>
```

The accounts of one channel type share a process: ``channels/telegram`` is a supervisor with a
Ray worker process of its own (kind ``host``), and each Telegram account is a child inside it,
addressed as ``channels/telegram:<account>`` (a host is left out of its children's paths). A
second account of a type costs its connection, not a process (a Ray worker is ~40 MB before any
SDK), and types never share one: a crash of aiogram's process leaves Slack's alone. An account
that raises is restarted alone, inside its process. Accounts of one type placed on different
nodes (``cluster.placement``) get a process per node.
"""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase
from typing import Any

import msgspec

from moltbot.agent import profiles
from moltbot.config.schema import CHANNEL_KINDS, Config, SupervisorConfig
from moltbot.netaddr import is_loopback
from moltbot.supervision.spec import (
    ChildSpec,
    ChildType,
    Restart,
    Strategy,
    SupervisorFlags,
)

SUPERVISOR_SHUTDOWN_S = 60.0


def flags_from(
    cfg: Config, section: SupervisorConfig, *, concurrent_start: bool = False
) -> SupervisorFlags:
    sup = cfg.supervision
    return SupervisorFlags(
        **msgspec.structs.asdict(section),
        ping_interval_s=sup.ping_interval_s,
        ping_timeout_s=sup.ping_timeout_s,
        concurrent_start=concurrent_start,
    )


HEAD = {"node:__internal_head__": 0.001}  # Ray's own resource of the head node
ON_HEAD = ("store", "gateway")  # durable state and the user-facing port stay on the head


def resources_for(cfg: Config, path: str) -> dict[str, float]:
    """Placement of the actor at ``path``: the config's glob, else the head for ON_HEAD."""
    return placement_for(cfg, path) or (dict(HEAD) if path in ON_HEAD else {})


ACCOUNT_PREFIX = "moltbot_"


def is_placement(resource: str) -> bool:
    """A resource that pins an actor to some node (not Ray's own node:..., not an account's)."""
    return not resource.startswith(("node:", ACCOUNT_PREFIX))


def account_resource(kind: str, account: str) -> str:
    """The Ray resource one channel account's actor holds: its node offers 1 unit (2 with a
    warm standby, which holds the other), so Ray never runs two pollers of the account at once
    (not even an old incarnation still dying)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", account)[:32]
    digest = hashlib.sha256(f"{kind}:{account}".encode()).hexdigest()[:8]
    return f"{ACCOUNT_PREFIX}{kind}_{safe}_{digest}"


def singleton_resources(cfg: Config) -> dict[str, float]:
    """What the head offers: one unit per channel account that no placement sends to another
    node (a placed account's node offers its placement resource, requested whole: see README),
    two when the channels keep a warm standby (it holds the second until it is promoted)."""
    units = 2.0 if cfg.supervision.channels.standby else 1.0
    return {
        account_resource(kind, acct.account): units
        for cid, kind, acct in channel_ids(cfg)
        if not placement_for(cfg, f"channels/{cid}")
    }


def placement_for(cfg: Config, path: str) -> dict[str, float]:
    """Custom Ray resources an actor at ``path`` needs, from the first matching glob."""
    for pattern, placement in cfg.cluster.placement.items():
        if fnmatchcase(path, pattern):
            return dict(placement.resources)
    return {}


class _Builder:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def section_of(self, path: str) -> SupervisorConfig:
        """The supervisor section over the actor at ``path`` (``agents/agent-0``: agents)."""
        pool = path.split("/", 1)[0] if "/" in path else "root"
        return getattr(self.cfg.supervision, pool)

    def worker(self, path: str, kind: str, args: dict[str, Any] | None = None) -> ChildSpec:
        cid = path.rsplit("/", 1)[-1]
        sup = self.cfg.supervision
        return ChildSpec(
            id=cid,
            kind=kind,
            args={**(args or {}), "config": self.cfg},
            restart=Restart.PERMANENT,
            shutdown=sup.shutdown_s,
            ready_timeout=sup.ready_timeout_s,
            resources=resources_for(self.cfg, path),
            max_memory_mb=self.section_of(path).max_memory_mb,
        )

    def pool_flags(self, section: SupervisorConfig) -> SupervisorFlags:
        """A pool's flags: under one_for_one it starts its independent children together."""
        together = section.strategy == Strategy.ONE_FOR_ONE
        return flags_from(self.cfg, section, concurrent_start=together)

    def supervisor(self, cid: str, section: SupervisorConfig, kids: list[ChildSpec]) -> ChildSpec:
        return ChildSpec(
            id=cid,
            kind="supervisor",
            child_type=ChildType.SUPERVISOR,
            # a one_for_one pool of independent workers starts its children together; with
            # rest_for_one or one_for_all the user said they depend on each other: in order
            args={"flags": self.pool_flags(section), "children": kids},
            shutdown=SUPERVISOR_SHUTDOWN_S,
            ready_timeout=self.cfg.supervision.ready_timeout_s * 2,
            resources=dict(HEAD),  # it runs inside the root's process, on the head
            max_memory_mb=0,  # in the root's process: no process of its own to measure
        )

    def host(self, path: str, kids: list[ChildSpec]) -> ChildSpec:
        """A supervisor in a Ray worker process of its own whose children all run inside it.
        The process holds what its children would (their placement, their account units) and
        has their pool's memory ceiling; the children, sharing it, have none of their own."""
        section = self.section_of(path)
        held: dict[str, float] = {}
        for kid in kids:
            held.update(kid.resources)
        inside = [msgspec.structs.replace(k, resources={}, max_memory_mb=0) for k in kids]
        return ChildSpec(
            id=path.rsplit("/", 1)[-1],
            kind="host",
            child_type=ChildType.SUPERVISOR,
            args={"flags": self.pool_flags(section), "children": inside},
            shutdown=SUPERVISOR_SHUTDOWN_S,
            ready_timeout=self.cfg.supervision.ready_timeout_s * 2,
            resources=held,
            max_memory_mb=section.max_memory_mb,
        )


def channel_ids(cfg: Config) -> list[tuple[str, str, Any]]:
    """(child id, channel type, account config) of every enabled account, in config order."""
    out: list[tuple[str, str, Any]] = []
    for kind in CHANNEL_KINDS:
        for acct in getattr(cfg.channels, kind):
            if acct.enabled:
                out.append((f"{kind}:{acct.account}", kind, acct))
    return out


def channel_plugins(cfg: Config) -> list[str]:
    """Enabled plugins that may register channels (granted the ``channel`` capability)."""
    return [p.name for p in cfg.plugins if p.enabled and "channel" in p.capabilities]


def build_tree(cfg: Config, *, singletons: bool = False) -> list[ChildSpec]:
    """The root's children, in start order. ``singletons``: the head offers
    ``singleton_resources`` (``moltbot up`` does): each channel account's actor then holds its
    own."""
    b = _Builder(cfg)
    owned = singleton_resources(cfg) if singletons else {}
    sup = cfg.supervision
    sleep_s = cfg.agent.idle_stop_s
    agents = [
        _sleeper(b.worker(f"agents/agent-{i}", "agent", {"index": i}), sleep_s)
        for i in range(cfg.agent.workers)
    ]
    for name in profiles.placed(cfg):  # a profile's own pool, on the node its placement names
        prefix, workers = profiles.pool(cfg, name)
        wanted = cfg.agent.profiles[name].placement
        for i in range(workers):
            spec = _sleeper(b.worker(f"{prefix}{i}", "agent", {"index": i}), sleep_s)
            agents.append(msgspec.structs.replace(spec, resources={**spec.resources, **wanted}))
    sandboxes = [
        _sleeper(b.worker(f"tools/sandbox-{i}", "sandbox", {"index": i}), cfg.tools.idle_stop_s)
        for i in range(cfg.tools.workers)
    ]
    accounts = [
        _holding(
            b.worker(f"channels/{cid}", "channel", {"channel": kind, "account": acct.account}),
            account_resource(kind, acct.account),
            owned,
        )
        for cid, kind, acct in channel_ids(cfg)
    ]
    channels = [b.host(f"channels/{hid}", kids) for hid, kids in _by_process(accounts)]
    plugins = [
        b.worker(f"plugins/plugin:{p.name}", "plugin", {"plugin": p.name})
        for p in cfg.plugins
        if p.enabled
    ]
    return [
        b.worker("store", "store"),
        _activated(b.worker("gateway", "gateway"), cfg),
        b.supervisor("agents", sup.agents, agents),
        b.supervisor("tools", sup.tools, sandboxes),
        b.supervisor("channels", sup.channels, channels),
        *([b.worker("scheduler", "scheduler")] if cfg.schedule.enabled else []),
        b.supervisor("plugins", sup.plugins, plugins),
    ]


def _by_process(accounts: list[ChildSpec]) -> list[tuple[str, list[ChildSpec]]]:
    """The accounts grouped by the process they share: one per channel type and placement
    (``telegram``; a type's accounts placed elsewhere: ``telegram-2`` ...), in config order."""
    groups: dict[tuple[str, tuple[tuple[str, float], ...]], list[ChildSpec]] = {}
    for spec in accounts:
        placed = tuple(sorted((k, v) for k, v in spec.resources.items() if is_placement(k)))
        groups.setdefault((spec.args["channel"], placed), []).append(spec)
    out: list[tuple[str, list[ChildSpec]]] = []
    seen: dict[str, int] = {}
    for (kind, _placed), kids in groups.items():
        seen[kind] = n = seen.get(kind, 0) + 1
        out.append((kind if n == 1 else f"{kind}-{n}", kids))
    return out


def _activated(gateway: ChildSpec, cfg: Config) -> ChildSpec:
    """A loopback gateway sleeps when idle, its port held open by the root, which wakes it on
    a connection (``actors.activation``). One bound beyond loopback always runs: it checks its
    TLS and auth itself at start, before anything listens."""
    if not is_loopback(cfg.gateway.bind):
        return gateway
    slept = _sleeper(gateway, cfg.gateway.idle_stop_s)
    if not slept.on_demand:
        return gateway
    return msgspec.structs.replace(slept, args={**slept.args, "listen": True})


def _sleeper(spec: ChildSpec, idle_stop_s: float) -> ChildSpec:
    """A child that stops when idle (a sandbox, an agent): started on first use (not at boot),
    and transient: it ends normally after ``idle_stop_s`` without a call and sleeps until the
    next one (its supervisor's ``wake``)."""
    if idle_stop_s <= 0:
        return spec
    args = {**spec.args, "idle_stop_s": idle_stop_s}
    return msgspec.structs.replace(spec, args=args, on_demand=True, restart=Restart.TRANSIENT)


def _holding(spec: ChildSpec, resource: str, offered: dict[str, float]) -> ChildSpec:
    if resource not in offered:
        return spec
    return msgspec.structs.replace(spec, resources={**spec.resources, resource: 1.0})


def root_flags(cfg: Config) -> SupervisorFlags:
    """The root's flags. Under one_for_one its children are independent once the store runs
    (each reaches the others only when a message needs them, and waits for them then): the
    store starts first, the others together (a cold start here: 16.5 s one by one)."""
    flags = flags_from(cfg, cfg.supervision.root)
    if cfg.supervision.root.strategy != Strategy.ONE_FOR_ONE:
        return flags
    return msgspec.structs.replace(flags, concurrent_start=True, ordered_first=1)
