"""``routing.call(..., wake=True)``, the way channels reach an agent that may sleep, on a real
local Ray: a child started on demand is woken when it has no process, and a call it refuses as
it ends idle (``Dormant``: nothing ran) is sent again to the next incarnation, once. Without
``wake`` neither happens: the caller waits for nobody, or sees the refusal."""

from __future__ import annotations

import asyncio

import pytest

from actors import routing
from moltbot.errors import Dormant, Unavailable
from moltbot.supervision.spec import ChildSpec, Restart
from tests.actors.helpers import FAST, asleep, child_node, start_root, stop_root, supervisor

pytestmark = pytest.mark.usefixtures("ray_cluster")


def sleeper(cid: str) -> ChildSpec:
    return ChildSpec(
        id=cid,
        kind="worker",
        restart=Restart.TRANSIENT,
        on_demand=True,
        shutdown=2.0,
        args={"dormant_first": True},  # its first incarnation refuses its first call, and ends
    )


def test_a_sleeping_child_is_woken_and_a_refused_call_is_sent_again() -> None:
    root, ns = start_root(FAST, [supervisor("pool", [sleeper("w"), sleeper("v")])])
    try:
        assert asleep(root, ns, "pool/w") and asleep(root, ns, "pool/v")
        with pytest.raises(Unavailable):  # without wake: nobody starts it
            asyncio.run(routing.call(ns, "pool/w", "echo", 1, deadline_s=1.0))
        assert asleep(root, ns, "pool/w")
        # woken; its first incarnation refuses the call and ends normally; the call wakes the
        # next one and is answered there, run once
        assert asyncio.run(routing.call(ns, "pool/w", "echo", 42, wake=True)) == 42
        node = child_node(root, "pool/w")
        assert node["state"] == "running" and node["restarts"] == 0
        assert asyncio.run(routing.call(ns, "pool/w", "figures")) == {"calls": 1}
        # without wake, a refusal is the caller's to see
        asyncio.run(routing.call(ns, "pool", "wake", "v"))
        with pytest.raises(Dormant):
            asyncio.run(routing.call(ns, "pool/v", "echo", 7))
    finally:
        stop_root(root)
