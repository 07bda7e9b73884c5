"""The bubblewrap sandbox every bash tool call runs in (fail closed)."""

from moltbot.sandbox.bwrap import (
    INSTALL_HINT,
    SANDBOX_WORKSPACE,
    SandboxPolicy,
    SandboxResult,
    find_bwrap,
    run_sandboxed,
)

__all__ = [
    "INSTALL_HINT",
    "SANDBOX_WORKSPACE",
    "SandboxPolicy",
    "SandboxResult",
    "find_bwrap",
    "run_sandboxed",
]
