"""The scheduler actor (``scheduler``): cron jobs, reminders and the heartbeat.

Thin: ``moltbot.schedule.service.SchedulerService`` decides; its ports are the store (kv for
the schedule, the inbound journal for the fires) and the channel actors (``take``: answer a
journaled fire), reached by stable name through ``actors.routing``. The jobs are listed, added
and removed by the agent's tools, ``moltbot cron`` and the gateway.
"""

from __future__ import annotations

from typing import Any

import msgspec
import ray

from actors.base import CHILD_OPTIONS, ChildBase
from actors.channel_ports import STORE, call
from moltbot.config.schema import Config
from moltbot.errors import BadRequest, Unavailable
from moltbot.messages import InboundMessage
from moltbot.schedule.service import JobRequest, SchedulePorts, SchedulerService, job_view

TAKE_DEADLINE_S = 20.0  # a channel that is away answers the fire from its replay instead


class SchedulerCore(ChildBase):
    def __init__(self, *, path: str = "", config: Config | None = None, **kw: Any) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self._service: SchedulerService | None = None

    async def setup(self) -> None:
        ns, me = self.namespace, self.path

        async def kv_get(key: str) -> bytes | None:
            value = await call(ns, me, STORE, "kv_get", key)
            return bytes(value) if value is not None else None

        async def kv_put(key: str, value: bytes) -> None:
            await call(ns, me, STORE, "kv_put", key, value)

        async def journal(msgs: list[InboundMessage]) -> list[bool]:
            return list(await call(ns, me, STORE, "accept_many", msgs))

        async def pending() -> list[InboundMessage]:
            found: list[InboundMessage] = await call(ns, me, STORE, "pending")
            return found

        async def submit(msg: InboundMessage) -> None:
            path = f"channels/{msg.channel}:{msg.account}"
            await call(ns, me, path, "take", msg, deadline_s=TAKE_DEADLINE_S)

        ports = SchedulePorts(
            kv_get=kv_get, kv_put=kv_put, journal=journal, pending=pending, submit=submit
        )
        self._service = SchedulerService(self.config, ports)
        await self._service.load()

    async def main(self) -> None:
        await self._need().run()

    def _need(self) -> SchedulerService:
        if self._service is None:
            raise Unavailable("the scheduler is still starting")
        return self._service

    # --- the jobs --------------------------------------------------------------------------
    async def jobs_list(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        return [job_view(j) for j in self._need().jobs()]

    async def jobs_add(self, request: dict[str, Any]) -> dict[str, Any]:
        """Add a job (``JobRequest`` fields); ``BadRequest`` / ``ConfigError`` say what is wrong."""
        await self._ready.wait()
        try:
            req = msgspec.convert(request, JobRequest)
        except msgspec.ValidationError as exc:
            raise BadRequest(
                f"not a job: {exc}",
                hint="kind, spec, text, id, deliver_to, catch_up (skip|once), tz",
            ) from None
        return job_view(await self._need().add(req))

    async def jobs_remove(self, job_id: str) -> dict[str, Any]:
        await self._ready.wait()
        return job_view(await self._need().remove(job_id))

    async def figures(self) -> dict[str, Any]:
        if self._service is None:
            return {}
        return {**self._service.counts, "jobs": len(self._service.jobs())}


# in a tree it runs inside the root's process (``actors.registry.IN_PROCESS``); on its own
# (tests, tools) it is an actor of its own
SchedulerActor = ray.remote(**CHILD_OPTIONS)(SchedulerCore)
