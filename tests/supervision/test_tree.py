from __future__ import annotations

import msgspec

from moltbot.config.loader import load_config_text
from moltbot.config.schema import Config, SupervisionConfig
from moltbot.supervision.spec import ChildSpec, ChildType, Restart, Strategy, SupervisorFlags
from moltbot.supervision.tree import (
    account_resource,
    build_tree,
    is_placement,
    placement_for,
    root_flags,
    singleton_resources,
)

CONFIG = """
{
  "agent": {"workers": 3},
  "channels": {
    "telegram": [{"account": "main", "token": "secret:tg"}],
    "slack": [{"account": "work", "bot_token": "secret:sb", "app_token": "secret:sa"},
              {"account": "off", "bot_token": "secret:sb", "app_token": "secret:sa",
               "enabled": false}],
    "signal": [{"account": "phone", "number": "+15551234567"}]
  },
  "supervision": {"channels": {"strategy": "one_for_one", "intensity": 7, "period": 9}},
  "cluster": {"placement": {"channels/signal:*": {"resources": {"signal_box": 0.01}}}}
}
"""


def test_tree_shape_follows_the_design() -> None:
    cfg = load_config_text(CONFIG)
    tree = build_tree(cfg)
    assert [c.id for c in tree] == [
        "store",
        "gateway",
        "agents",
        "tools",
        "channels",
        "scheduler",
        "plugins",
    ]
    by_id = {c.id: c for c in tree}
    assert [c.id for c in by_id["agents"].args["children"]] == ["agent-0", "agent-1", "agent-2"]
    channels = by_id["channels"]
    assert channels.child_type == ChildType.SUPERVISOR
    # a process per channel type (its host), each account inside its type's
    hosts = channels.args["children"]
    assert [(h.id, h.kind, h.child_type) for h in hosts] == [
        ("telegram", "host", ChildType.SUPERVISOR),
        ("slack", "host", ChildType.SUPERVISOR),
        ("signal", "host", ChildType.SUPERVISOR),
    ]
    assert [[c.id for c in h.args["children"]] for h in hosts] == [
        ["telegram:main"],
        ["slack:work"],
        ["signal:phone"],
    ]
    flags = channels.args["flags"]
    assert flags.strategy == Strategy.ONE_FOR_ONE and flags.intensity == 7 and flags.period == 9
    assert root_flags(cfg).strategy == Strategy.ONE_FOR_ONE
    # the pools start their children together; the root starts the store, then the rest together
    assert flags.concurrent_start and by_id["agents"].args["flags"].concurrent_start
    root = root_flags(cfg)
    ids = [c.id for c in build_tree(cfg)]
    assert root.start_groups(ids) == (["store"], ids[1:]) and ids[0] == "store"
    # a root whose children the user says depend on each other starts them in order
    ordered = load_config_text('{"supervision": {"root": {"strategy": "rest_for_one"}}}')
    assert root_flags(ordered).start_groups(ids) == (ids, [])


def test_a_pool_whose_children_depend_on_each_other_starts_them_in_order() -> None:
    cfg = load_config_text('{"supervision": {"channels": {"strategy": "rest_for_one"}}}')
    by_id = {c.id: c for c in build_tree(cfg)}
    assert not by_id["channels"].args["flags"].concurrent_start
    assert by_id["tools"].args["flags"].concurrent_start


def test_every_child_names_the_actor_kind_that_runs_it() -> None:
    by_id = {c.id: c for c in build_tree(load_config_text(CONFIG))}
    assert by_id["store"].kind == "store" and by_id["gateway"].kind == "gateway"
    pools = ("agents", "tools", "channels")
    kids = {c.id: c.kind for sup in pools for c in by_id[sup].args["children"]}
    assert kids["agent-0"] == "agent" and kids["sandbox-0"] == "sandbox"
    assert kids["telegram"] == kids["signal"] == "host"
    hosts = by_id["channels"].args["children"]
    accounts = {c.id: c.kind for h in hosts for c in h.args["children"]}
    assert accounts["telegram:main"] == accounts["signal:phone"] == "channel"
    assert all(by_id[sup].kind == "supervisor" for sup in pools)


