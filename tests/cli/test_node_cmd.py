"""`moltbot node join` refuses bad arguments with the flag and the fix named (the join itself
is `ray start --address`, exercised by hand across machines; see the README)."""

from __future__ import annotations

import pytest

from moltbot.cli.main import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--resources", "not json"], "--resources"),
        (["--resources", '{"gpu": -1}'], "--resources"),
        (["--labels", "zone"], "--labels"),
    ],
)
def test_join_refuses_bad_arguments(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "join", "127.0.0.1:1", *args]) == 1
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err
