from __future__ import annotations

import pytest

from moltbot.netaddr import host_of, is_loopback


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "LocalHost",
        "127.0.0.1:6379",
        "localhost:8080",
        "LOCALHOST:8080",
        "[::1]:18789",
    ],
)
def test_loopback_forms(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "::",
        "192.168.1.10",
        "10.0.0.2:6379",
        "[2001:db8::1]:443",
        "2001:db8::1",
        "example.com",
        "localhost.example.com",
        "notlocalhost:80",
        "",
    ],
)
def test_anything_else_is_not_loopback(address: str) -> None:
    assert not is_loopback(address)


def test_host_of_strips_the_port_but_keeps_a_bare_ipv6_whole() -> None:
    assert host_of("10.0.0.2:6379") == "10.0.0.2"
    assert host_of("[::1]:80") == "::1"
    assert host_of("fe80::1") == "fe80::1"
    assert host_of("box") == "box"
