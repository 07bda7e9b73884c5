"""The plugin actor (kind ``plugin``, path ``plugins/plugin:<name>``): the broker of one plugin.

The plugin's code never runs in this process. After the ready handshake, ``main`` checks the
pin (every file; required unless the plugin is bundled with moltbot), starts the plugin's own
host process in bubblewrap (``moltbot.plugins.jail``, ``moltbot.plugins.host``) and serves it
as its broker (``moltbot.plugins.broker``): import, manifest, config and ``setup(api)`` happen
over there, every request comes back here and is checked against the grants. So a bad plugin
never fails the tree's start: one whose ``run`` raises, whose process exits or whose event loop
blocks (the broker's ping) is restarted by the plugins supervisor like any child (the host
process dies with it). One that must not run (pin missing or wrong, bad manifest or config, a
capability it lacks at setup) is *refused*: the actor stays up, idle, and says why in
``describe()`` instead of crash-looping on a fixed fault until its supervisor escalates.

Each channel the plugin registered runs the ordinary channel pipeline
(``moltbot.channels.service.ChannelService``) over a ``PluginChannelAdapter``, with the same
ports as a channel actor (``actors.channel_ports``: journal, agents, pairing book) and the
access rules of ``plugins[].channel_policy``. The services are tasks of ``main``: one that
fails takes the actor down (restarted, then the journal's unfinished messages are replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import ray

from actors import routing
from actors.audit import AuditForwarder
from actors.base import CHILD_OPTIONS, ChildBase
from actors.channel_ports import STORE, call, channel_ports
from moltbot.channels.accounts import load_pairing, pairing_key, policy_for
from moltbot.channels.service import ChannelService
from moltbot.config.schema import Config, PluginConfig
from moltbot.errors import NotFound, PluginError, Unavailable
from moltbot.messages import OutboundMessage, ToolResult
from moltbot.plugins import jail
from moltbot.plugins.api import Services
from moltbot.plugins.broker import Broker
from moltbot.plugins.channel import PluginChannelAdapter
from moltbot.plugins.loader import plugin_config
from moltbot.plugins.manifest import plugin_source, verify_pin
from moltbot.sandbox.bwrap import SandboxPolicy
from moltbot.security.vault import lazy_get

log = logging.getLogger("moltbot.plugin")
STORE_DEADLINE_S = 10.0
DENIALS_KEPT = 50
HOST_MEMORY_MB = 1024
LOG_LINE_MAX = 2000


async def _crash_only(serving: Coroutine[Any, Any, None]) -> None:
    """The broker's end is a crash (restart), never a refusal: not a PluginError."""
    try:
        await serving
    except PluginError as exc:
        raise Unavailable(exc.user_message) from None


async def _log_stderr(plugin: str, stream: asyncio.StreamReader) -> None:
    """The host process's stderr (its log and the plugin's prints), in capped pieces."""
    while chunk := await stream.read(LOG_LINE_MAX):
        for line in chunk.decode("utf-8", "replace").splitlines():
            log.info("plugin %s: %s", plugin, line)


