"""``actors.metrics_sweep``: which endpoints a sweep reads, that it reads them to the end and
survives one that does not answer, and that it finds the real local Ray's endpoint."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from actors import metrics_sweep
from tests.actors.helpers import free_port


def test_endpoints_are_the_live_nodes_that_export_metrics() -> None:
    nodes = [
        {"Alive": True, "NodeManagerAddress": "127.0.0.1", "MetricsExportPort": 4100},
        {"Alive": False, "NodeManagerAddress": "10.0.0.2", "MetricsExportPort": 4100},
        {"Alive": True, "NodeManagerAddress": "10.0.0.3", "MetricsExportPort": 0},
        {"Alive": True, "NodeManagerAddress": "10.0.0.4"},
        {"Alive": True, "NodeManagerAddress": "fd00::5", "MetricsExportPort": 4101},
    ]
    assert metrics_sweep.endpoints(nodes) == [("127.0.0.1", 4100), ("fd00::5", 4101)]


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b"ray_x 1\n" * 40_000  # 320 KB: read in several chunks
    reads: list[int] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        for i in range(0, len(self.body), 1 << 15):
            self.wfile.write(self.body[i : i + (1 << 15)])
        self.reads.append(len(self.body))  # every chunk written without a broken pipe

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_read_all_reads_each_to_the_end_and_skips_one_that_does_not_answer(server: int) -> None:
    _Metrics.reads.clear()
    hosts = [
        ("127.0.0.1", free_port()),  # nothing listens: refused, skipped, no exception
        ("127.0.0.1", server),
    ]
    assert metrics_sweep.read_all(hosts, timeout_s=2) == 1
    deadline = time.monotonic() + 5  # the handler notes it just after its last write
    while not _Metrics.reads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _Metrics.reads == [len(_Metrics.body)]  # the whole text was sent and read


def test_read_all_goes_straight_to_the_node_whatever_http_proxy_says(
    server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Metrics.reads.clear()
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert metrics_sweep.read_all([("127.0.0.1", server)], timeout_s=2) == 1


def test_a_sweep_reads_the_real_nodes_metrics_endpoint(ray_cluster: None) -> None:
    import ray

    hosts = metrics_sweep.endpoints(ray.nodes())
    assert len(hosts) == 1 and hosts[0][0] == "127.0.0.1"
    conn = http.client.HTTPConnection(*hosts[0], timeout=10)
    conn.request("GET", "/metrics")
    assert b"ray_" in conn.getresponse().read()  # Ray's own metrics: the agent's endpoint
    conn.close()
    assert metrics_sweep.sweep_once() == 1


def test_start_starts_one_thread_per_process() -> None:
    def sweepers() -> int:
        return sum(t.name == "moltbot-metrics-sweep" for t in threading.enumerate())

    assert metrics_sweep.start(every_s=3600) and metrics_sweep.start(every_s=3600)
    assert sweepers() == 1
