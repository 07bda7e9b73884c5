"""Every kind the tree names has an actor class (no Ray is started here)."""

from __future__ import annotations

import pytest

from actors.registry import KINDS, actor_class
from moltbot.config.loader import load_config_text
from moltbot.supervision.spec import ChildSpec
from moltbot.supervision.tree import build_tree

CONFIG = """{
  "channels": {"telegram": [{"account": "main", "token": "secret:tg"}]},
  "plugins": [{"name": "probe", "module": "probe_plugin"}]
}"""


def kinds(specs: list[ChildSpec]) -> set[str]:
    out: set[str] = set()
    for spec in specs:
        out.add(spec.kind)
        out |= kinds(spec.args.get("children", []))
    return out


def test_every_kind_in_the_tree_has_an_actor_class() -> None:
    used = kinds(build_tree(load_config_text(CONFIG)))
    assert {
        "store",
        "gateway",
        "supervisor",
        "agent",
        "sandbox",
        "channel",
        "plugin",
        "scheduler",
    } <= used
    assert used <= set(KINDS)
    for kind in used | {"worker"}:  # each module imports and holds a Ray actor class
        assert hasattr(actor_class(kind), "remote"), kind


def test_an_unknown_kind_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'nope'.*known: agent"):
        actor_class("nope")
