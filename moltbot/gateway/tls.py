"""TLS for the gateway: an ``ssl.SSLContext`` from given cert/key files, or from a self-signed
certificate generated with ``cryptography`` (EC P-256) into a private folder (0700, key 0600).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from moltbot.errors import ConfigError
from moltbot.security.fsmodes import atomic_write, ensure_private_dir

CERT_NAME = "gateway-cert.pem"
KEY_NAME = "gateway-key.pem"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
RENEW_BEFORE = dt.timedelta(days=7)


def context_from_files(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2+) from PEM files; problems name the config key."""
    for what, path in (("cert", cert), ("key", key)):
        if not Path(path).is_file():
            raise ConfigError(
                f"$.gateway.tls.{what}",
                f"{path} does not exist",
                fix="give the path of a PEM file, or leave cert/key empty for a self-signed one",
            )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, ValueError):
        raise ConfigError(
            "$.gateway.tls",
            f"the certificate {cert} and key {key} cannot be loaded (not PEM, or not a pair)",
            fix="check both files with: openssl x509 -in CERT -noout -text",
        ) from None
    return ctx


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _still_good(cert_path: Path, key_path: Path) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


def ensure_self_signed(
    folder: Path, names: Sequence[str] = DEFAULT_NAMES, *, days: int = 365
) -> tuple[Path, Path]:
    """Reuse or create ``folder/gateway-cert.pem`` and ``folder/gateway-key.pem`` (0600)."""
    folder = ensure_private_dir(Path(folder))
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if _still_good(cert_path, key_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moltbot gateway")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def server_context(
    *,
    cert: Path | None = None,
    key: Path | None = None,
    folder: Path | None = None,
    names: Sequence[str] = DEFAULT_NAMES,
) -> ssl.SSLContext:
    """From ``cert``+``key`` if given, else a self-signed pair kept in ``folder``."""
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ConfigError(
                "$.gateway.tls", "cert and key go together", fix="set both, or neither"
            )
        return context_from_files(cert, key)
    if folder is None:
        raise ConfigError(
            "$.gateway.tls", "no certificate given and no folder for a self-signed one"
        )
    return context_from_files(*ensure_self_signed(folder, names))
