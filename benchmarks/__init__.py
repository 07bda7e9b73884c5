"""moltbot benchmarks: ``python -m benchmarks [NAME ...] [--quick]`` (``make bench``).

Each benchmark prints a table and writes ``benchmarks/results/<name>.json`` (and a PNG where a
curve says more). Everything runs on 127.0.0.1 against the fake platform servers in
``tests/fakes`` with bounded message counts and durations; see ``benchmarks/harness.py``.
"""

import actors  # noqa: F401  - pins Ray's environment (loopback, no usage stats) before ray loads
