from __future__ import annotations

from moltbot.config.loader import load_config_text
from moltbot.supervision.spec import ChildType, Strategy
from moltbot.supervision.tree import build_tree, placement_for, root_flags

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
    assert [c.id for c in tree] == ["store", "gateway", "agents", "tools", "channels", "plugins"]
    by_id = {c.id: c for c in tree}
    assert [c.id for c in by_id["agents"].args["children"]] == ["agent-0", "agent-1", "agent-2"]
    channels = by_id["channels"]
    assert channels.child_type == ChildType.SUPERVISOR
    assert [c.id for c in channels.args["children"]] == [
        "telegram:main",
        "slack:work",
        "signal:phone",
    ]
    flags = channels.args["flags"]
    assert flags.strategy == Strategy.ONE_FOR_ONE and flags.intensity == 7 and flags.period == 9
    assert root_flags(cfg).strategy == Strategy.ONE_FOR_ONE
    # the pools start their children together, the root (store before gateway ...) in order
    assert flags.concurrent_start and by_id["agents"].args["flags"].concurrent_start
    assert not root_flags(cfg).concurrent_start


def test_a_pool_whose_children_depend_on_each_other_starts_them_in_order() -> None:
    cfg = load_config_text('{"supervision": {"channels": {"strategy": "rest_for_one"}}}')
    by_id = {c.id: c for c in build_tree(cfg)}
    assert not by_id["channels"].args["flags"].concurrent_start
    assert by_id["tools"].args["flags"].concurrent_start


def test_unimplemented_kinds_are_labelled_placeholders() -> None:
    tree = build_tree(load_config_text("{}"), implemented=frozenset({"store"}))
    by_id = {c.id: c for c in tree}
    assert by_id["store"].kind == "store" and by_id["store"].placeholder == ""
    assert by_id["gateway"].kind == "placeholder"
    assert "gateway" in by_id["gateway"].placeholder


def test_placement_pins_by_glob() -> None:
    cfg = load_config_text(CONFIG)
    assert placement_for(cfg, "channels/signal:phone") == {"signal_box": 0.01}
    assert placement_for(cfg, "channels/telegram:main") == {}
    signal = next(c for c in build_tree(cfg)[4].args["children"] if c.id == "signal:phone")
    assert signal.resources == {"signal_box": 0.01}
