"""What ``moltbot up`` shows while the tree starts: a line per child as it comes up (with the
time since the start), a line for a channel account that cannot work (its reason and fix),
and on a terminal a spinner line naming what is still starting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from moltbot.channels.link import describe

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def walk(status: dict[str, Any], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every child of a status tree, depth first, with its depth."""
    for child in status.get("children", []):
        yield depth, child
        yield from walk(child, depth + 1)


def short(name: str) -> str:
    """``moltbot.channels.telegram:main`` -> ``channels/telegram:main``."""
    return name.removeprefix("moltbot.").replace(".", "/")


class StartProgress:
    def __init__(
        self,
        out: TextIO = sys.stdout,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out, self._clock = out, clock
        self._tty = out.isatty() if tty is None else tty
        self._start = clock()
        self._shown: set[str] = set()
        self._spun = 0
        self._spinner_on = False

    def __call__(self, status: dict[str, Any]) -> None:
        waiting = []
        for _depth, child in walk(status):
            name, state = short(str(child.get("name", "?"))), str(child.get("state", ""))
            link = (child.get("figures") or {}).get("link")
            if state == "running" and name not in self._shown:
                self._shown.add(name)
                if isinstance(link, dict) and link.get("state") == "rejected":
                    self._line(f"  ✗ {name}  failed: {describe(link)}")
                else:
                    self._line(f"  ✓ {name}  ({self._clock() - self._start:.1f}s)")
            elif state in ("starting", "init"):
                waiting.append(name)
            elif state == "idle" and name not in self._shown:
                self._shown.add(name)
                self._line(f"  · {name}  starts when first used")
            elif state == "waiting" and name not in self._shown:
                self._shown.add(name)
                self._line(f"  … {name}  waiting for a node with its resources")
        if self._tty and waiting:
            self._spin(waiting)

    def _line(self, text: str) -> None:
        self._clear()
        self._out.write(text + "\n")
        self._out.flush()

    def _spin(self, waiting: list[str]) -> None:
        self._spun += 1
        frame = SPINNER[self._spun % len(SPINNER)]
        text = f"{frame} starting {', '.join(waiting[:3])}{' ...' if len(waiting) > 3 else ''}"
        self._out.write("\r" + text[:100] + "\x1b[K")
        self._out.flush()
        self._spinner_on = True

    def _clear(self) -> None:
        if self._spinner_on:
            self._out.write("\r\x1b[K")
            self._spinner_on = False

    def done(self) -> None:
        self._clear()
        self._out.flush()
