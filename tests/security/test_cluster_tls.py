"""The home-lab cluster's certificates (the cluster itself, over TLS between two network
namespaces: tests/cli/test_node_join_netns.py)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from moltbot.errors import ConfigError
from moltbot.security import cluster_tls


def sans(pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_head_files_are_private_and_follow_the_head_address(tmp_path: Path) -> None:
    files = cluster_tls.head_files(tmp_path, "192.168.1.10")
    directory = cluster_tls.tls_dir(tmp_path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for key in (Path(files.key), directory / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sans(Path(files.cert).read_bytes()) == {"192.168.1.10", "127.0.0.1"}
    ca_before = (directory / "ca.crt").read_bytes()
    same = Path(files.cert).read_bytes()
    assert Path(cluster_tls.head_files(tmp_path, "192.168.1.10").cert).read_bytes() == same
    moved = cluster_tls.head_files(tmp_path, "192.168.1.11")  # a new address: a new certificate
    assert sans(Path(moved.cert).read_bytes()) == {"192.168.1.11", "127.0.0.1"}
    assert (directory / "ca.crt").read_bytes() == ca_before  # same cluster CA
    assert cluster_tls.env(moved)["RAY_USE_TLS"] == "1"


def test_an_invite_carries_a_certificate_for_that_machine_only(tmp_path: Path) -> None:
    cluster_tls.head_files(tmp_path, "10.0.0.1")
    data = cluster_tls.make_invite(tmp_path, "10.0.0.1:6379", "10.0.0.7", "tok")
    path = tmp_path / "x.invite"
    path.write_bytes(data)
    invite = cluster_tls.read_invite(path)
    assert (invite.address, invite.node_ip, invite.token) == ("10.0.0.1:6379", "10.0.0.7", "tok")
    assert sans(invite.cert.encode()) == {"10.0.0.7", "127.0.0.1"}
    cert = x509.load_pem_x509_certificate(invite.cert.encode())
    ca = x509.load_pem_x509_certificate(invite.ca.encode())
    cert.verify_directly_issued_by(ca)  # signed by the head's CA
    assert "PRIVATE KEY" in invite.key and "ca.key" not in data.decode()
    assert b"BEGIN" in data and ipaddress.ip_address(invite.node_ip)
    stored = cluster_tls.store_invite(tmp_path / "joined", invite)
    assert stat.S_IMODE(Path(stored.key).stat().st_mode) == 0o600


def test_bad_invites_and_addresses_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as no_ca:
        cluster_tls.make_invite(tmp_path, "10.0.0.1:6379", "10.0.0.7", "tok")
    assert no_ca.value.path == "cluster.head_ip"
    cluster_tls.head_files(tmp_path, "10.0.0.1")
    with pytest.raises(ConfigError) as bad_ip:
        cluster_tls.make_invite(tmp_path, "10.0.0.1:6379", "worker.lan", "tok")
    assert bad_ip.value.path == "NODE_IP"
    junk = tmp_path / "junk"
    junk.write_text('{"hello": 1}')
    for path in (junk, tmp_path / "missing"):
        with pytest.raises(ConfigError) as bad:
            cluster_tls.read_invite(path)
        assert bad.value.path == "--invite" and "moltbot node invite" in bad.value.fix