@ray.remote(**CHILD_OPTIONS)
class PluginActor(ChildBase):
    def __init__(self, *, config: Config | None = None, plugin: str = "", **kw: Any) -> None:
        super().__init__(**kw)
        self.cfg = config or Config()
        self.plugin = plugin
        self.loaded: Broker | None = None
        self.digest = ""
        self.refused: PluginError | None = None
        self.denials: deque[dict[str, str]] = deque(maxlen=DENIALS_KEPT)
        self._audit = AuditForwarder(self.namespace, self.path)  # denials and secret reads
        self._vault_get = lazy_get(on_read=self._audit.secret_reader())  # opened at first use
        self._settled = asyncio.Event()  # loaded (setup done) or refused
        self.adapters: dict[str, PluginChannelAdapter] = {}  # by channel name
        self.channels: dict[str, ChannelService] = {}  # by channel name, once running

    # --- life --------------------------------------------------------------------------------
    async def main(self) -> None:
        pc = plugin_config(self.cfg, self.plugin)
        try:
            try:
                self.digest = verify_pin(pc)  # every file; a pin unless bundled with moltbot
                await self._host(pc, plugin_source(pc.module))
            except* PluginError as group:  # a fixed fault: refuse, do not crash-loop
                first = group.exceptions[0]
                while isinstance(first, ExceptionGroup):
                    first = first.exceptions[0]
                self._refuse(first)
            self._settled.set()
            await asyncio.Event().wait()  # refused: idle, and say why in describe()
        finally:
            self._settled.set()
            for adapter in self.adapters.values():
                await adapter.close()
            await self._audit.aclose()

    async def _host(self, pc: PluginConfig, source: Path) -> None:
        """Run the plugin's host process and broker it; PluginError (in a group) = refused."""
        services = Services(
            secret=self._secret, kv_get=self._kv_get, kv_put=self._kv_put, denied=self._denied
        )
        proc = await jail.spawn(source, SandboxPolicy(workspace=source, memory_mb=HOST_MEMORY_MB))
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        broker = Broker(pc, services, proc.stdout, proc.stdin)
        try:
            async with asyncio.TaskGroup() as tg:  # a task raising is a crash: restarted
                tg.create_task(_log_stderr(self.plugin, proc.stderr), name="plugin-log")
                serving = tg.create_task(_crash_only(broker.serve()), name="plugin-broker")
                await asyncio.wait_for(broker.load(), self.cfg.supervision.ready_timeout_s)
                self.loaded = broker
                self._settled.set()
                self._connect_channels(broker)  # before run(api) may deliver
                await broker.start()
                await self._start_channels(tg)
                await serving
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def _refuse(self, exc: PluginError) -> None:
        self.refused = exc
        self.loaded = None
        log.error("plugin %s refused: %s", self.plugin, exc)

    # --- channels ----------------------------------------------------------------------------
    def _connect_channels(self, broker: Broker) -> None:
        assert broker.api is not None
        for name, spec in broker.api.registered.channels.items():
            adapter = self.adapters[name] = PluginChannelAdapter(spec, self.plugin)
            broker.api.connect_channel(name, adapter.deliver)

    async def _start_channels(self, tg: asyncio.TaskGroup) -> None:
        policy = policy_for(plugin_config(self.cfg, self.plugin).channel_policy)
        for name, adapter in self.adapters.items():
            key = pairing_key(name, self.plugin)
            saved = await call(self.namespace, self.path, STORE, "kv_get", key)
            ports = channel_ports(
                self.namespace, self.path, adapter, pairing_key=key, config=self.cfg
            )
            service = ChannelService(
                adapter, load_pairing(saved, policy), ports, audit=self._audit.record
            )
            self.channels[name] = service
            tg.create_task(service.run(), name=f"channel:{name}")

    async def notify(self, out: OutboundMessage) -> None:
        """Send a system message (an approval request) through one of this plugin's channels."""
        await (await self._channel(out.channel)).notify(out)

    async def _channel(self, name: str) -> ChannelService:
        await self._settled.wait()
        if name not in self.adapters:
            raise NotFound(f"plugin '{self.plugin}' has no channel {name!r}")
        service = self.channels.get(name)
        if service is None:
            raise Unavailable(f"channel {name} of plugin '{self.plugin}' is still starting")
        return service

    # --- services the PluginAPI gets ---------------------------------------------------------
    def _secret(self, name: str) -> str:
        return self._vault_get(name)

    async def _kv_get(self, key: str) -> bytes | None:
        got = await routing.call(
            self.namespace, "store", "kv_get", key, deadline_s=STORE_DEADLINE_S
        )
        return cast(bytes | None, got)

    async def _kv_put(self, key: str, value: bytes) -> None:
        await routing.call(
            self.namespace, "store", "kv_put", key, value, deadline_s=STORE_DEADLINE_S
        )

    def _denied(self, fields: dict[str, str]) -> None:
        self.denials.append(dict(fields))
        self._audit.record("plugin_denied", fields)  # never blocks, never raises

    # --- calls -------------------------------------------------------------------------------
    def _not_loaded(self) -> str:
        why = self.refused.user_message if self.refused else "it is not loaded"
        return f"plugin '{self.plugin}' is not available: {why}"

    async def call_tool(self, name: str, input: dict[str, Any], session: str) -> ToolResult:
        await self._settled.wait()
        if self.loaded is None:
            return ToolResult(text=self._not_loaded(), is_error=True)
        return await self.loaded.call_tool(name, input, session)

    async def tools(self) -> list[dict[str, Any]]:
        """The plugin's tool specs (name, description, input_schema) for the model."""
        await self._settled.wait()
        return [] if self.loaded is None else list(self.loaded.tool_specs.values())

    async def call_method(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        await self._settled.wait()
        if self.loaded is None:
            raise PluginError(self._not_loaded())
        assert self.loaded.api is not None
        return await self.loaded.api.call_method(name, params)

    async def describe(self) -> dict[str, Any]:
        await self._settled.wait()
        if self.loaded is None:
            state: dict[str, Any] = {"name": self.plugin, "state": "refused"}
            state["error"] = str(self.refused) if self.refused else ""
        else:
            state = {**self._describe(self.loaded), "state": "running", "error": ""}
            state["channel_status"] = {n: svc.status() for n, svc in self.channels.items()}
        state["denials"] = list(self.denials)
        return state

    def _describe(self, broker: Broker) -> dict[str, Any]:
        pc, api = broker.pc, broker.api
        assert api is not None
        reg = api.registered
        return {
            "name": pc.name,
            "module": pc.module,
            "version": str(broker.manifest.get("version", ""))[:64],
            "description": str(broker.manifest.get("description", ""))[:500],
            "sha256": self.digest,
            "pinned": pc.sha256 is not None,
            "capabilities": sorted(api.capabilities),
            "requested": sorted(str(c) for c in broker.manifest.get("capabilities", [])),
            "tools": list(broker.tool_specs),
            "methods": sorted(reg.methods),
            "channels": sorted(reg.channels),
            "http_hosts": list(pc.http_hosts),
        }

    # --- pairing on the plugin's channels (like a channel actor's, by channel name) ----------
    async def pairing_list(self, channel: str) -> dict[str, list[dict[str, Any]]]:
        return (await self._channel(channel)).pairing_list()

    async def pairing_approve(self, channel: str, code: str, by: str = "") -> str:
        """Approve a pending pairing code (NotFound if unknown or expired): the sender id."""
        return await (await self._channel(channel)).pairing_approve(code, by)

    async def pairing_deny(self, channel: str, code: str, by: str = "") -> str:
        return await (await self._channel(channel)).pairing_deny(code, by)

    def info(self) -> dict[str, Any]:
        data = super().info()
        data["plugin"] = self.plugin
        return data
