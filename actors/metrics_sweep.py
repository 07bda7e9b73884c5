"""Each node's metrics endpoint read once a minute, so Ray forgets the gauges of dead workers.

Every Ray worker reports its gauges (with its ``WorkerId``) to its node's dashboard agent, which
keeps the last value of each series and drops one that has not been refreshed only when the
Prometheus endpoint is read (``open_telemetry_metric_recorder``: stale gauges are evicted on
scrape). With no Prometheus reading it, as on a gateway at home, the agent keeps every dead
worker's gauges for good: each restart of a child (a crash, a memory ceiling, a sandbox that
slept) added about 110 series that stayed, and the soak benchmark saw the agent grow 0.27 MB a
minute with a plugin restarted every 40 s. The root reads each live node's endpoint from a
daemon thread of its own and throws the text away: 1 200 series, a few ms of the agent's CPU a
minute. A Prometheus that scrapes the tree changes nothing (stale series go either way).
"""

from __future__ import annotations

import http.client
import logging
from typing import Any

import ray

from actors import periodic

log = logging.getLogger("moltbot.metrics_sweep")

SWEEP_EVERY_S = 60.0
READ_TIMEOUT_S = 5.0


def endpoints(nodes: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The metrics endpoint (host, port) of each live node of ``ray.nodes()`` that exports
    metrics."""
    out = []
    for node in nodes:
        port = node.get("MetricsExportPort")
        addr = node.get("NodeManagerAddress")
        if node.get("Alive") and addr and isinstance(port, int) and port > 0:
            out.append((str(addr), port))
    return out


def read_all(hosts: list[tuple[str, int]], timeout_s: float = READ_TIMEOUT_S) -> int:
    """``GET /metrics`` of each, read to its end (the text is not kept); how many answered. One
    that does not answer is skipped: the next sweep tries again. Straight to the node, never
    through an ``http_proxy`` of the environment (``urllib`` would use one)."""
    done = 0
    for host, port in hosts:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            while resp.read(1 << 16):
                pass
            done += resp.status == 200
        except (OSError, http.client.HTTPException) as exc:
            log.debug("metrics sweep: %s:%s not read (%s)", host, port, type(exc).__name__)
        finally:
            conn.close()
    return done


def sweep_once() -> int:
    """Read every live node's metrics endpoint now; how many answered."""
    try:
        nodes = ray.nodes()
    except Exception as exc:  # the GCS away for a moment: the next sweep
        log.debug("metrics sweep: no node list (%s)", type(exc).__name__)
        return 0
    return read_all(endpoints(nodes))


def start(every_s: float = SWEEP_EVERY_S) -> bool:
    """Start this process's sweeper (once; later calls do nothing). True once started."""
    periodic.start_once("moltbot-metrics-sweep", every_s, sweep_once)
    return True
