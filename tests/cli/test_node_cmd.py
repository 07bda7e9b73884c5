"""`moltbot node join` refuses bad arguments, and a join without a Ray token, with the flag and
the fix named, before any Ray starts (the join itself, end to end across two network
namespaces: test_node_join_netns.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.cli.main import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["127.0.0.1:1", "--resources", "not json"], "--resources"),
        (["127.0.0.1:1", "--resources", '{"gpu": -1}'], "--resources"),
        (["127.0.0.1:1", "--labels", "zone"], "--labels"),
        (["127.0.0.1:1", "--token-file", "/nonexistent/auth_token"], "--token-file"),
        (["192.168.1.10"], "HOST:PORT"),
        (["192.168.1.10:port"], "HOST:PORT"),
    ],
)
def test_join_refuses_bad_arguments(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "join", *args]) == 1
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err


def test_join_without_a_token_says_to_copy_the_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token here
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path / "mb"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert main(["node", "join", "127.0.0.1:1", "--token-file", str(empty)]) == 1
    assert "is empty" in capsys.readouterr().err
    assert main(["node", "join", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "no Ray token" in err and "--token-file" in err and "auth_token" in err
    assert "Traceback" not in err
    assert not (tmp_path / "mb" / "run" / "nodes").exists()  # no Ray was started


def test_the_default_node_ip_is_the_address_facing_the_head() -> None:
    from actors.nodes import local_ip_towards

    assert local_ip_towards("127.0.0.1:6379") == "127.0.0.1"


def test_status_lists_the_nodes() -> None:
    from moltbot.cli.render import nodes_table

    text = nodes_table(
        [
            {
                "node": "a" * 56,
                "alive": True,
                "address": "10.77.0.1",
                "head": True,
                "resources": {"CPU": 2.0, "memory": 1e9},
            },
            {
                "node": "b" * 56,
                "alive": False,
                "address": "10.77.0.2",
                "head": False,
                "resources": {"CPU": 2.0, "sandbox_box": 1.0, "object_store_memory": 1e8},
                "labels": {"room": "attic"},
            },
        ]
    )
    head, worker = text.splitlines()[1:]
    assert head.split() == ["aaaaaaaa", "10.77.0.1", "alive", "head", "-", "CPU=2"]
    assert worker.split() == [
        *("bbbbbbbb", "10.77.0.2", "gone", "worker", "room=attic", "CPU=2", "sandbox_box=1")
    ]
