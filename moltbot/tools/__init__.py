"""Tools the agent can call: bash (sandboxed, exec approvals), files (workspace), web_fetch.

``WebFetcher`` (and with it httpx) is imported when first asked for: a channel process imports
this package for the workspace alone (about 2 MB it need not hold).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from moltbot.sandbox import SandboxPolicy
from moltbot.tools.approvals import Approval, ApprovalBook, ApprovalState, ExecPolicy
from moltbot.tools.bash import BashTool
from moltbot.tools.files import Workspace, file_tools
from moltbot.tools.registry import Tool, ToolRegistry

if TYPE_CHECKING:
    from moltbot.tools.web_fetch import WebFetcher

__all__ = [
    "Approval",
    "ApprovalBook",
    "ApprovalState",
    "ExecPolicy",
    "Tool",
    "ToolRegistry",
    "WebFetcher",
    "Workspace",
    "default_registry",
]


def __getattr__(name: str) -> Any:
    if name == "WebFetcher":
        from moltbot.tools.web_fetch import WebFetcher

        return WebFetcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_registry(
    workspace: Path,
    *,
    approvals: ApprovalBook,
    bash_policy: SandboxPolicy | None = None,
    exec_policy: ExecPolicy | None = None,
    web: WebFetcher | None = None,
    enable_bash: bool = True,
    enable_files: bool = True,
    enable_web: bool = True,
) -> ToolRegistry:
    """bash, read_file, write_file, edit_file, list_dir and web_fetch over one workspace.

    ``bash_policy`` defaults to ``SandboxPolicy(workspace=workspace)``; its workspace must be the
    same folder. ``exec_policy`` defaults to ``ExecPolicy()`` (mode ``ask``, empty allowlist).
    """
    workspace.mkdir(parents=True, exist_ok=True)
    sandbox = bash_policy or SandboxPolicy(workspace=workspace)
    if sandbox.workspace.resolve() != workspace.resolve():
        raise ValueError("the bash sandbox must use the same workspace as the file tools")
    registry = ToolRegistry()
    if enable_bash:
        bash = BashTool(sandbox, exec_policy or ExecPolicy(), approvals)
        registry.register(Tool(bash.name, bash.description, bash.input_type, bash))
    if enable_files:
        for tool in file_tools(workspace):
            registry.register(tool)
    if enable_web:
        from moltbot.tools.web_fetch import WebFetcher

        fetcher = web or WebFetcher()
        registry.register(Tool(fetcher.name, fetcher.description, fetcher.input_type, fetcher))
    return registry
