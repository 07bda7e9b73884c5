"""Socket activation without Ray: the root's ``Listener`` holds the gateway's port and hands
the listening socket to a process of the same user only; a connection made while no one
accepts waits in the backlog and is the first the taker accepts; a taken port is a clear
``ConfigError``."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from moltbot.clock import FakeClock
from moltbot.errors import ConfigError, Unavailable
from moltbot.gateway.activation import Listener, bind, is_pending, take
from tests.actors.helpers import free_port

from .conftest import MakeGateway, logged_in


async def test_a_waiting_connection_is_accepted_by_the_process_that_takes_the_socket() -> None:
    listener = Listener("127.0.0.1", free_port())
    serving = asyncio.create_task(listener.serve())
    try:
        client = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        await asyncio.wait_for(listener.pending(), 5)  # it waits; nobody accepted it
        assert is_pending(listener.sock)
        taken = await asyncio.to_thread(take, listener.name)
        assert taken.getsockname() == listener.sock.getsockname()
        taken.setblocking(True)
        conn, _addr = taken.accept()  # the connection that waited
        with conn, client:
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        assert not is_pending(listener.sock)
        taken.close()  # the taker's copy closed: the root's still listens
        later = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        with later:
            await asyncio.wait_for(listener.pending(), 5)
    finally:
        serving.cancel()
        listener.close()


async def test_another_user_is_not_handed_the_socket() -> None:
    listener = Listener("127.0.0.1", free_port())
    serving = asyncio.create_task(listener.serve())
    code = textwrap.dedent(
        f"""
        import os, sys
        from moltbot.gateway.activation import take
        from moltbot.errors import Unavailable
        os.setgid(65534); os.setuid(65534)  # nobody, once what it runs is imported
        try:
            take({listener.name!r}, timeout_s=5)
        except Unavailable:
            sys.exit(7)
        sys.exit(0)
        """
    )
    try:
        if os.getuid() != 0:
            pytest.fail("this test runs as root (CI does), to act as another user")
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], cwd=os.getcwd(), timeout=60
        )
        assert done.returncode == 7  # refused: nobody
        mine = await asyncio.to_thread(take, listener.name)  # the same user still can
        mine.close()
    finally:
        serving.cancel()
        listener.close()


def test_a_port_in_use_names_the_key_and_the_fix_and_nobody_home_is_unavailable() -> None:
    held = bind("127.0.0.1", free_port())
    try:
        with pytest.raises(ConfigError) as taken:
            Listener("127.0.0.1", held.getsockname()[1])
        assert taken.value.path == "$.gateway.port"
        assert "already in use" in str(taken.value) and "gateway.port" in str(taken.value)
    finally:
        held.close()
    with pytest.raises(Unavailable):
        take("moltbot-gateway-nobody-" + os.urandom(4).hex(), timeout_s=1)


async def test_a_gateway_is_busy_while_a_connection_is_open_or_a_web_session_valid(
    make_gateway: MakeGateway,
) -> None:
    """What keeps a socket-activated gateway awake (``GatewayServer.busy``): an open
    connection, and a web session not yet expired (sleeping would log its page out)."""
    clock = FakeClock()
    gw = await make_gateway(clock=clock, idle_minutes=30)
    assert not gw.busy()  # nobody came
    client = await logged_in(gw)  # a login issues a web session
    assert gw.busy()
    await client.ws.close()
    for _ in range(100):  # the server sees the close
        if gw.clients == 0:
            break
        await asyncio.sleep(0.02)
    assert gw.clients == 0
    clock.advance(29 * 60)
    assert gw.busy()  # no connection, but its session is still valid
    clock.advance(60 + 1)
    assert not gw.busy()  # expired: nothing to lose by sleeping
