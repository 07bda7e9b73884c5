"""``status`` carries each child's ``figures()`` (if it has any); a restart still reports."""

from __future__ import annotations

import pytest
import ray

from moltbot.cli.render import flatten, table
from moltbot.supervision.spec import Backoff, ChildSpec, SupervisorFlags
from tests.actors.helpers import (
    child,
    node,
    start_root,
    stop_root,
    supervisor,
    tree,
    wait_for,
)

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(120)]

FLAGS = SupervisorFlags(backoff=Backoff(base_s=0.05, max_s=0.2, jitter=0.1))


def test_status_includes_figures_of_children_that_have_them() -> None:
    specs = [
        ChildSpec(id="w", kind="worker", shutdown=2.0),
        supervisor("p", []),
    ]
    root, ns = start_root(FLAGS, specs)
    try:
        for i in range(3):
            assert ray.get(child(ns, "w").echo.remote(i), timeout=10) == i
        status = tree(root)
        assert node(status, "w")["figures"] == {"calls": 3}
        assert "figures" not in node(status, "p")  # ChildBase's default: nothing to show
        assert "calls 3" in table(status)
        ray.get(child(ns, "w").crash.remote("raise"), timeout=10)  # counted as a restart
        wait_for(
            lambda: (
                node(tree(root), "w")["restarts"] == 1
                and node(tree(root), "w")["state"] == "running"
            ),
            what="restart",
        )
        after = flatten(tree(root))
        assert next(c for c in after.values() if c["id"] == "w")["figures"] == {"calls": 0}
    finally:
        stop_root(root)
