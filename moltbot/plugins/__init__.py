"""Plugins: importable modules with a ``MANIFEST`` and ``setup(api)``, each in its own actor.

A plugin sees only the capabilities its config grants *and* its manifest asks for, and only
the secrets its config lists. See :mod:`moltbot.plugins.manifest` (checks and the sha256 pin),
:mod:`moltbot.plugins.api` (``PluginAPI``) and :mod:`moltbot.plugins.loader`.
"""

from __future__ import annotations

from moltbot.plugins.api import PluginAPI, Services
from moltbot.plugins.loader import LoadedPlugin, activate, plugin_config, prepare
from moltbot.plugins.manifest import CAPABILITIES, Manifest, source_digest

__all__ = [
    "CAPABILITIES",
    "LoadedPlugin",
    "Manifest",
    "PluginAPI",
    "Services",
    "activate",
    "plugin_config",
    "prepare",
    "source_digest",
]
