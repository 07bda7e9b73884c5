"""The one exception tree of moltbot.

Every error a user can see carries a safe ``user_message``: never ``str()`` of a foreign
exception, never a secret. SDK errors are mapped to these once, in each adapter.
"""

from __future__ import annotations

from typing import Any


class MoltbotError(Exception):
    """Base of every moltbot error. ``code`` is stable and machine-readable."""

    code = "internal"

    def __init__(self, user_message: str, *, hint: str = "") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.user_message} ({self.hint})" if self.hint else self.user_message

    def __reduce__(self) -> tuple[Any, ...]:
        # subclasses take other arguments (ConfigError: path, problem, fix): rebuild any of them
        # from their fields, so an error raised in one actor reaches another (and `up`) whole
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[MoltbotError], state: dict[str, Any]) -> MoltbotError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("user_message", ""))
    err.__dict__.update(state)
    return err


# --- configuration -------------------------------------------------------------------------
class ConfigError(MoltbotError):
    """The config file is wrong. ``path`` is the JSON path (``$.gateway.port``)."""

    code = "config_invalid"

    def __init__(self, path: str, problem: str, fix: str = "") -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"config error at {path}: {problem}", hint=fix)


class SecretRefError(ConfigError):
    """A ``secret:NAME`` or ``env:VAR`` reference could not be resolved."""

    code = "secret_missing"


# --- credentials vault ---------------------------------------------------------------------
class VaultError(MoltbotError):
    code = "vault_error"


class VaultKeyError(VaultError):
    """The key or passphrase does not open the vault."""

    code = "vault_bad_key"


class PermissionProblem(VaultError):
    """A file or folder holding secrets has modes that are too open."""

    code = "insecure_permissions"


# --- supervision ---------------------------------------------------------------------------
class SupervisionError(MoltbotError):
    code = "supervision_error"


class ChildStartError(SupervisionError):
    """A child did not become ready (crashed in init or missed its ready handshake)."""

    code = "child_start_failed"


class EscalationError(SupervisionError):
    """Restart intensity was exceeded: the supervisor gave up and its parent decides."""

    code = "max_restart_intensity"


class NotRunning(SupervisionError):
    """The tree (or the named actor) is not running."""

    code = "not_running"


# --- gateway / protocol --------------------------------------------------------------------
class GatewayError(MoltbotError):
    code = "gateway_error"


class BadRequest(GatewayError):
    code = "bad_request"


class Unauthorized(GatewayError):
    code = "unauthorized"


class Forbidden(GatewayError):
    code = "forbidden"


class RateLimited(MoltbotError):
    """Too many requests; ``retry_after`` seconds until trying again makes sense."""

    code = "rate_limited"

    def __init__(self, user_message: str, *, retry_after: float = 1.0, hint: str = "") -> None:
        super().__init__(user_message, hint=hint)
        self.retry_after = retry_after


class Unavailable(MoltbotError):
    """The subsystem that would answer is not available (yet, or right now)."""

    code = "unavailable"


class PipeClosed(Unavailable):
    """A local pipe to another actor closed with a request in flight (it may or may not have
    run): the actor went away. Idempotent callers look it up again and retry."""


class Dormant(Unavailable):
    """The actor is ending because it was idle and took nothing: started again on demand,
    the same request may be sent again."""


class NotFound(MoltbotError):
    code = "not_found"


# --- channels / access ---------------------------------------------------------------------
class ChannelError(MoltbotError):
    code = "channel_error"


class PlatformUnavailable(ChannelError):
    """The platform answered 5xx or could not be reached: retry with backoff, keep the message."""

    code = "platform_unavailable"


class PlatformRejected(ChannelError):
    """The platform refused the request for good (bad token, chat not found): do not retry."""

    code = "platform_rejected"


class AccessDenied(MoltbotError):
    code = "access_denied"


# --- agent / providers ---------------------------------------------------------------------
class ProviderError(MoltbotError):
    code = "provider_error"


class ProviderOverloaded(ProviderError):
    """429/529/5xx from the model provider: retryable."""

    code = "provider_overloaded"


class EmbeddingsUnavailable(MoltbotError):
    """The embeddings endpoint of ``agent.memory`` failed; memory search uses keywords."""

    code = "embeddings_unavailable"


class ProviderRateLimited(ProviderOverloaded):
    """429 from the model provider after our retries; ``retry_after`` seconds if it said."""

    code = "provider_rate_limited"

    def __init__(
        self, user_message: str, *, retry_after: float | None = None, hint: str = ""
    ) -> None:
        super().__init__(user_message, hint=hint)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    code = "provider_auth"


# --- tools / sandbox -----------------------------------------------------------------------
class ToolError(MoltbotError):
    code = "tool_error"


class PathEscape(ToolError):
    """A file path resolves outside the workspace."""

    code = "path_escape"


class SandboxUnavailable(ToolError):
    """bubblewrap is missing or cannot create a sandbox: fail closed."""

    code = "sandbox_unavailable"


class ApprovalRequired(ToolError):
    """A tool call waits for a person's approval: ``approval_id`` names it in the book."""

    code = "approval_required"

    def __init__(self, user_message: str, *, approval_id: str = "", hint: str = "") -> None:
        super().__init__(user_message, hint=hint)
        self.approval_id = approval_id


class ApprovalDenied(ToolError):
    code = "approval_denied"


class FetchRefused(ToolError):
    """web_fetch refused a URL (scheme, private address, size or time cap)."""

    code = "fetch_refused"


# --- plugins -------------------------------------------------------------------------------
# --- media ---------------------------------------------------------------------------------
class MediaRefused(MoltbotError):
    """A file that cannot be taken or sent: too large, unreadable, of a refused type."""

    code = "media_refused"


class PluginError(MoltbotError):
    code = "plugin_error"


class CapabilityDenied(PluginError):
    code = "capability_denied"


class SecretNotFound(VaultError, NotFound):
    """The vault holds no secret of that name (the message names it, never a value)."""

    code = "secret_not_found"


class UnknownMethod(BadRequest):
    """The gateway has no method of that name."""

    code = "unknown_method"
