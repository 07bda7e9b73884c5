"""Layering: ``moltbot/`` never imports Ray (only ``actors/`` does); modules stay small."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def python_files(package):
    return sorted((ROOT / package).rglob("*.py"))


def ray_imports(path, package="ray"):
    """(line, statement) of every ``import ray[.x]`` / ``from ray[.x] import`` in the file
    (or of ``package`` instead of ray), at module level or inside a function alike."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == package or name.startswith(package + ".") for name in names):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_ray_imports_are_detected_by_statement_not_by_text(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""import ray is mentioned here."""\n'
        "x = 'from ray import get'\n"
        "import rayon\n"
        "from .ray import local\n"
        "def f():\n"
        "    import ray.util as u\n"
        "    from ray import get\n"
    )
    assert ray_imports(sample) == [(6, "import ray.util as u"), (7, "from ray import get")]


def test_no_module_under_moltbot_has_a_ray_import_statement():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {stmt}"
        for path in python_files("moltbot")
        for line, stmt in ray_imports(path)
    ]
    assert not offenders, "moltbot/ must not import ray (move it to actors/):\n" + "\n".join(
        offenders
    )


def test_nothing_under_moltbot_imports_actors_lazily_or_not():
    """The CLI reaches the tree through ``moltbot.cluster.control.TreeControl``; its Ray
    implementation is found by entry point, never imported from ``moltbot/``."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {stmt}"
        for path in python_files("moltbot")
        for line, stmt in ray_imports(path, "actors")
    ]
    assert not offenders, "moltbot/ must not import actors:\n" + "\n".join(offenders)


def test_the_tree_control_is_found_by_its_entry_point():
    from moltbot.cluster.control import tree_control

    control = tree_control()
    assert type(control).__module__ == "actors.tree_control"


IMPORT_ALL = """
import importlib, pkgutil, sys
import moltbot
culprits = []
for info in pkgutil.walk_packages(moltbot.__path__, "moltbot."):
    had = "ray" in sys.modules
    importlib.import_module(info.name)
    if not had and "ray" in sys.modules:
        culprits.append(info.name)
print(len(list(pkgutil.walk_packages(moltbot.__path__, "moltbot."))))
print(",".join(culprits) or "-")
print("ray" in sys.modules)
"""


def test_importing_every_moltbot_module_does_not_load_ray():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    count, culprits, loaded = done.stdout.split()
    assert int(count) >= 40  # the walk really covered the package
    assert culprits == "-", f"these modules load ray at import: {culprits}"
    assert loaded == "False"


def test_every_module_is_at_most_500_lines():
    too_long = []
    for package in ("moltbot", "actors", "benchmarks"):
        for path in python_files(package):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, f"split these modules (max {MAX_LINES} lines):\n" + "\n".join(too_long)


FORMAT_PRAGMAS = ("fmt: skip", "fmt: off", "yapf: disable")


def test_no_line_opts_out_of_the_formatter():
    """``ruff format`` lays out every line; a module near the size cap is split by concern,
    never hand-packed behind a formatter pragma."""
    found = []
    for package in ("moltbot", "actors", "tests", "benchmarks"):
        for path in python_files(package):
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if any(pragma in line for pragma in FORMAT_PRAGMAS):
                    found.append(f"{path.relative_to(ROOT)}:{number}")
    assert not found, (
        "remove these formatter pragmas and let `ruff format` lay the code out; if the module "
        f"then exceeds {MAX_LINES} lines, split it into modules by concern:\n" + "\n".join(found)
    )


def test_the_tree_is_formatted_and_lint_clean():
    """``make lint``'s formatting and lint checks (``ruff format`` is the formatter: no
    hand-packed lines to stay under the size cap)."""
    dirs = ["moltbot", "actors", "tests", "benchmarks"]
    for args in (["format", "--check", *dirs], ["check", *dirs]):
        out = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr
