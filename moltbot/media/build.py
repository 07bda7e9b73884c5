"""The media intake of a channel account, from the config (the actor passes the secret
resolver, as for the adapter)."""

from __future__ import annotations

from collections.abc import Callable

from moltbot.config.schema import Config
from moltbot.media.ingest import MediaIntake
from moltbot.media.transcribe import Transcriber

SecretResolver = Callable[[str, str], str]  # (reference, JSON path for errors) -> value


def media_intake(cfg: Config, secret: SecretResolver) -> MediaIntake | None:
    """None when ``media.enabled`` is false (files are then refused with a word)."""
    media = cfg.media
    if not media.enabled:
        return None
    transcriber = None
    t = media.transcription
    if t is not None:
        key = secret(t.api_key, "$.media.transcription.api_key") if t.api_key else ""
        transcriber = Transcriber(t.base_url, t.model, key, timeout_s=t.timeout_s)
    return MediaIntake(media, cfg.tools.workspace_path(), transcriber)
