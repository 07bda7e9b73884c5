"""The channel actor: one per configured account (``channels/<type>:<account>``).

Thin: it builds the adapter from the config (secrets resolved from the vault or the
environment), checks the credentials (a refused token fails the start, so the supervisor shows
it), loads the pairing book from the store and runs ``moltbot.channels.service.ChannelService``
with the store and the agents reached by stable name (``actors.routing``: calls ride through
their restarts). All the per-message logic lives in that module. Each secret it reads from the
vault (``secret_read``) and each pairing request and decision (``pairing``) is sent to the
store's audit log by ``actors.audit.AuditForwarder``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors import metrics
from actors.audit import AuditForwarder
from actors.base import CHILD_OPTIONS, ChildBase
from actors.channel_ports import STORE, STORE_DEADLINE_S, StoreCursors, call, channel_ports
from moltbot.channels.accounts import (
    find_account,
    load_pairing,
    make_adapter,
    pairing_key,
    policy_for,
)
from moltbot.channels.service import ChannelService, ServiceOptions
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import PlatformUnavailable, RateLimited, Unavailable
from moltbot.messages import OutboundMessage
from moltbot.security.vault import lazy_get

log = logging.getLogger("moltbot.channel")

CHANNEL_TYPES = CHANNEL_KINDS
SETUP_DEADLINE_S = 20.0  # below the supervisor's ready timeout, so the cause is the one shown
CONNECT_TIMEOUT_S = 15.0
METRICS_EVERY_S = 5.0


@ray.remote(**CHILD_OPTIONS)
class ChannelActor(ChildBase):
    def __init__(
        self,
        *,
        path: str = "",
        config: Config | None = None,
        channel: str = "",
        account: str = "",
        **kw: Any,
    ) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self.channel = channel
        self.account = account
        self._audit = AuditForwarder(self.namespace, path)
        self._vault_get = lazy_get(on_read=self._audit.secret_reader())  # opened at first use
        self._service: ChannelService | None = None
        self._reported = (0, 0)  # (accepted, sent) already counted in the Ray metrics

    # --- life ------------------------------------------------------------------------------
    def preload_modules(self) -> tuple[str, ...]:
        return (f"moltbot.channels.{self.channel}",) if self.channel in CHANNEL_TYPES else ()

    async def setup(self) -> None:
        if self.channel not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {self.channel!r}")
        index, acct = find_account(getattr(self.config.channels, self.channel), self.account)
        adapter = make_adapter(self.channel, index, acct, self._secret,
                               cursor_store=StoreCursors(self.namespace, self.path))
        try:
            try:  # PlatformRejected (a bad token) fails the start: the supervisor shows it
                await asyncio.wait_for(adapter.connect(), CONNECT_TIMEOUT_S)
            except (PlatformUnavailable, RateLimited, TimeoutError) as exc:
                # not fatal: run() connects with backoff (and `problem` reports if it never does)
                log.warning("%s: not connected yet: %s", self.path,
                            getattr(exc, "code", "timeout"))
            key = pairing_key(self.channel, self.account)
            saved = await self._call(STORE, "kv_get", key, deadline_s=SETUP_DEADLINE_S)
        except BaseException:
            await adapter.close()
            raise
        workers = self.config.agent.workers
        ports = channel_ports(self.namespace, self.path, adapter, pairing_key=key,
                              agent_workers=workers)
        self._service = ChannelService(
            adapter,
            load_pairing(saved, policy_for(acct)),
            ports,
            ServiceOptions(stuck_after_s=acct.stuck_after_s),
            audit=self._audit.record,
        )

    async def main(self) -> None:
        service = self._need()
        reporter = asyncio.create_task(self._report_metrics(service), name="metrics")
        try:
            await service.run()
        finally:
            reporter.cancel()
            self._flush_metrics(service)
            await service.adapter.close()
            await self._audit.aclose()

    async def _report_metrics(self, service: ChannelService) -> None:
        while True:
            await asyncio.sleep(METRICS_EVERY_S)
            self._flush_metrics(service)

    def _flush_metrics(self, service: ChannelService) -> None:
        """The service's counts since the last flush, as Ray metrics (never raises)."""
        seen = self._reported
        now = (service.counts["accepted"], service.counts["sent"])
        metrics.messages_in(self.channel, now[0] - seen[0])
        metrics.messages_out(self.channel, now[1] - seen[1])
        metrics.queue_depth(self.channel, service.queue_depth())
        self._reported = now

    def problem(self) -> str | None:
        return self._service.problem() if self._service is not None else None

    # --- the store by stable name (the service's ports: actors.channel_ports) ----------------
    async def _call(self, path: str, method: str, *args: Any, deadline_s: float = STORE_DEADLINE_S
                    ) -> Any:
        return await call(self.namespace, self.path, path, method, *args, deadline_s=deadline_s)

    def _secret(self, ref: str, at: str) -> str:
        return resolve_secret(ref, self._vault_get, at=at)

    def _need(self) -> ChannelService:
        if self._service is None:
            raise Unavailable(f"{self.path} is still starting")
        return self._service

    # --- for the gateway and the CLI ---------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        if self._service is None:
            return {"channel": self.channel, "account": self.account, "connected": False}
        return self._service.status()

    async def figures(self) -> dict[str, Any]:
        if self._service is None:
            return {}
        st = self._service
        return {"in": st.counts["accepted"], "out": st.counts["sent"], "queue": st.queue_depth()}

    async def pairing_list(self) -> dict[str, list[dict[str, Any]]]:
        await self._ready.wait()
        return self._need().pairing_list()

    async def pairing_approve(self, code: str, by: str = "") -> str:
        """Approve a pending pairing code (NotFound if unknown or expired): the sender id.
        ``by`` names who decided, for the audit log (``cli``, ``gateway:<address>``)."""
        await self._ready.wait()
        return await self._need().pairing_approve(code, by)

    async def pairing_deny(self, code: str, by: str = "") -> str:
        await self._ready.wait()
        return await self._need().pairing_deny(code, by)

    async def notify(self, out: OutboundMessage) -> None:
        """Send a system message (an approval request) to one of this account's chats."""
        await self._ready.wait()
        await self._need().notify(out)
