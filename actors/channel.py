"""A channel account (``channels/<type>:<account>``), inside its type's process.

Thin: it builds the adapter from the config (secrets resolved from the vault or the
environment), checks the credentials, loads the pairing book from the store and runs
``moltbot.channels.service.ChannelService``
with the store and the agents reached by stable name (``actors.routing``: calls ride through
their restarts). All the per-message logic lives in that module. Each secret it reads from the
vault (``secret_read``) and each pairing request and decision (``pairing``) is sent to the
store's audit log by ``actors.audit.AuditForwarder``.

An account that cannot start never fails the tree's start: a platform out of reach is retried
with backoff by the receive loop (``retrying``); credentials the platform refuses, or a secret
missing from the vault, park the account (``rejected``, with the reason and the fix) until the
vault changes, and then it tries again by itself. ``status`` and ``figures`` carry the truth
(``moltbot.channels.link``).
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
from moltbot.channels.hooks import HookReply, HookRequest
from moltbot.channels.link import Link
from moltbot.channels.media_step import send_file
from moltbot.channels.service import ChannelService, ServiceOptions
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import (
    ConfigError,
    MoltbotError,
    PlatformRejected,
    PlatformUnavailable,
    RateLimited,
    Unavailable,
    VaultError,
)
from moltbot.media.build import media_intake
from moltbot.messages import InboundMessage, OutboundFile, OutboundMessage
from moltbot.security.vault import fingerprint as vault_fingerprint
from moltbot.security.vault import lazy_get

log = logging.getLogger("moltbot.channel")

CHANNEL_TYPES = CHANNEL_KINDS
FIRST_REQUEST = {  # imported by the platform client's first request (httpx: its transport)
    "signal": ("httpcore", "h11", "anyio._backends._asyncio"),
}
SETUP_DEADLINE_S = 20.0  # below the supervisor's ready timeout, so the cause is the one shown
CONNECT_TIMEOUT_S = 15.0
METRICS_EVERY_S = 5.0
PARKED_POLL_S = 2.0  # a parked account looks at the vault this often


async def _vault_changes(seen: tuple[Any, ...]) -> None:
    """Returns once the vault's files differ from ``seen`` (a secret set, replaced, removed)."""
    while True:
        await asyncio.sleep(PARKED_POLL_S)
        if vault_fingerprint() != seen:
            return


class ChannelCore(ChildBase):
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
        self.link = Link()
        self._reported = (0, 0)  # (accepted, sent) already counted in the Ray metrics

    # --- life ------------------------------------------------------------------------------
    @classmethod
    def modules_for(cls, args: dict[str, Any]) -> tuple[str, ...]:
        channel = args.get("channel", "")
        if channel not in CHANNEL_TYPES:
            return ()
        warm = ("moltbot.channels.telegram_warm",) if channel == "telegram" else ()
        # its models too, and what its HTTP client imports at its first request
        return (f"moltbot.channels.{channel}", *warm, *FIRST_REQUEST.get(channel, ()))

    async def setup(self) -> None:
        if self.channel not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {self.channel!r}")
        await self._build()

    async def _build(self) -> None:
        """The adapter, connected if the platform answers, and the service around it; or the
        account parked (``link`` rejected) when it cannot work until its secrets change."""
        index, acct = find_account(getattr(self.config.channels, self.channel), self.account)
        try:
            adapter = make_adapter(
                self.channel,
                index,
                acct,
                self._secret,
                cursor_store=StoreCursors(self.namespace, self.path),
            )
            media = media_intake(self.config, self._secret)  # its transcription key
        except (ConfigError, VaultError) as exc:  # e.g. its secret is not in the vault
            self._park(exc)
            return
        try:
            try:
                await asyncio.wait_for(adapter.connect(), CONNECT_TIMEOUT_S)
                self.link.connected()
            except (PlatformUnavailable, RateLimited, TimeoutError) as exc:
                # not fatal: run() connects with backoff, and the link says it is retrying
                log.warning("%s: not connected yet: %s", self.path, getattr(exc, "code", "timeout"))
            except PlatformRejected as exc:
                await adapter.close()
                self._park(exc)
                return
            key = pairing_key(self.channel, self.account)
            saved = await self._call(STORE, "kv_get", key, deadline_s=SETUP_DEADLINE_S)
        except BaseException:
            await adapter.close()
            raise
        ports = channel_ports(
            self.namespace, self.path, adapter, pairing_key=key, config=self.config
        )
        self._service = ChannelService(
            adapter,
            load_pairing(saved, policy_for(acct)),
            ports,
            ServiceOptions(stuck_after_s=acct.stuck_after_s),
            audit=self._audit.record,
            link=self.link,
            media=media,
        )

    def _park(self, exc: MoltbotError) -> None:
        log.error("%s: parked: %s", self.path, exc.user_message)
        self.link.rejected(exc)
        self._audit.record(
            "channel", {"event": "parked", "reason": exc.user_message, "fix": exc.hint}
        )

    async def main(self) -> None:
        while self._service is None:  # parked: try again once the vault changes
            await _vault_changes(vault_fingerprint())
            log.info("%s: the vault changed; trying again", self.path)
            self.link = Link()
            await self._build()
        service = self._service
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
    async def _call(
        self, path: str, method: str, *args: Any, deadline_s: float = STORE_DEADLINE_S
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
            return {
                "channel": self.channel,
                "account": self.account,
                "connected": False,
                "link": self.link.snapshot(),
            }
        return self._service.status()

    async def figures(self) -> dict[str, Any]:
        if self._service is None:
            return {"link": self.link.snapshot()}
        st = self._service
        return {
            "in": st.counts["accepted"],
            "out": st.counts["sent"],
            "queue": st.queue_depth(),
            "link": self.link.snapshot(),
        }

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

    async def take(self, msg: InboundMessage) -> bool:
        """Answer a message the scheduler journaled for this account (``ChannelService.take``)."""
        await self._ready.wait()
        return await self._need().take(msg)

    async def webhook(self, req: HookRequest) -> HookReply:
        """A platform's webhook, from the gateway (WhatsApp Cloud): the adapter verifies it and
        journals its messages through the running service before answering."""
        if self._service is None:
            return HookReply(status=503, body="not ready\n")  # Meta delivers it again later
        handle = getattr(self._service.adapter, "webhook", None)
        if handle is None:  # an account that takes no webhooks (WhatsApp web mode)
            return HookReply(status=404, body="no such webhook\n")
        reply: HookReply = await handle(req)
        return reply

    async def notify(self, out: OutboundMessage) -> None:
        """Send a system message (an approval request) to one of this account's chats."""
        await self._ready.wait()
        await self._need().notify(out)

    async def send_file(self, out: OutboundFile) -> str:
        """Send a file the agent's ``send_file`` tool read and checked to one of our chats."""
        await self._ready.wait()
        service = self._need()
        sent = await send_file(service.adapter, out)
        service.counts["files_sent"] += 1
        service.link.sent()
        return sent


# in a tree an account runs inside its channel type's process (a ``host``: ``actors.registry``);
# on its own (tests, a supervisor of plain children) it is an actor of this class
ChannelActor = ray.remote(**CHILD_OPTIONS)(ChannelCore)