def test_flags_and_child_timeouts_default_to_the_configs() -> None:
    cfg = load_config_text("{}")
    together = {"concurrent_start": True, "ordered_first": 1}  # the store first
    assert root_flags(cfg) == SupervisorFlags(**together)
    defaults = SupervisionConfig()
    spec = ChildSpec(id="w", kind="worker")
    assert spec.ready_timeout == defaults.ready_timeout_s == 120.0
    assert spec.shutdown == defaults.shutdown_s
    store = build_tree(cfg)[0]
    assert (store.ready_timeout, store.shutdown) == (spec.ready_timeout, spec.shutdown)
    custom = load_config_text('{"supervision": {"root": {"intensity": 9}, "ping_timeout_s": 7}}')
    assert root_flags(custom) == SupervisorFlags(intensity=9, ping_timeout_s=7.0, **together)


def test_placement_pins_by_glob() -> None:
    cfg = load_config_text(CONFIG)
    assert placement_for(cfg, "channels/signal:phone") == {"signal_box": 0.01}
    assert placement_for(cfg, "channels/telegram:main") == {}
    signal = next(c for c in build_tree(cfg)[4].args["children"] if c.id == "signal")
    assert signal.resources == {"signal_box": 0.01}  # its process goes where its account must
    assert [c.resources for c in signal.args["children"]] == [{}]  # inside it: nothing to place


def test_each_channel_account_holds_its_own_resource_where_the_head_offers_it() -> None:
    cfg = load_config_text(CONFIG)
    tg, sl = account_resource("telegram", "main"), account_resource("slack", "work")
    # the placed Signal account's node offers its placement resource instead
    assert singleton_resources(cfg) == {tg: 1.0, sl: 1.0}
    channels = {c.id: c for c in build_tree(cfg, singletons=True)}["channels"].args["children"]
    by_id = {c.id: c.resources for c in channels}  # each type's process holds its accounts'
    assert by_id["telegram"] == {tg: 1.0} and by_id["slack"] == {sl: 1.0}
    assert by_id["signal"] == {"signal_box": 0.01}
    plain = {c.id: c for c in build_tree(cfg)}["channels"].args["children"]
    assert all(c.resources.get(tg) is None for c in plain)  # a cluster that does not offer them
    assert not is_placement(tg) and not is_placement("node:__internal_head__")
    assert is_placement("signal_box")
    # names are safe for Ray and distinct even when accounts only differ in punctuation
    assert account_resource("slack", "a.b") != account_resource("slack", "a_b")
    assert account_resource("signal", "+15551234567").startswith("moltbot_signal__15551234567_")


TWO_OF_A_TYPE = """
{
  "channels": {
    "telegram": [{"account": "a", "token": "secret:a"}, {"account": "b", "token": "secret:b"},
                 {"account": "far", "token": "secret:c"}],
    "slack": [{"account": "work", "bot_token": "secret:sb", "app_token": "secret:sa"}]
  },
  "supervision": {"channels": {"max_memory_mb": 300}},
  "cluster": {"placement": {"channels/telegram:far": {"resources": {"box": 1}}}}
}
"""


def test_accounts_of_a_type_share_its_process_unless_placed_elsewhere() -> None:
    cfg = load_config_text(TWO_OF_A_TYPE)
    hosts = {c.id: c for c in build_tree(cfg, singletons=True)}["channels"].args["children"]
    assert [(h.id, [c.id for c in h.args["children"]]) for h in hosts] == [
        ("telegram", ["telegram:a", "telegram:b"]),
        ("telegram-2", ["telegram:far"]),  # placed on another node: a process there
        ("slack", ["slack:work"]),
    ]
    first = hosts[0]
    # the process holds both accounts' units, so no two pollers of either ever run at once
    assert first.resources == {
        account_resource("telegram", "a"): 1.0,
        account_resource("telegram", "b"): 1.0,
    }
    assert hosts[1].resources == {"box": 1.0}
    # the pool's memory ceiling is the process's; the accounts inside have none of their own
    assert first.max_memory_mb == 300
    assert all(c.max_memory_mb == 0 and c.resources == {} for c in first.args["children"])
    assert first.args["flags"].concurrent_start  # its accounts connect together


