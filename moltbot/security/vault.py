"""The credentials vault: one AES-256-GCM encrypted file per secret under ``credentials/``.

Layout of ``$MOLTBOT_HOME/credentials/`` (folder 0700, every file 0600, atomic writes):

- ``vault.key``   32 random bytes (the default key source), or
- ``vault.salt``  ``{"v":1,"kdf":"scrypt","salt":b64,"n":..,"r":8,"p":1}`` when the key comes from
  a passphrase (explicit, or ``MOLTBOT_VAULT_PASSPHRASE``) through scrypt;
- ``vault.check`` a known constant, encrypted, so a wrong key fails at open time, clearly;
- ``NAME.enc``    ``{"v":1,"nonce":b64,"ct":b64}``: a fresh 12-byte nonce per write, and the
  secret's name bound in as associated data, so a file renamed or swapped does not decrypt.

No message or repr ever carries a key or a secret value. An ``on_read`` hook given at open time
hears the *name* of every secret ``get`` returns (the caller writes it to the audit log).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from moltbot import paths
from moltbot.errors import SecretNotFound, VaultError, VaultKeyError
from moltbot.security.fsmodes import atomic_write, ensure_private_dir, fsync_dir, require_private

PASSPHRASE_ENV = "MOLTBOT_VAULT_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 256 * 1024 * 1024
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

SALT_FILE = "vault.salt"
CHECK_FILE = "vault.check"
SUFFIX = ".enc"
_FORMAT = 1
_NONCE_BYTES = 12
_CHECK_PLAINTEXT = b"moltbot credentials vault, format 1"
_AAD_SECRET = b"moltbot.vault.v1\x00secret\x00"
_AAD_CHECK = b"moltbot.vault.v1\x00check"

ReadHook = Callable[[str], None]
"""Called with a secret's name each time its value is read; raising refuses the read."""


def valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def require_name(name: object) -> str:
    if not valid_name(name):
        # The rejected text is not echoed: it might be a value pasted in the wrong place.
        raise VaultError(
            "invalid secret name",
            hint="use 1-64 characters: a letter or _ first, then letters, digits, _ . -",
        )
    assert isinstance(name, str)
    return name


