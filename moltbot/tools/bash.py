"""The bash tool: ``bash -lc COMMAND`` inside a fresh bubblewrap sandbox, after the exec policy.

Never runs anything outside the sandbox: no bubblewrap means ``SandboxUnavailable`` (with the
install hint), which the registry turns into an error result for the model.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from moltbot.errors import ApprovalDenied, ApprovalRequired
from moltbot.messages import ToolResult
from moltbot.sandbox import SandboxPolicy, SandboxResult, run_sandboxed
from moltbot.tools import scope
from moltbot.tools.approvals import ApprovalBook, ApprovalState, ExecPolicy, allowlisted

MAX_COMMAND_CHARS = 16_000

DESCRIPTION = (
    "Run a bash command in an isolated sandbox. The working directory is /workspace (the "
    "workspace folder; files written there persist). There is no network access unless the "
    "operator granted it, and then only HTTP(S) to public hosts through a proxy (http_proxy is "
    "set; raw sockets and DNS do not work). The rest of the system is read-only, and there are "
    "limits on time, "
    "memory, processes and output. Some commands need the user's approval first."
)


class BashInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_COMMAND_CHARS,
            description="The bash command line to run, e.g. `ls -la` or `python3 script.py`.",
        ),
    ]


def format_result(result: SandboxResult, timeout_s: float) -> str:
    out = result.stdout.decode("utf-8", "replace").rstrip("\n")
    err = result.stderr.decode("utf-8", "replace").rstrip("\n")
    parts = [out] if out else []
    if err:
        parts.append(f"[stderr]\n{err}")
    if result.truncated:
        parts.append("[output truncated: the command printed more than the output limit]")
    if result.timed_out:
        parts.append(f"[timed out after {timeout_s:g} s: the command was killed]")
    else:
        parts.append(f"[exit code {result.exit_code}]")
    return "\n".join(parts)


class BashTool:
    name = "bash"
    description = DESCRIPTION
    input_type = BashInput

    def __init__(self, sandbox: SandboxPolicy, policy: ExecPolicy, approvals: ApprovalBook) -> None:
        self._sandbox = sandbox
        self._policy = policy
        self._approvals = approvals

    async def authorize(self, command: str, session: str) -> None:
        """Return when ``command`` may run; raise ApprovalDenied / ApprovalRequired otherwise."""
        policy = self._policy
        if policy.mode == "deny":
            raise ApprovalDenied("running commands is turned off here (exec policy: deny)")
        if allowlisted(command, policy.allowlist):
            return
        if policy.mode == "allowlist":
            allowed = ", ".join(policy.allowlist) or "none"
            raise ApprovalDenied(
                "this command is not allowed: only single commands starting with one of "
                f"[{allowed}] and without shell operators (; | & $ ` < > ( ) \\) may run"
            )
        if self._approvals.is_approved(session, command):
            return
        approval = self._approvals.request(session, command)
        if policy.wait_s > 0:
            approval = await self._approvals.wait(approval.id, policy.wait_s)
        if approval.state is ApprovalState.APPROVED:
            return
        if approval.state is ApprovalState.DENIED:
            raise ApprovalDenied("the user denied this command; do not run it again")
        if approval.state is ApprovalState.EXPIRED:
            raise ApprovalDenied("the approval request expired; ask again only if still needed")
        raise ApprovalRequired(
            f"this command needs the user's approval (approval id {approval.id}). Ask the user "
            f"to answer `/approve {approval.id}` or `/deny {approval.id}`; once approved, run "
            "exactly the same command again.",
            approval_id=approval.id,
        )

    async def __call__(self, args: BashInput, session: str) -> ToolResult:
        await self.authorize(args.command, session)
        # the sender's own folder is /workspace (moltbot.tools.scope)
        folder = scope.sender_folder(self._sandbox.workspace, scope.current().sender)
        policy = msgspec.structs.replace(self._sandbox, workspace=folder)
        result = await run_sandboxed(["bash", "-lc", args.command], policy)
        return ToolResult(text=format_result(result, policy.timeout_s), is_error=result.timed_out)
