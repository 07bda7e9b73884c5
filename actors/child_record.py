"""What a supervisor knows of one child: a mutable record that lives only inside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from moltbot.supervision.spec import ChildSpec

if TYPE_CHECKING:
    from actors.standby import Standby

IDLE = "idle"  # an on-demand child that is not running: its supervisor's ``wake`` starts it


class Record:
    """What the supervisor knows of one child (mutable; lives only inside this actor)."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.handle: Any = None
        self.run_ref: Any = None
        self.gen = 0
        self.state = "init"
        self.restarts = 0
        self.consecutive = 0
        self.started_at = 0.0
        self.info: dict[str, Any] = {}
        self.last_exit = ""
        self.mem_mb = 0.0  # its process tree's size at the last ping (with a ceiling)
        self.name = ""  # the Ray name of the running incarnation (a promoted standby's own)
        self.standby: Standby | None = None
        self.launching: Any = None  # the handle of a child still starting (status looks in)
