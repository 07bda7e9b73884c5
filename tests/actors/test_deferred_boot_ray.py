"""The tree's actor processes start under ``actors/boot`` (issue 21): in a real Ray worker given
the tree's boot environment, the libraries ``ray`` imports but the tree never uses are bound
and unrun, an actor that actor creates (as a supervisor creates its children) inherits that,
and a deferred library still works when used."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from actors.ray_lean import boot_env
from moltbot.deferred_imports import DEFERRED

pytestmark = pytest.mark.usefixtures("ray_cluster")


@ray.remote(num_cpus=0, max_restarts=0)
class _Probe:
    def deferred(self) -> list[str]:
        from moltbot.deferred_imports import DEFERRED, is_deferred

        return sorted(m for m in DEFERRED if is_deferred(m))

    def child_deferred(self) -> list[str]:
        child = _Probe.remote()  # type: ignore[attr-defined]  # no runtime_env of its own
        try:
            return list(ray.get(child.deferred.remote(), timeout=60))
        finally:
            ray.kill(child)

    def use_yaml(self) -> Any:
        import yaml

        return yaml.safe_load("reply: [1, 2]")


def test_an_actor_of_the_tree_defers_and_its_children_inherit_it() -> None:
    probe = _Probe.options(runtime_env={"env_vars": boot_env()}).remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.deferred.remote(), timeout=120) == sorted(DEFERRED)
        assert ray.get(probe.child_deferred.remote(), timeout=120) == sorted(DEFERRED)
        assert ray.get(probe.use_yaml.remote(), timeout=60) == {"reply": [1, 2]}
        assert "yaml" not in ray.get(probe.deferred.remote(), timeout=60)  # ran on use
    finally:
        ray.kill(probe)


def test_without_the_boot_nothing_is_deferred() -> None:
    probe = _Probe.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.deferred.remote(), timeout=120) == []
    finally:
        ray.kill(probe)
