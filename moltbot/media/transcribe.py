"""Voice notes to text through an OpenAI-compatible ``POST {base_url}/audio/transcriptions``
(a whisper server on a home-lab node, or a hosted one): multipart ``file`` + ``model``, the
answer's ``text``. The endpoint is the operator's own configured server, so it is reached
directly (like the model providers), not through the web fetcher's public-address guard."""

from __future__ import annotations

import logging

import httpx

from moltbot.errors import MediaRefused

log = logging.getLogger(__name__)
MAX_TRANSCRIPT_CHARS = 20_000


class Transcriber:
    def __init__(
        self, base_url: str, model: str, api_key: str = "", *, timeout_s: float = 120.0
    ) -> None:
        self._url = base_url.rstrip("/") + "/audio/transcriptions"
        self._model = model
        self._key = api_key
        self._timeout = timeout_s

    def __repr__(self) -> str:  # never the key
        return f"Transcriber(url={self._url!r}, model={self._model!r})"

    async def transcribe(self, data: bytes, filename: str, mime: str) -> str:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
                response = await client.post(
                    self._url,
                    headers=headers,
                    data={"model": self._model, "response_format": "json"},
                    files={"file": (filename, data, mime)},
                )
        except httpx.HTTPError as exc:
            log.warning("transcription failed: %s", type(exc).__name__)
            raise MediaRefused("the transcription server could not be reached") from None
        if response.status_code != 200:
            log.warning("transcription failed: HTTP %s", response.status_code)
            raise MediaRefused(f"the transcription server answered {response.status_code}")
        try:
            text = response.json().get("text", "")
        except ValueError:
            raise MediaRefused("the transcription server's answer was not JSON") from None
        if not isinstance(text, str):
            raise MediaRefused("the transcription server's answer has no text")
        return text.strip()[:MAX_TRANSCRIPT_CHARS]
