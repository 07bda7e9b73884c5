"""Try a Ray port as an outsider and as a member would: ``python -m tests.cli.tls_probe
HOST:PORT CA_FILE [CERT KEY]`` prints JSON with what each attempt got: ``h2`` (an HTTP/2
server answered: gRPC is served to us) or ``refused``.

- ``plaintext``: gRPC without TLS (what Ray speaks without TLS, and an old-style join);
- ``no_cert``: TLS, checking the server against the cluster CA, but no client certificate;
- ``other_ca``: TLS with a certificate of a CA made up here (right format, wrong cluster);
- ``member``: TLS with CERT/KEY (an invite's): the positive control.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import tempfile
from pathlib import Path

from moltbot.security.cluster_tls import ensure_ca, issue

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def talk(host: str, port: int, ctx: ssl.SSLContext | None) -> str:
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            sock = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
            with sock:
                sock.sendall(PREFACE)
                head = sock.recv(9)  # an HTTP/2 frame header: the server's SETTINGS
                return "h2" if len(head) == 9 and head[3] == 0x04 else "refused"
    except (OSError, ssl.SSLError):
        return "refused"


def context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_alpn_protocols(["h2"])
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def main() -> None:
    address, ca = sys.argv[1], sys.argv[2]
    host, port = address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])
    out = {
        "plaintext": talk(host, port, None),
        "no_cert": talk(host, port, context(ca)),
    }
    with tempfile.TemporaryDirectory() as d:
        other = Path(d) / "other"
        ensure_ca(other)
        cert, key = issue(other, [host])
        (other / "n.crt").write_bytes(cert)
        (other / "n.key").write_bytes(key)
        out["other_ca"] = talk(host, port, context(ca, str(other / "n.crt"), str(other / "n.key")))
    if len(sys.argv) > 4:
        out["member"] = talk(host, port, context(ca, sys.argv[3], sys.argv[4]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