def _derive_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    try:
        return hashlib.scrypt(
            passphrase.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32
        )
    except (ValueError, MemoryError):
        raise VaultError(
            f"invalid scrypt parameters (n={n}, r={r}, p={p})",
            hint="n must be a power of two above 1, and 128*n*r must fit in 256 MiB",
        ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _load_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT:
        raise VaultError(f"{path} is damaged or not a vault file of format {_FORMAT}")
    return doc


class Vault:
    """An open vault. Get one with ``Vault.create`` or ``Vault.open``."""

    __slots__ = ("_aead", "_dir", "_on_read", "_source")

    def __init__(
        self, directory: Path, key: bytes, source: str, *, on_read: ReadHook | None = None
    ) -> None:
        self._dir = directory
        self._aead = AESGCM(key)
        self._source = source
        self._on_read = on_read

    # --- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(home: Path | None = None) -> bool:
        return (paths.credentials_dir(home) / CHECK_FILE).is_file()

    @classmethod
    def create(
        cls, home: Path, passphrase: str | None = None, *, scrypt_n: int = SCRYPT_N
    ) -> Vault:
        """Make a new vault under ``home``; refuses if any part of one is already there."""
        directory = paths.credentials_dir(home)
        key_path = paths.key_file(home)
        if any(p.exists() for p in (key_path, directory / SALT_FILE, directory / CHECK_FILE)):
            raise VaultError(
                f"a credentials vault already exists in {directory}",
                hint="open it instead; to start over move that folder away "
                "(its secrets are lost without its key)",
            )
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV) or None
        if passphrase is not None and not passphrase:
            raise VaultError("an empty passphrase is not allowed", hint="choose a long passphrase")
        ensure_private_dir(directory)
        if passphrase is not None:
            salt = secrets.token_bytes(16)
            key = _derive_key(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
            record = {"v": _FORMAT, "kdf": "scrypt", "salt": _b64(salt), "n": scrypt_n}
            record |= {"r": SCRYPT_R, "p": SCRYPT_P}
            atomic_write(directory / SALT_FILE, json.dumps(record).encode())
            vault = cls(directory, key, "passphrase")
        else:
            key = secrets.token_bytes(32)
            atomic_write(key_path, key)
            vault = cls(directory, key, "key file")
        # Written last: a vault "exists" only once it is complete.
        atomic_write(directory / CHECK_FILE, vault._seal(_CHECK_PLAINTEXT, _AAD_CHECK))
        return vault

    @classmethod
    def open(
        cls,
        home: Path | None = None,
        passphrase: str | None = None,
        *,
        scrypt_n: int = SCRYPT_N,
        on_read: ReadHook | None = None,
    ) -> Vault:
        """Open the vault under ``home`` (default: ``moltbot.paths.home()``).

        A passphrase vault takes ``passphrase`` or else ``$MOLTBOT_VAULT_PASSPHRASE``. Its scrypt
        cost is the one recorded in ``vault.salt``; ``scrypt_n`` only serves a record without one.
        ``on_read`` is called with the name of each secret ``get`` is about to return.
        """
        home = home if home is not None else paths.home()
        directory = paths.credentials_dir(home)
        if not (directory / CHECK_FILE).is_file():
            raise VaultError(f"no credentials vault in {directory}", hint="moltbot init")
        require_private(directory)
        salt_path, key_path = directory / SALT_FILE, paths.key_file(home)
        if salt_path.is_file():
            if passphrase is None:
                passphrase = os.environ.get(PASSPHRASE_ENV) or None
            if not passphrase:
                raise VaultKeyError(
                    f"the vault in {directory} is locked with a passphrase and none was given",
                    hint=f"set {PASSPHRASE_ENV}",
                )
            key = cls._passphrase_key(salt_path, passphrase, scrypt_n)
            source, bad = "passphrase", "the passphrase does not open the vault"
            fix = f"check the passphrase (or {PASSPHRASE_ENV})"
        elif key_path.is_file():
            if passphrase is not None:
                raise VaultKeyError(
                    f"the vault in {directory} uses a key file, not a passphrase",
                    hint="open it without a passphrase",
                )
            require_private(key_path)
            key = key_path.read_bytes()
            source, bad = "key file", f"the key file {key_path} does not open the vault"
            fix = "restore the original vault.key from a backup; without it the secrets are lost"
            if len(key) != 32:
                raise VaultKeyError(f"the key file {key_path} is damaged (not 32 bytes)", hint=fix)
        else:
            raise VaultKeyError(
                f"the vault in {directory} has neither {key_path.name} nor {SALT_FILE}",
                hint="restore the missing file from a backup",
            )
        vault = cls(directory, key, source, on_read=on_read)
        try:
            ok = vault._unseal(directory / CHECK_FILE, _AAD_CHECK) == _CHECK_PLAINTEXT
        except InvalidTag:
            ok = False
        if not ok:
            raise VaultKeyError(bad, hint=fix)
        return vault

    @staticmethod
    def _passphrase_key(salt_path: Path, passphrase: str, default_n: int) -> bytes:
        record = _load_json(salt_path)
        try:
            salt = base64.b64decode(record["salt"], validate=True)
            n, r, p = (int(record.get(k, d)) for k, d in (("n", default_n), ("r", 8), ("p", 1)))
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise VaultError(f"{salt_path} is damaged") from None
        if record.get("kdf") != "scrypt" or not (1 <= r <= 64 and 1 <= p <= 16):
            raise VaultError(f"{salt_path} names an unsupported key derivation")
        return _derive_key(passphrase, salt, n, r, p)

    # --- records -------------------------------------------------------------------------------
    def _seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ct = self._aead.encrypt(nonce, plaintext, aad)
        return json.dumps({"v": _FORMAT, "nonce": _b64(nonce), "ct": _b64(ct)}).encode()

    def _unseal(self, path: Path, aad: bytes) -> bytes:
        """Decrypt the record at ``path``; raises ``InvalidTag`` on a wrong key or binding."""
        record = _load_json(path)
        try:
            nonce = base64.b64decode(record["nonce"], validate=True)
            ct = base64.b64decode(record["ct"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise VaultError(f"{path} is damaged") from None
        if len(nonce) != _NONCE_BYTES:
            raise VaultError(f"{path} is damaged")
        return self._aead.decrypt(nonce, ct, aad)

    def _path(self, name: str) -> Path:
        return self._dir / f"{name}{SUFFIX}"

    # --- public API ----------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return self._dir

    def get(self, name: str) -> str:
        name = require_name(name)
        path = self._path(name)
        if not path.is_file():
            raise SecretNotFound(
                f"no secret named '{name}' in the vault", hint=f"moltbot secrets set {name}"
            )
        try:
            value = self._unseal(path, _AAD_SECRET + name.encode()).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            self._tampered(name)
        if self._on_read is not None:  # before the value leaves: a failing hook refuses it
            self._on_read(name)
        return value

    def _tampered(self, name: str) -> NoReturn:
        raise VaultError(
            f"secret '{name}' does not decrypt: its file was altered, replaced or renamed",
            hint=f"store it again: moltbot secrets set {name}",
        )

    def set(self, name: str, value: str) -> None:
        name = require_name(name)
        if not isinstance(value, str):
            raise VaultError(f"the value of secret '{name}' must be text")
        ensure_private_dir(self._dir)
        blob = self._seal(value.encode("utf-8"), _AAD_SECRET + name.encode())
        atomic_write(self._path(name), blob)

    def delete(self, name: str) -> bool:
        name = require_name(name)
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self._dir)
        return True

    def names(self) -> list[str]:
        found = []
        for entry in self._dir.iterdir():
            stem = entry.name[: -len(SUFFIX)]
            if entry.name.endswith(SUFFIX) and valid_name(stem) and entry.is_file():
                found.append(stem)
        return sorted(found)

    def __contains__(self, name: object) -> bool:
        return valid_name(name) and self._path(str(name)).is_file()

    def __repr__(self) -> str:
        return f"Vault(directory={str(self._dir)!r}, key_source={self._source!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a Vault holds its key and cannot be pickled; call Vault.open() where it is needed"
        )


def lazy_get(home: Path | None = None, *, on_read: ReadHook | None = None) -> Callable[[str], str]:
    """A vault ``get`` that opens the vault (of ``home``, default ``MOLTBOT_HOME``) on first use
    and keeps it open: for components that resolve ``secret:`` references only when configured.

    A passphrase vault with no passphrase in this process's environment (a Ray worker's: ``up``
    keeps it out) is read through the vault agent ``moltbot up`` started, when it runs."""
    opened: list[Vault | Any] = []

    def get(name: str) -> str:
        if not opened:
            opened.append(_open_here(home if home is not None else paths.home(), on_read))
        return str(opened[0].get(name))

    return get


def fingerprint(home: Path | None = None) -> tuple[tuple[str, int, int], ...]:
    """The vault's files as (name, size, mtime): it changes when a secret is set or removed."""
    found = []
    try:
        for entry in os.scandir(paths.credentials_dir(home)):
            if entry.name.endswith(SUFFIX) and entry.is_file():
                st = entry.stat()
                found.append((entry.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(found))


def needs_passphrase(home: Path | None = None) -> bool:
    """True for a vault locked with a passphrase (not a key file)."""
    return (paths.credentials_dir(home) / SALT_FILE).is_file()


def _open_here(home: Path, on_read: ReadHook | None) -> Any:
    if needs_passphrase(home) and not os.environ.get(PASSPHRASE_ENV):
        from moltbot.security.vault_agent import AgentVault, socket_path

        path = socket_path(home)
        if path.is_socket():
            return AgentVault(path, on_read=on_read)
    return Vault.open(home, on_read=on_read)
