"""The QR code of a WhatsApp link in progress, for the web page to show.

The link itself is made by ``moltbot channels login whatsapp:<account>`` (the CLI): only it
can store the session key in the vault (a running tree reads the vault through the vault
agent, which answers reads only). While it waits for the scan, the CLI publishes the current
QR text here (``run/whatsapp-link/<account>.json``, 0600 in a 0700 folder of ours, written
atomically); the gateway's ``whatsapp.link`` method watches that file and streams it to the
authenticated page as module rows (``rows``: the page draws them on a canvas; the QR text is
encoded here with segno, no script or image from elsewhere). The file says ``waiting`` (with
the code), then ``linked`` or ``failed`` (without it); a ``waiting`` older than ``STALE_S``
is not shown (a login that died).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import msgspec

from moltbot import paths
from moltbot.config.schema import ACCOUNT_ID_PATTERN
from moltbot.errors import BadRequest, MoltbotError
from moltbot.security.fsmodes import atomic_write, owned_private_dir

log = logging.getLogger(__name__)
STALE_S = 60.0  # WhatsApp rotates the code every ~20 s; a minute without one: gone
_ACCOUNT = re.compile(ACCOUNT_ID_PATTERN)


class LinkState(msgspec.Struct, frozen=True, kw_only=True):
    state: str  # none | waiting | linked | failed
    code: str = ""
    at: float = 0.0


def check_account(account: str) -> str:
    if not _ACCOUNT.match(account) or ".." in account:
        raise BadRequest(
            "not a WhatsApp account id",
            hint="letters, digits, '_', '.', '-', as in channels.whatsapp[].account",
        )
    return account


def rows(code: str) -> list[str]:
    """The QR code of ``code`` as rows of '1' (dark) and '0', without the quiet zone."""
    import segno

    return ["".join("1" if m else "0" for m in row) for row in segno.make_qr(code).matrix]


class LinkBoard:
    def __init__(self, home: Path | None = None) -> None:
        self._home = home

    def _file(self, account: str) -> Path:
        base = paths.run_dir(self._home if self._home is not None else paths.home())
        return base / "whatsapp-link" / f"{check_account(account)}.json"

    def publish(self, account: str, state: str, code: str = "") -> None:
        path = self._file(account)
        path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        owned_private_dir(path.parent)
        body = LinkState(state=state, code=code, at=time.time())
        atomic_write(path, msgspec.json.encode(body))

    def tell(self, account: str, state: str, code: str = "") -> None:
        """``publish`` for the login: a board that cannot be written (a folder of the wrong
        mode) only costs the page its QR, never the terminal's login."""
        try:
            self.publish(account, state, code)
        except (OSError, MoltbotError) as exc:
            log.warning("the QR is not shown on the web page: %s", getattr(exc, "code", exc))

    def read(self, account: str, now: float | None = None) -> LinkState:
        try:
            state = msgspec.json.decode(self._file(account).read_bytes(), type=LinkState)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return LinkState(state="none")
        now = time.time() if now is None else now
        if state.state == "waiting" and now - state.at > STALE_S:
            return LinkState(state="none")
        return state
