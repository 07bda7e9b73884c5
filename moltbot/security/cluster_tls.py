"""TLS between the machines of a home-lab cluster: Ray's gRPC with mutual TLS.

A head that other machines can join (``cluster.head_ip`` not loopback) gets, from
``moltbot up``, a cluster CA of its own and a certificate for its address, under
``credentials/ray-tls/`` (0700; keys 0600). Each machine to join gets an *invite* made on the
head (``moltbot node invite NODE_IP``): one 0600 JSON file with the head's address, the Ray
token, the CA certificate and a certificate and key for that machine's address, signed by the
CA. ``moltbot node join --invite FILE`` starts Ray with them. Ray checks both ends against the
CA (a peer without a certificate of this cluster is refused) and the server's certificate
against the address dialled, so every node needs its own.

Every Ray process learns this from its environment (``RAY_USE_TLS`` and friends, see ``env``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from moltbot import paths
from moltbot.errors import ConfigError
from moltbot.security.fsmodes import atomic_write, ensure_private_dir

TLS_DIR = "ray-tls"
CA_DAYS = 3650
NODE_DAYS = 825
INVITE_FIX = "make one on the head: moltbot node invite THIS_MACHINE_IP --out FILE"


class TlsFiles(msgspec.Struct, frozen=True):
    """The three files a Ray process needs: the CA, its certificate and its key."""

    ca: str
    cert: str
    key: str


class Invite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    address: str
    node_ip: str
    token: str
    ca: str
    cert: str
    key: str


def env(files: TlsFiles) -> dict[str, str]:
    """Ray's TLS settings for every process of a node (its ``ray start`` and the drivers)."""
    return {
        "RAY_USE_TLS": "1",
        "RAY_TLS_CA_CERT": files.ca,
        "RAY_TLS_SERVER_CERT": files.cert,
        "RAY_TLS_SERVER_KEY": files.key,
    }


def use_for_ray(files: TlsFiles) -> None:
    """Put Ray's TLS settings in this process's environment. Call before ``ray`` is imported:
    with token auth on, Ray reads its settings once, at import."""
    os.environ.update(env(files))


def use_running(home: Path) -> None:
    """``use_for_ray`` for the head recorded in ``run/ray.json``, when it has cluster TLS (for
    the commands that talk to a running tree: status, down, kill, pairing...)."""
    try:
        record = json.loads((paths.run_dir(home) / "ray.json").read_bytes())
        files = msgspec.convert(record.get("tls"), TlsFiles) if record.get("tls") else None
    except (OSError, ValueError, AttributeError, msgspec.ValidationError):
        return
    if files is not None:
        use_for_ray(files)


def tls_dir(home: Path) -> Path:
    return paths.credentials_dir(home) / TLS_DIR


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ensure_ca(directory: Path) -> None:
    """The cluster CA (``ca.crt``, ``ca.key``) in ``directory``, made once."""
    ensure_private_dir(directory)
    if (directory / "ca.crt").is_file() and (directory / "ca.key").is_file():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("moltbot cluster CA"))
        .issuer_name(_name("moltbot cluster CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    atomic_write(directory / "ca.key", _pem_key(key))
    atomic_write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def issue(directory: Path, ips: list[str]) -> tuple[bytes, bytes]:
    """A certificate (PEM) and its key for a node answering at ``ips``, signed by the CA."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"moltbot node {ips[0]}"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=NODE_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _cert_ips(path: Path) -> set[str]:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return set()
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=30):
        return set()  # close to expiry: issue a new one
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def head_files(home: Path, head_ip: str) -> TlsFiles:
    """The head's TLS files: the CA, and a certificate for ``head_ip`` and loopback (made
    again when the address changed or it nears expiry)."""
    directory = tls_dir(home)
    ensure_ca(directory)
    cert_path, key_path = directory / "head.crt", directory / "head.key"
    wanted = {head_ip, "127.0.0.1"}
    if not wanted <= _cert_ips(cert_path) or not key_path.is_file():
        cert, key = issue(directory, [head_ip, "127.0.0.1"])
        atomic_write(key_path, key)
        atomic_write(cert_path, cert, 0o644)
    return TlsFiles(ca=str(directory / "ca.crt"), cert=str(cert_path), key=str(key_path))


def make_invite(home: Path, address: str, node_ip: str, token: str) -> bytes:
    """An invite for the machine at ``node_ip`` to join the head at ``address``."""
    try:
        ip = ipaddress.ip_address(node_ip)
    except ValueError:
        raise ConfigError(
            "NODE_IP",
            f"{node_ip!r} is not an IP address",
            fix="the address the head reaches that machine at, e.g. 192.168.1.20",
        ) from None
    directory = tls_dir(home)
    if not (directory / "ca.crt").is_file():
        raise ConfigError(
            "cluster.head_ip",
            "this head has no cluster TLS yet",
            fix="set cluster.head_ip to this machine's LAN address and `moltbot up`",
        )
    cert, key = issue(directory, [str(ip), "127.0.0.1"])
    invite = Invite(
        v=1,
        address=address,
        node_ip=str(ip),
        token=token,
        ca=(directory / "ca.crt").read_text(),
        cert=cert.decode(),
        key=key.decode(),
    )
    return msgspec.json.encode(invite)


def read_invite(path: Path) -> Invite:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            "--invite", f"cannot read {path} ({exc.strerror})", fix=INVITE_FIX
        ) from None
    try:
        invite = msgspec.json.decode(data, type=Invite)
    except (msgspec.DecodeError, msgspec.ValidationError, json.JSONDecodeError):
        raise ConfigError("--invite", f"{path} is not a moltbot invite", fix=INVITE_FIX) from None
    if invite.v != 1:
        raise ConfigError("--invite", f"{path} is of a newer moltbot", fix="upgrade moltbot here")
    return invite


def store_invite(directory: Path, invite: Invite) -> TlsFiles:
    """Write an invite's certificates where this machine's Ray reads them (0700 folder)."""
    ensure_private_dir(directory)
    atomic_write(directory / "ca.crt", invite.ca.encode(), 0o644)
    atomic_write(directory / "node.crt", invite.cert.encode(), 0o644)
    atomic_write(directory / "node.key", invite.key.encode())
    return TlsFiles(
        ca=str(directory / "ca.crt"),
        cert=str(directory / "node.crt"),
        key=str(directory / "node.key"),
    )
