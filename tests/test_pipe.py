"""Local pipes over real Unix sockets: answers, errors, closing, bad frames, bounds, trust."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from moltbot.errors import (
    BadRequest,
    ConfigError,
    NotFound,
    PipeClosed,
    RateLimited,
    Unavailable,
)
from moltbot.pipe import (
    SUN_PATH_MAX,
    PipeServer,
    encode,
    private_folder,
    socket_path,
    sweep,
)
from moltbot.pipe_client import PipeClient, PipeHub

pytestmark = pytest.mark.timeout(20)


class Target:
    """What a server serves: records concurrency; ``hold`` keeps ``slow`` calls waiting."""

    def __init__(self) -> None:
        self.hold = asyncio.Event()
        self.running = 0
        self.most = 0
        self.started = asyncio.Event()

    async def echo(self, x: object, *, times: int = 1) -> object:
        return [x] * times if times > 1 else x

    def plain(self, x: int) -> int:  # not a coroutine: answered all the same
        return x + 1

    async def slow(self, x: int) -> int:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.set()
        try:
            await self.hold.wait()
            return x
        finally:
            self.running -= 1

    async def missing(self, key: str) -> None:
        raise NotFound(f"no {key}", hint="look elsewhere")

    async def bad_config(self) -> None:
        raise ConfigError("$.gateway.port", "must be a number", "write 18789")

    async def foreign(self) -> None:
        raise RuntimeError("secret-token-abc in a foreign message")

    async def secret(self) -> None:  # not exported
        return None


METHODS = {"echo", "plain", "slow", "missing", "bad_config", "foreign"}


@asynccontextmanager
async def serving(
    tmp_path: Path, target: Target | None = None, **kw: int
) -> AsyncIterator[tuple[PipeServer, PipeHub]]:
    folder = private_folder(tmp_path / "pipes")
    assert folder is not None
    path = socket_path(folder, "t")
    assert path is not None
    server = PipeServer(target or Target(), METHODS, path, name="test", **kw)
    hub = PipeHub()
    async with asyncio.TaskGroup() as tg:
        serve = tg.create_task(server.run())
        hubbed = tg.create_task(hub.run())
        await asyncio.wait_for(server.started.wait(), 5)
        await asyncio.sleep(0)
        try:
            yield server, hub
        finally:
            serve.cancel()
            hubbed.cancel()


async def connect(hub: PipeHub, server: PipeServer) -> PipeClient:
    client = await hub.client(server.path)
    assert client is not None
    return client


async def test_calls_answer_and_share_one_connection(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, hub):
        client = await connect(hub, server)
        assert await client.call("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert await client.call("echo", "x", times=3) == ["x", "x", "x"]
        assert await client.call("plain", 41) == 42
        assert await hub.client(server.path) is client  # one connection per socket
        assert server.requests == 3 and client.calls == 3


async def test_answers_come_back_to_their_callers_out_of_order(tmp_path: Path) -> None:
    target = Target()
    async with serving(tmp_path, target) as (server, hub):
        client = await connect(hub, server)
        slow = asyncio.create_task(client.call("slow", 7))
        await asyncio.wait_for(target.started.wait(), 5)
        fast = await asyncio.gather(*(client.call("echo", i) for i in range(50)))
        assert fast == list(range(50))  # not held behind the slow call
        assert not slow.done()
        target.hold.set()
        assert await slow == 7


async def test_a_moltbot_error_comes_back_as_itself_with_its_fields(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, hub):
        client = await connect(hub, server)
        with pytest.raises(NotFound) as nf:
            await client.call("missing", "k")
        assert nf.value.user_message == "no k" and nf.value.hint == "look elsewhere"
        with pytest.raises(ConfigError) as ce:
            await client.call("bad_config")
        assert (ce.value.path, ce.value.problem, ce.value.fix) == (
            "$.gateway.port",
            "must be a number",
            "write 18789",
        )
        assert await client.call("echo", 1) == 1  # the connection is still good


async def test_a_foreign_error_is_unavailable_and_never_its_message(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, hub):
        client = await connect(hub, server)
        with pytest.raises(Unavailable) as exc:
            await client.call("foreign")
        assert "secret-token" not in str(exc.value)
        assert not isinstance(exc.value, PipeClosed)


async def test_only_the_named_methods_can_be_called(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, hub):
        client = await connect(hub, server)
        for name in ("secret", "__init__", "hold"):
            with pytest.raises(BadRequest):
                await client.call(name)


async def test_calls_in_flight_fail_with_pipe_closed_when_the_server_goes(
    tmp_path: Path,
) -> None:
    target = Target()
    folder = private_folder(tmp_path / "p")
    assert folder is not None
    path = socket_path(folder, "x")
    assert path is not None
    server = PipeServer(target, METHODS, path)
    hub = PipeHub()
    async with asyncio.TaskGroup() as tg:
        serve = tg.create_task(server.run())
        hubbed = tg.create_task(hub.run())
        await server.started.wait()
        client = await connect(hub, server)
        waiting = [asyncio.create_task(client.call("slow", i)) for i in range(3)]
        await target.started.wait()
        serve.cancel()  # the server process "dies"
        for task in waiting:
            with pytest.raises(PipeClosed):
                await task
        assert not path.exists()  # its socket file is gone
        with pytest.raises(PipeClosed):
            await client.call("echo", 1)
        assert await hub.client(path) is None  # nothing to connect to now
        hubbed.cancel()


async def test_a_bad_frame_closes_that_connection_only(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, hub):
        client = await connect(hub, server)
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write((5).to_bytes(4, "big") + b"junk!")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
        writer.close()
        assert await client.call("echo", "still") == "still"
        fresh = await asyncio.open_unix_connection(server.path)
        fresh[1].write(encode((1, "echo", ("again",), {})))
        size = int.from_bytes(await fresh[0].readexactly(4), "big")
        assert pickle.loads(await fresh[0].readexactly(size)) == (1, True, "again")
        fresh[1].close()


async def test_a_connection_runs_at_most_max_inflight_requests(tmp_path: Path) -> None:
    target = Target()
    async with serving(tmp_path, target, max_inflight=3) as (server, hub):
        client = await connect(hub, server)
        calls = [asyncio.create_task(client.call("slow", i)) for i in range(10)]
        await target.started.wait()
        await asyncio.sleep(0.2)
        assert target.running == 3  # the rest wait unread in the socket
        target.hold.set()
        assert await asyncio.gather(*calls) == list(range(10))
        assert target.most == 3


async def test_a_cancelled_call_leaves_the_connection_usable(tmp_path: Path) -> None:
    target = Target()
    async with serving(tmp_path, target) as (server, hub):
        client = await connect(hub, server)
        call = asyncio.create_task(client.call("slow", 1))
        await target.started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        target.hold.set()
        assert await client.call("echo", 2) == 2


async def test_no_server_means_no_client(tmp_path: Path) -> None:
    hub = PipeHub()
    assert await hub.client(tmp_path / "none.sock") is None  # hub not running
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(hub.run())
        await asyncio.sleep(0)
        assert await hub.client(tmp_path / "none.sock") is None
        task.cancel()


def test_errors_keep_every_field_through_a_pickle() -> None:
    for exc in (
        NotFound("gone", hint="h"),
        ConfigError("$.a", "bad", "fix it"),
        RateLimited("slow down", retry_after=3.5),
        PipeClosed("closed"),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert back.__dict__ == exc.__dict__ and str(back) == str(exc)


def test_the_pipe_folder_must_be_private(tmp_path: Path) -> None:
    made = private_folder(tmp_path / "a" / "b")
    assert made is not None and (made.stat().st_mode & 0o777) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)
    assert private_folder(open_dir) is None


def test_sweep_removes_the_sockets_of_gone_processes(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead, alive = tmp_path / f"{gone.stdout.strip()}.sock", tmp_path / f"{os.getpid()}.sock"
    # a second actor of one process (the store inside the root's) has a socket of its own
    dead_store = tmp_path / f"{gone.stdout.strip()}-store.sock"
    alive_store = tmp_path / f"{os.getpid()}-store.sock"
    other = tmp_path / "notes.sock"
    for f in (dead, alive, other, dead_store, alive_store):
        f.write_text("")
    assert sweep(tmp_path) == 2
    assert not dead.exists() and not dead_store.exists()
    assert alive.exists() and alive_store.exists() and other.exists()


def test_a_socket_path_too_long_for_linux_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (SUN_PATH_MAX - len(str(tmp_path))))
    assert socket_path(deep, "1") is None
    assert socket_path(tmp_path, "1") == tmp_path / "1.sock"


CONNECT_AS_NOBODY = """
import os, socket, sys
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(5)
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
    print(len(s.recv(100)))
except (BrokenPipeError, ConnectionResetError):  # closed before or after the send
    print(0)
"""


async def test_another_user_is_refused_even_where_the_socket_is_open() -> None:
    assert os.geteuid() == 0, "this test switches to another uid (CI runs as root)"
    with tempfile.TemporaryDirectory() as shared:
        await _refused(Path(shared))


async def _refused(base: Path) -> None:
    path = base / "s.sock"
    server = PipeServer(Target(), METHODS, path)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.run())
        await server.started.wait()
        base.chmod(0o777)
        path.chmod(0o666)  # as if the folder and file checks had been got round
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CONNECT_AS_NOBODY,
            str(path),
            encode((1, "echo", ("hi",), {})).hex(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err
        assert out.strip() == b"0"  # closed without an answer
        assert server.requests == 0
        task.cancel()
