"""OTP supervision, as pure data and pure decisions. The Ray actors in ``actors/`` act on them."""

from moltbot.supervision.spec import (
    ChildSpec,
    ChildType,
    Exit,
    ExitKind,
    Restart,
    Strategy,
    SupervisorFlags,
)

__all__ = ["ChildSpec", "ChildType", "Exit", "ExitKind", "Restart", "Strategy", "SupervisorFlags"]
