"""What a plugin declares (``MANIFEST``) and what the config grants it, checked before it runs.

A plugin is an importable module or package exposing ``MANIFEST`` (a dict or a
:class:`Manifest`) and ``setup(api)``. Here: the manifest's shape, the fixed capability
vocabulary, the intersection of what the manifest asks for and what the config grants, the
plugin's own config validated against the manifest's ``config`` Struct, and the ``sha256`` pin
over every file of the plugin (computed *before* the module is imported, so pinned code that
changed on disk never runs).

Print a module's digest (to pin it): ``python -m moltbot.plugins MODULE``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from moltbot.config.schema import PLUGIN_NAME_PATTERN, PluginConfig
from moltbot.errors import PluginError

log = logging.getLogger("moltbot.plugins")

Capability = Literal["tools", "channel", "gateway_methods", "network", "secrets", "storage"]
CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))
DIGEST_SHOWN = 12  # hex characters of a digest shown in messages


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a plugin says about itself. ``config``: a ``msgspec.Struct`` type, or None."""

    name: Annotated[str, Meta(pattern=PLUGIN_NAME_PATTERN)]
    version: Annotated[str, Meta(min_length=1, max_length=64)]
    description: Annotated[str, Meta(max_length=500)] = ""
    capabilities: list[Capability] = []
    config: Any = None


def parse_manifest(raw: object, pc: PluginConfig) -> Manifest:
    """Validate a module's ``MANIFEST`` and check it against the plugin's config entry."""
    where = f"plugin '{pc.name}' (module {pc.module})"
    if raw is None:
        raise PluginError(f"{where} has no MANIFEST", hint="define MANIFEST = {...} in the module")
    try:
        manifest = raw if isinstance(raw, Manifest) else msgspec.convert(raw, Manifest)
    except msgspec.ValidationError as exc:
        raise PluginError(f"{where}: invalid MANIFEST: {exc}", hint=_CAPS_HINT) from None
    schema = manifest.config
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, msgspec.Struct)):
        raise PluginError(
            f"{where}: MANIFEST config must be a msgspec.Struct type or None",
            hint="declare the plugin's settings as a msgspec.Struct subclass",
        )
    if manifest.name != pc.name:
        raise PluginError(
            f"{where}: the module calls itself '{manifest.name}'",
            hint=f"set the plugin's name to '{manifest.name}' in config, or use another module",
        )
    if pc.version is not None and pc.version != manifest.version:
        raise PluginError(
            f"{where}: version {manifest.version} is installed, the config asks for {pc.version}",
            hint="install the version the config names, or update plugins[].version",
        )
    return manifest


_CAPS_HINT = "capabilities are: " + ", ".join(sorted(CAPABILITIES))


def effective_capabilities(pc: PluginConfig, manifest: Manifest) -> frozenset[str]:
    """What the plugin may use: granted in config *and* asked for in its manifest."""
    unknown = sorted(set(pc.capabilities) - CAPABILITIES)
    if unknown:
        raise PluginError(
            f"plugin '{pc.name}': unknown capability {', '.join(unknown)} in config",
            hint=_CAPS_HINT,
        )
    wanted = frozenset(manifest.capabilities)
    granted = frozenset(pc.capabilities)
    missing = sorted(wanted - granted)
    if missing:
        log.warning("plugin %s asks for ungranted capabilities: %s", pc.name, ", ".join(missing))
    caps = wanted & granted
    if pc.secrets and "secrets" not in caps:
        raise PluginError(
            f"plugin '{pc.name}': config lists secrets but the 'secrets' capability is not "
            "both granted and asked for",
            hint="grant 'secrets' in plugins[].capabilities, or remove plugins[].secrets",
        )
    if pc.http_hosts and "network" not in caps:
        raise PluginError(
            f"plugin '{pc.name}': config lists http_hosts but the 'network' capability is not "
            "both granted and asked for",
            hint="grant 'network' in plugins[].capabilities, or remove plugins[].http_hosts",
        )
    return caps


def validate_config(pc: PluginConfig, manifest: Manifest) -> Any:
    """The plugin's ``config`` converted to its manifest's Struct (errors name the plugin)."""
    schema = manifest.config
    if schema is None:
        if pc.config:
            raise PluginError(
                f"plugin '{pc.name}' takes no config, got keys: {', '.join(sorted(pc.config))}",
                hint="remove plugins[].config",
            )
        return None
    try:
        return msgspec.convert(pc.config, schema)
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`$", f"`$.plugins[{pc.name}].config")
        if "`$" not in str(exc):
            text += f" - at `$.plugins[{pc.name}].config`"
        raise PluginError(
            f"plugin '{pc.name}': invalid config: {text}",
            hint="fix the plugin's entry in config.json (see the plugin's documentation)",
        ) from None


