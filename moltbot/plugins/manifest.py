"""What a plugin declares (``MANIFEST``) and what the config grants it, checked before it runs.

A plugin is an importable module or package exposing ``MANIFEST`` (a dict or a
:class:`Manifest`) and ``setup(api)``. Here: the manifest's shape, the fixed capability
vocabulary, the intersection of what the manifest asks for and what the config grants, the
plugin's own config validated against the manifest's ``config`` Struct, and the ``sha256`` pin
over the plugin's source files (computed *before* the module is imported, so pinned code that
changed on disk never runs).

Print a module's digest (to pin it): ``python -m moltbot.plugins MODULE``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
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
def source_files(module: str) -> list[tuple[str, Path]]:
    """(relative posix path, file) of every ``.py`` file of ``module``, sorted by path.

    Finds the module without importing it (a dotted name imports its parent packages only).
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PluginError(
            f"plugin module {module} is not installed",
            hint="pip install the plugin into moltbot's environment, or add it to PYTHONPATH",
        )
    files: dict[str, Path] = {}
    if spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            root = Path(location)
            for path in root.rglob("*.py"):
                if path.is_file():
                    files.setdefault(path.relative_to(root).as_posix(), path)
    elif spec.origin and spec.origin.endswith(".py"):
        path = Path(spec.origin)
        files[path.name] = path
    else:
        raise PluginError(
            f"plugin module {module} is not Python source ({spec.origin})",
            hint="plugins are .py modules or packages",
        )
    return sorted(files.items())


def source_digest(module: str) -> str:
    """SHA-256 over the module's sorted .py files: ``path NUL length NUL bytes`` each."""
    h = hashlib.sha256()
    for rel, path in source_files(module):
        data = path.read_bytes()
        h.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def verify_pin(pc: PluginConfig) -> str:
    """The module's source digest; PluginError when ``pc.sha256`` is set and differs."""
    digest = source_digest(pc.module)
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
