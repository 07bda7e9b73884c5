"""The linked-device session of a WhatsApp web-mode account, encrypted at rest.

neonize keeps its device keys and Signal sessions in a SQLite file it must open by path. At
rest that file exists only encrypted: ``$MOLTBOT_HOME/whatsapp/<account>.session`` (0600, in a
0700 folder), AES-256-GCM under a random 32-byte key kept in the vault as the secret
``whatsapp_session.<account>`` (so a passphrase vault protects it too, and ``moltbot secrets
delete`` makes the file useless). While the account runs, the plain database lives in a private
runtime folder, in RAM when ``/dev/shm`` exists (``/dev/shm/moltbot-<uid>/wa-<account>-<pid>``,
0700, file 0600); it is encrypted back on every ``save`` (the adapter saves after connecting,
within a second of each message, every ``save_every_s`` and on stop) and deleted on
``close``. A runtime folder left by a process that died is removed by the next ``open`` of the
same account.

What a crash costs: the runtime copy of a killed process stays in RAM (0700, ours) until the
next start removes it; session changes since the last save (about a second) are lost
(whatsmeow then asks senders to re-encrypt what it cannot decrypt).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from moltbot import paths
from moltbot.errors import VaultError
from moltbot.security.fsmodes import atomic_write, ensure_private_dir, owned_private_dir
from moltbot.security.fsmodes import short_private_base as _tmp_base

_MAGIC = b"MBWA1"
_NONCE = 12


def key_name(account: str) -> str:
    """The vault secret holding the session key of ``account``."""
    return f"whatsapp_session.{account}"


def new_key() -> str:
    """A fresh session key, as the vault stores it (base64 text)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise VaultError(
            "the WhatsApp session key in the vault is damaged",
            hint="unlink and link again: moltbot channels logout / login whatsapp:<account>",
        )
    return key


def runtime_base() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - RAM, and a folder of our own inside it
    if shm.is_dir() and os.access(shm, os.W_OK):
        return owned_private_dir(shm / f"moltbot-{os.geteuid()}")
    return _tmp_base()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SessionFile:
    def __init__(self, account: str, key: bytes, *, home: Path | None = None) -> None:
        self.account = account
        self._aead = AESGCM(key)
        self._aad = b"moltbot.whatsapp.session\x00" + account.encode()
        self.path = (home or paths.home()) / "whatsapp" / f"{account}.session"
        self.runtime: Path | None = None  # the plain database while open

    def __repr__(self) -> str:
        return f"SessionFile(account={self.account!r})"

    def exists(self) -> bool:
        return self.path.is_file()

    def open(self, *, fresh: bool = False) -> Path:
        """Decrypt into a fresh private runtime folder; the database path neonize opens (it
        does not exist yet when nothing is linked, or with ``fresh``: a new link)."""
        base = runtime_base()
        prefix = f"wa-{self.account}-"
        for stale in base.glob(f"{prefix}*"):
            tail = stale.name.removeprefix(prefix)
            if tail.isdigit() and not _alive(int(tail)):
                shutil.rmtree(stale, ignore_errors=True)
        folder = base / f"{prefix}{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        self.runtime = folder / "session.db"
        if self.exists() and not fresh:
            fd = os.open(self.runtime, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(self._decrypt(self.path.read_bytes()))
        return self.runtime

    def verify(self) -> None:
        """Check that the saved session decrypts (in memory only; VaultError if not)."""
        self._decrypt(self.path.read_bytes())

    def _decrypt(self, blob: bytes) -> bytes:
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE + 16:
            raise VaultError(f"{self.path} is damaged", hint=self._relink)
        nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE]
        try:
            return self._aead.decrypt(nonce, blob[len(_MAGIC) + _NONCE :], self._aad)
        except InvalidTag:
            raise VaultError(
                f"{self.path} does not decrypt with the session key in the vault",
                hint=self._relink,
            ) from None

    @property
    def _relink(self) -> str:
        return f"link again: moltbot channels login whatsapp:{self.account}"

    def save(self) -> bool:
        """Encrypt a consistent snapshot of the running database to ``path``; False when
        there is nothing to save yet (not linked)."""
        if self.runtime is None or not self.runtime.is_file():
            return False
        conn = sqlite3.connect(f"file:{self.runtime}?mode=ro", uri=True, timeout=10.0)
        try:
            data = conn.serialize()
        finally:
            conn.close()
        nonce = secrets.token_bytes(_NONCE)
        ensure_private_dir(self.path.parent)
        atomic_write(self.path, _MAGIC + nonce + self._aead.encrypt(nonce, data, self._aad))
        return True

    def close(self, *, save: bool = True) -> None:
        """Save (unless told not to), then delete the plain copy."""
        try:
            if save:
                self.save()
        finally:
            if self.runtime is not None:
                shutil.rmtree(self.runtime.parent, ignore_errors=True)
                self.runtime = None

    def remove(self) -> bool:
        """Forget the linked device here (the encrypted file); True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