# --- the sha256 pin -------------------------------------------------------------------------
# Bundled plugins ship in moltbot's own source tree (examples/, beside the moltbot package, in a
# checkout that has moltbot's pyproject.toml): a fixed list. Every other plugin needs a pin.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
BUNDLED: frozenset[Path] = (
    frozenset({_SOURCE_ROOT / "examples" / "reminders" / "reminders_plugin"})
    if (_SOURCE_ROOT / "pyproject.toml").is_file()
    else frozenset()
)
REFUSED_SUFFIXES = (".so", ".pth", ".pyc", ".pyo", ".pyd", ".dylib")


def plugin_source(module: str) -> Path:
    """The plugin's package folder, or its one ``.py`` file, found without importing it
    (a dotted name imports its parent packages only)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PluginError(
            f"plugin module {module} is not installed",
            hint="pip install the plugin into moltbot's environment, or add it to PYTHONPATH",
        )
    locations = list(spec.submodule_search_locations or [])
    if len(locations) > 1:
        raise PluginError(
            f"plugin module {module} is a namespace package spread over several folders",
            hint="a plugin is one package folder with an __init__.py, or one .py file",
        )
    if locations:
        return Path(locations[0]).resolve()
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin).resolve()
    raise PluginError(
        f"plugin module {module} is not Python source ({spec.origin})",
        hint="plugins are .py modules or packages",
    )


def _refuse(module: str, rel: str, why: str) -> PluginError:
    return PluginError(
        f"plugin module {module}: {rel} is {why}; refusing to load the plugin",
        hint="a plugin is Python source only: delete it (pip compiles __pycache__ unless "
        "installed with --no-compile), then pin the plugin again",
    )


def source_files(module: str) -> list[tuple[str, Path]]:
    """(relative posix path, file) of *every* file of the plugin, sorted by path.

    Refused: ``__pycache__`` folders and compiled files (``.pyc``), native code (``.so``),
    ``.pth`` files, symbolic links, and anything that is not a plain file or folder.
    """
    source = plugin_source(module)
    if source.is_file():
        return [(source.name, source)]
    files: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(source, followlinks=False):
        base = Path(folder)
        for name in sorted(dirs + names):
            path = base / name
            rel = path.relative_to(source).as_posix()
            if name == "__pycache__":
                raise _refuse(module, rel, "a bytecode cache folder")
            if path.is_symlink():
                raise _refuse(module, rel, "a symbolic link")
            if name.endswith(REFUSED_SUFFIXES):
                raise _refuse(module, rel, "compiled or native code, or a .pth file")
            if name in names and not path.is_file():
                raise _refuse(module, rel, "not a regular file")
            if name in names:
                files.append((rel, path))
    return sorted(files)


def source_digest(module: str) -> str:
    """SHA-256 over every file of the plugin, sorted: ``path NUL length NUL bytes`` each."""
    h = hashlib.sha256()
    for rel, path in source_files(module):
        data = path.read_bytes()
        h.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def is_bundled(module: str) -> bool:
    """True for a plugin shipped with moltbot (:data:`BUNDLED`: ``examples/reminders``)."""
    return plugin_source(module) in BUNDLED


def verify_pin(pc: PluginConfig, *, required: bool = True) -> str:
    """The plugin's digest; PluginError when ``pc.sha256`` is set and differs, or when it is
    missing (``required``) for a plugin that is not bundled with moltbot."""
    digest = source_digest(pc.module)
    if pc.sha256 is None and required and not is_bundled(pc.module):
        raise PluginError(
            f"plugin '{pc.name}' is not pinned; only plugins bundled with moltbot run without "
            f"a pin. Review its code, then set plugins[{pc.name}].sha256 to {digest}",
            hint=f"the digest is also printed by: python -m moltbot.plugins {pc.module}",
        )
    if pc.sha256 is not None and digest != pc.sha256:
        raise PluginError(
            f"plugin '{pc.name}': source digest {digest[:DIGEST_SHOWN]}... does not match the "
            f"pinned {pc.sha256[:DIGEST_SHOWN]}...; refusing to load it",
            hint=f"review the plugin's code; if the change is expected, pin the new digest: "
            f"python -m moltbot.plugins {pc.module}",
        )
    return digest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m moltbot.plugins MODULE", file=sys.stderr)
        return 2
    try:
        print(source_digest(args[0]))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def entry_points(module: ModuleType, pc: PluginConfig) -> tuple[Callable[..., Any], Any]:
    """The plugin's ``setup(api)`` and its optional ``async run(api)``; ``PluginError`` when
    they are not what moltbot calls."""
    setup = getattr(module, "setup", None)
    if not callable(setup):
        raise PluginError(
            f"plugin '{pc.name}': module {pc.module} has no setup(api) function",
            hint="define def setup(api): ... in the plugin module",
        )
    run = getattr(module, "run", None)
    if run is not None and not inspect.iscoroutinefunction(run):
        raise PluginError(
            f"plugin '{pc.name}': run must be an async function",
            hint="define async def run(api): ... or remove it",
        )
    return setup, run
