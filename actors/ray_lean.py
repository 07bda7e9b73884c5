"""``ray start`` flags that leave out Ray's optional processes the tree never uses (issue 21:
idle memory). The idle workers Ray would start ahead of need are turned off in ``actors``'s
``__init__`` (they are read from the environment, before Ray is imported).

Left out: the log monitor (it copies every worker's log to the drivers; ours connect with
``log_to_driver`` off, and the dashboard reads log files through its agent; 43 MB per node)
and, on the head, the autoscaler monitor (there is no autoscaler: nodes join with ``moltbot
node join``; 46 MB). The dashboard, its agent and the runtime-env agent stay.
"""

from __future__ import annotations

NODE_FLAGS = ("--disable-usage-stats", "--include-log-monitor=false")
HEAD_FLAGS = (*NODE_FLAGS, "--no-monitor")


def head_flags() -> list[str]:
    """For ``ray start --head``."""
    return list(HEAD_FLAGS)


def node_flags() -> list[str]:
    """For ``ray start --address`` (a node joining the head)."""
    return list(NODE_FLAGS)
