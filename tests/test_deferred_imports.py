"""Deferred imports (issue 21): a deferred module binds at import and runs on first use, works
as the ordinary module from then on, and is never run by the import system's own reads. Each
case runs in a fresh interpreter, since deferral is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from moltbot.deferred_imports import SWITCH_ENV, wanted

ROOT = Path(__file__).resolve().parents[1]


def _run(
    code: str,
    *,
    boot: bool = False,
    env_extra: dict[str, str] | None = None,
    script: str = "default_worker.py",
) -> dict:
    """``code`` in a fresh interpreter, run as the file ``script`` (by default named as Ray's
    worker script: the boot defers only in a Ray worker), ``actors/boot`` on its path if
    ``boot``."""
    import os
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "actors" / "boot")] * boot + [str(ROOT)])
    env.update(env_extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / script
        path.write_text(textwrap.dedent(code))
        out = subprocess.run(
            [sys.executable, str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_deferred_module_runs_on_first_use_and_not_before() -> None:
    got = _run(
        """
        import json, sys
        from moltbot.deferred_imports import install, is_deferred
        install(["requests", "yaml"])
        import requests
        import requests as again  # the import system reads __spec__: must not run it
        bound = is_deferred("requests") and "requests.adapters" not in sys.modules
        session = requests.Session  # first use runs it
        from yaml import safe_load  # a from-import is a use
        print(json.dumps({
            "bound_not_run": bound,
            "ran": not is_deferred("requests") and "requests.adapters" in sys.modules,
            "same_object": again is requests and sys.modules["requests"] is requests,
            "works": session.__name__ == "Session" and safe_load("a: 1") == {"a": 1},
            "plain_module": type(requests).__name__,
            "dir": "get" in dir(requests),
        }))
        """
    )
    assert got == {
        "bound_not_run": True,
        "ran": True,
        "same_object": True,
        "works": True,
        "plain_module": "module",
        "dir": True,
    }


def test_ray_imported_under_the_boot_leaves_its_unused_libraries_unrun() -> None:
    got = _run(
        """
        import json, sys
        import ray
        from moltbot.deferred_imports import still_deferred
        print(json.dumps({
            "boot_ran": "sitecustomize" in sys.modules,
            "deferred": still_deferred(),
            "urllib3": "urllib3" in sys.modules,
        }))
        """,
        boot=True,
    )
    assert got == {"boot_ran": True, "deferred": sorted(DEFERRED_NAMES), "urllib3": False}


def test_the_boot_leaves_processes_other_than_ray_workers_alone() -> None:
    """``ray start`` puts the boot on the path of every process of the node: Ray's own agents
    and dashboard, and ``ray start`` itself, run as they always did."""
    got = _run(
        """
        import json, sys
        import ray
        from moltbot.deferred_imports import still_deferred
        print(json.dumps({"deferred": still_deferred()}))
        """,
        boot=True,
        script="agent.py",
    )
    assert got == {"deferred": []}


def test_wanted_in_a_ray_worker_unless_switched_off() -> None:
    worker = ["/venv/lib/python3.11/site-packages/ray/_private/workers/default_worker.py", "-x"]
    assert wanted({}, worker)
    assert not wanted({SWITCH_ENV: "0"}, worker)
    assert wanted({SWITCH_ENV: "1"}, worker)
    for other in (
        ["/venv/bin/ray", "start", "--head"],
        ["/venv/lib/python3.11/site-packages/ray/dashboard/agent.py"],
        ["-c"],
        ["/home/me/not_default_worker.py"],
        [],
    ):
        assert not wanted({}, other), other


def test_the_switch_turns_it_off() -> None:
    got = _run(
        """
        import json
        import ray
        from moltbot.deferred_imports import is_deferred
        print(json.dumps({"requests": is_deferred("requests")}))
        """,
        boot=True,
        env_extra={"MOLTBOT_DEFER_IMPORTS": "0"},
    )
    assert got == {"requests": False}


def test_threads_racing_for_first_use_run_it_once() -> None:
    got = _run(
        """
        import json, sys, threading
        from moltbot.deferred_imports import install
        install(["yaml"])
        import yaml
        runs = []
        from moltbot import deferred_imports as d
        real = type(d._loaders["yaml"].real).exec_module
        def counted(self, module):
            runs.append(module.__name__)
            return real(self, module)
        type(d._loaders["yaml"].real).exec_module = counted
        barrier = threading.Barrier(8)
        out = []
        def use():
            barrier.wait()
            out.append(yaml.safe_load("[1, 2]"))
        ts = [threading.Thread(target=use) for _ in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        print(json.dumps({"runs": runs.count("yaml"), "results": out}))
        """
    )
    assert got["runs"] == 1 and got["results"] == [[1, 2]] * 8


DEFERRED_NAMES = ("requests", "jsonschema", "yaml", "tqdm")