def test_sandboxes_start_on_first_use_and_sleep_when_idle_by_default() -> None:
    """A sandbox is on demand and transient (an idle end is normal: not restarted, slept);
    ``tools.idle_stop_s: 0`` keeps the permanent sandbox started at boot."""
    sandboxes = {c.id: c for c in build_tree(load_config_text("{}"))}["tools"].args["children"]
    assert [(s.id, s.on_demand, s.restart) for s in sandboxes] == [
        ("sandbox-0", True, Restart.TRANSIENT)
    ]
    assert sandboxes[0].args["idle_stop_s"] == 600.0
    always = load_config_text('{"tools": {"workers": 2, "idle_stop_s": 0}}')
    kept = {c.id: c for c in build_tree(always)}["tools"].args["children"]
    assert [(s.id, s.on_demand, s.restart) for s in kept] == [
        ("sandbox-0", False, Restart.PERMANENT),
        ("sandbox-1", False, Restart.PERMANENT),
    ]
    assert "idle_stop_s" not in kept[0].args
    # the agents and the gateway sleep too (below); every other child starts at boot
    tree = build_tree(load_config_text(CONFIG))
    woken = [c for c in tree if c.on_demand and c.id != "gateway"]
    sleepers = {"sandbox-0", "agent-0", "agent-1", "agent-2"}
    nested = [k for c in tree for k in c.args.get("children", []) if k.id not in sleepers]
    assert woken == [] and not any(k.on_demand for k in nested)


def test_a_loopback_gateway_is_socket_activated_by_default() -> None:
    """On loopback the gateway is on demand, transient and ``listen`` (the root holds its port
    and wakes it on a connection); ``idle_stop_s: 0`` or a bind beyond loopback (it checks its
    TLS and auth at start, before anything listens) keep the permanent gateway."""
    gw = {c.id: c for c in build_tree(load_config_text("{}"))}["gateway"]
    assert (gw.on_demand, gw.restart, gw.args["listen"], gw.args["idle_stop_s"]) == (
        True,
        Restart.TRANSIENT,
        True,
        600.0,
    )
    always = load_config_text('{"gateway": {"idle_stop_s": 0}}')
    exposed = msgspec.convert(
        {"gateway": {"bind": "0.0.0.0", "tls": {"self_signed": True}}}, Config
    )
    for cfg in (always, exposed):
        kept = {c.id: c for c in build_tree(cfg)}["gateway"]
        assert not kept.on_demand and kept.restart == Restart.PERMANENT
        assert "listen" not in kept.args and "idle_stop_s" not in kept.args


def test_agents_start_on_first_message_and_sleep_when_idle_by_default() -> None:
    """Each agent of the shared pool and of a placed profile's pool is on demand and
    transient after ``agent.idle_stop_s``; 0 keeps them permanent, started at boot."""
    placed = {"agent": {"profiles": {"gpu": {"placement": {"gpu_box": 1}, "workers": 1}}}}
    cfg = msgspec.convert(placed, Config)
    agents = {c.id: c for c in build_tree(cfg)}["agents"].args["children"]
    assert [(a.id, a.on_demand, a.restart, a.args["idle_stop_s"]) for a in agents] == [
        ("agent-0", True, Restart.TRANSIENT, 600.0),
        ("agent-1", True, Restart.TRANSIENT, 600.0),
        ("profile:gpu-0", True, Restart.TRANSIENT, 600.0),
    ]
    assert agents[2].resources.get("gpu_box") == 1
    placed["agent"]["idle_stop_s"] = 0  # type: ignore[index]
    always = {c.id: c for c in build_tree(msgspec.convert(placed, Config))}["agents"]
    kept = always.args["children"]
    assert [(a.id, a.on_demand, a.restart) for a in kept] == [
        ("agent-0", False, Restart.PERMANENT),
        ("agent-1", False, Restart.PERMANENT),
        ("profile:gpu-0", False, Restart.PERMANENT),
    ]
    assert all("idle_stop_s" not in a.args for a in kept)
