"""Loading one plugin *in this process*: pin, import, manifest, capabilities, config, API; then
its ``setup``. For tests and tooling only: the plugin actor never imports a plugin, it runs it in
its sandboxed host process (:mod:`moltbot.plugins.host`); the checks are the same.

``prepare`` does everything deterministic and raises :class:`~moltbot.errors.PluginError` when
the plugin must not run (the actor then refuses it instead of restarting it in a loop).
``activate`` calls the plugin's own ``setup(api)``, which may fail like any code.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from moltbot.config.schema import Config, PluginConfig
from moltbot.errors import PluginError
from moltbot.plugins.api import PluginAPI, Services
from moltbot.plugins.manifest import (
    Manifest,
    effective_capabilities,
    entry_points,
    parse_manifest,
    validate_config,
    verify_pin,
)

RunFn = Callable[[PluginAPI], Awaitable[None]]


@dataclass
class LoadedPlugin:
    config: PluginConfig
    manifest: Manifest
    digest: str
    api: PluginAPI
    setup: Callable[[PluginAPI], Any]
    run: RunFn | None

    def describe(self) -> dict[str, Any]:
        reg = self.api.registered
        return {
            "name": self.config.name,
            "module": self.config.module,
            "version": self.manifest.version,
            "description": self.manifest.description,
            "sha256": self.digest,
            "pinned": self.config.sha256 is not None,
            "capabilities": sorted(self.api.capabilities),
            "requested": sorted(self.manifest.capabilities),
            "tools": reg.tools.names(),
            "methods": sorted(reg.methods),
            "channels": sorted(reg.channels),
        }


def plugin_config(cfg: Config, name: str) -> PluginConfig:
    for pc in cfg.plugins:
        if pc.name == name:
            return pc
    raise PluginError(f"no plugin named '{name}' in config", hint="add it under plugins[]")


def _import(pc: PluginConfig) -> ModuleType:
    try:
        return importlib.import_module(pc.module)
    except Exception as exc:  # the plugin's import-time code failed: name the type only
        raise PluginError(
            f"plugin '{pc.name}': module {pc.module} failed to import ({type(exc).__name__})",
            hint="run `python -c 'import " + pc.module + "'` in moltbot's environment to see why",
        ) from None


def prepare(pc: PluginConfig, services: Services | None = None) -> LoadedPlugin:
    """Verify and import the plugin and build its API; PluginError when it must not run."""
    # before the import: changed pinned code never executes. In-process (tests, tooling): the
    # plugin actor never uses this, it runs the plugin in its sandboxed host (plugins.host)
    digest = verify_pin(pc, required=False)
    module = _import(pc)
    manifest = parse_manifest(getattr(module, "MANIFEST", None), pc)
    caps = effective_capabilities(pc, manifest)
    config = validate_config(pc, manifest)
    setup, run = entry_points(module, pc)
    api = PluginAPI(
        pc.name,
        capabilities=caps,
        secrets=frozenset(pc.secrets),
        config=config,
        services=services,
    )
    return LoadedPlugin(pc, manifest, digest, api, setup, run)


async def activate(loaded: LoadedPlugin) -> None:
    """Run the plugin's ``setup(api)`` (sync or async)."""
    result = loaded.setup(loaded.api)
    if inspect.isawaitable(result):
        await result
