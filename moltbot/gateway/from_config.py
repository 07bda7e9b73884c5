"""Gateway settings from the config file (pure): secrets resolved by the caller's lookup."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from moltbot import paths
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import Config
from moltbot.gateway.auth import check_secrets
from moltbot.gateway.server import GatewaySettings
from moltbot.gateway.tls import server_context


def settings_from_config(cfg: Config, lookup: Callable[[str], str]) -> GatewaySettings:
    """The gateway's settings with its secrets resolved; ``ConfigError`` when it would have
    no credentials or weak ones (``moltbot.gateway.auth.check_secrets``)."""
    gw = cfg.gateway
    token = (
        resolve_secret(gw.auth.token, lookup, at="$.gateway.auth.token") if gw.auth.token else None
    )
    password = (
        resolve_secret(gw.auth.password, lookup, at="$.gateway.auth.password")
        if gw.auth.password
        else None
    )
    check_secrets(token, password)
    return GatewaySettings(
        host=gw.bind,
        port=gw.port,
        token=token,
        password=password,
        allowed_origins=tuple(gw.allowed_origins),
        max_frame_bytes=gw.max_frame_bytes,
        rate_per_second=gw.rate_limit.per_second,
        rate_burst=gw.rate_limit.burst,
        idle_minutes=gw.web_session.idle_minutes,
        absolute_hours=gw.web_session.absolute_hours,
        lockout_max=gw.lockout.max_failures,
        lockout_window_s=gw.lockout.window_s,
        lockout_global_max=gw.lockout.global_max_failures,
        lockout_global_s=gw.lockout.global_lock_s,
        unauth_max=gw.max_unauthenticated,
        unauth_per_client=gw.max_unauthenticated_per_address,
    )


def ssl_from_config(cfg: Config, home: Path | None = None) -> ssl.SSLContext | None:
    tls = cfg.gateway.tls
    if tls is None:
        return None
    if tls.cert or tls.key:
        return server_context(
            cert=Path(tls.cert) if tls.cert else None, key=Path(tls.key) if tls.key else None
        )
    return server_context(folder=(home or paths.home()) / "tls")
