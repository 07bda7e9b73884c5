"""The shape of ``config.json``: frozen msgspec Structs, strict, with defaults so ``{}`` is valid.

Every Struct forbids unknown keys (a typo is an error, not a silently ignored setting). Secrets
are never literal: a :data:`SecretRef` is ``"secret:NAME"`` (the vault) or ``"env:VAR"``.
Cross-field rules (bind + TLS, unique account ids) live in :mod:`moltbot.config.loader`.
"""

from __future__ import annotations

import enum
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from moltbot import paths

SECRET_REF_PATTERN = r"^(secret|env):[A-Za-z_][A-Za-z0-9_.-]*$"  # noqa: S105 - a pattern
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
PLUGIN_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

SecretRef = Annotated[str, Meta(pattern=SECRET_REF_PATTERN)]
AccountId = Annotated[str, Meta(pattern=ACCOUNT_ID_PATTERN)]
Port = Annotated[int, Meta(ge=1, le=65535)]
PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]

DmPolicy = Literal["pairing", "allowlist", "open"]
ExecPolicy = Literal["deny", "allowlist", "ask"]


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one exits (see moltbot.supervision.spec)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


Provider = Literal["offline", "anthropic"]
ProviderKind = Literal["offline", "anthropic", "openai"]

DEFAULT_SYSTEM_PROMPT = (
    "You are moltbot, a helpful personal assistant. Answer concisely. Use tools only when they "
    "are needed, explain what you are about to run, and never reveal secrets or credentials."
)


def is_secret_ref_type(tp: Any) -> bool:
    """True for a field type that is :data:`SecretRef` (or ``SecretRef | None``)."""
    if get_origin(tp) in (Union, types.UnionType):
        return any(is_secret_ref_type(arg) for arg in get_args(tp))
    if get_origin(tp) is not Annotated:
        return False
    return any(getattr(meta, "pattern", None) == SECRET_REF_PATTERN for meta in get_args(tp)[1:])


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section: immutable, keyword-only, unknown keys rejected."""


# --- gateway -------------------------------------------------------------------------------
class AuthConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: SecretRef | None = "secret:gateway_token"  # noqa: S105 - a vault reference
    password: SecretRef | None = None


class TlsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Either ``cert`` and ``key`` (PEM file paths) or ``self_signed``."""

    cert: str | None = None
    key: str | None = None
    self_signed: bool = False


class RateLimitConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    per_second: PosFloat = 20.0
    burst: PosInt = 40


class WebSessionConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    idle_minutes: PosFloat = 30  # a fraction is fine: 0.5 is 30 s
    absolute_hours: PosInt = 24


class LockoutConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_failures: PosInt = 10  # per address (IPv6: per /64) within window_s
    window_s: PosFloat = 60.0
    global_max_failures: NonNegInt = 100  # from everyone within window_s (0: no global budget)
    global_lock_s: PosFloat = 30.0  # ... then every login waits this long


class GatewayConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bind: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    port: Port = 18789
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    allowed_origins: list[str] = []
    tls: TlsConfig | None = None
    rate_limit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    max_frame_bytes: Annotated[int, Meta(ge=1024)] = 1048576
    web_session: WebSessionConfig = msgspec.field(default_factory=WebSessionConfig)
    lockout: LockoutConfig = msgspec.field(default_factory=LockoutConfig)
    max_unauthenticated: PosInt = 64  # sockets upgraded but not yet logged in ...
    max_unauthenticated_per_address: PosInt = 8  # ... and from one address (IPv6: one /64)
    # bound to loopback, the gateway's process starts on the first connection (the port is
    # held open meanwhile) and stops after this long with no connection and no web session
    # left; 0 (or a bind beyond loopback): it runs from the start, always
    idle_stop_s: NonNegFloat = 600.0


# --- agent ---------------------------------------------------------------------------------
class RetryConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: PosInt = 4
    base_s: PosFloat = 0.5
    max_s: PosFloat = 20.0


class MemoryConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The agent's memory (``moltbot.agent.memory``). ``dir`` None: the profile's folder
    ``<tools.workspace>/memory-profiles/default``. Embeddings search when ``embeddings_url``
    (an OpenAI-compatible ``/v1/embeddings`` URL) and ``embeddings_model`` are set."""

    enabled: bool = True
    dir: str | None = None
    recall_tokens: NonNegInt = 800
    embeddings_url: Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+(/[^\s#]*)?$")] | None = None
    embeddings_model: Annotated[str, Meta(min_length=1)] | None = None
    embeddings_api_key: SecretRef | None = None


class ProviderEntry(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One provider in ``agent.providers`` (tried in order). ``openai``: any OpenAI-compatible
    server at ``base_url`` (Ollama, vLLM, llama.cpp, LM Studio); ``api_key`` null: it needs none.
    ``anthropic``: Claude, ``api_key`` required. ``offline``: the echo, as a last resort."""

    kind: ProviderKind
    models: list[str] = []
    base_url: str | None = None
    api_key: SecretRef | None = None
    name: str = ""  # how logs and /status call it; default: the kind


class ProfileConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One agent profile (``agent.profiles.<name>``, see ``moltbot.agent.profiles``); a key
    left out falls back to ``agent``'s own. ``tools`` None: every tool; else only these
    built-in names and ``"plugin:<name>"`` (all tools of that plugin). ``workspace`` None:
    ``<tools.workspace>/profiles/<name>``; its memory is in ``memory-profiles/<name>`` there
    unless ``memory_dir`` is set; its skills in ``skills_dir`` (None: ``<workspace>/skills``).
    ``placement``: Ray resources its own agent pool (``workers`` actors) asks for, e.g. the
    node that serves its local model; empty: the shared ``agents`` pool runs its turns."""

    system_prompt: str | None = None
    models: list[str] = []
    providers: list[ProviderEntry] = []
    tools: list[str] | None = None
    workspace: str | None = None
    memory_dir: str | None = None
    skills_dir: str | None = None
    placement: dict[str, NonNegFloat] = {}
    workers: PosInt = 1


class Binding(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule of ``agent.bindings``: a message whose channel type, account, chat id and sender
    id match every key given is answered by ``profile`` (the first matching rule wins)."""

    profile: str
    channel: str | None = None
    account: str | None = None
    chat: str | None = None
    sender: str | None = None


class AgentConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: Provider = "offline"
    api_key: SecretRef | None = "secret:anthropic_api_key"  # only used by "anthropic"
    base_url: str | None = None
    models: Annotated[list[str], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["claude-sonnet-4-5", "claude-haiku-4-5"]
    )  # ordered failover
    max_turns: PosInt = 8
    max_tokens: PosInt = 1024
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_tokens: PosInt = 8000
    workers: PosInt = 2
    # an agent process starts on the first message it is given and stops after this long
    # without one (none while a turn runs); 0: the agents run from the start, always
    idle_stop_s: NonNegFloat = 600.0
    queue_size: PosInt = 16
    retries: RetryConfig = msgspec.field(default_factory=RetryConfig)
    memory: MemoryConfig = msgspec.field(default_factory=MemoryConfig)
    # not empty: these providers, in order, replace provider/api_key/base_url/models above
    providers: list[ProviderEntry] = []
    # more agent profiles, and which messages they answer (none matches: "default", which is
    # the settings above, overlaid by profiles["default"] when given)
    profiles: dict[str, ProfileConfig] = {}  # by name (moltbot.config.profiles checks it)
    bindings: list[Binding] = []


# --- channels ------------------------------------------------------------------------------
class GroupEntry(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One allowed group. ``members: "policy"``: only senders who pass the account's DM policy
    (allowlisted, paired, or everyone under ``open``) are answered there; ``"any"``: everyone in
    that group is (the owner vouches for its members)."""

    id: Annotated[str, Meta(min_length=1)]
    members: Literal["policy", "any"] = "policy"


class GroupsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Groups are closed by default: a group is answered only when listed in ``allow`` (a
    group id, or a :class:`GroupEntry`) AND the sender passes the account's policy."""

    require_mention: bool = True
    allow: list[str | GroupEntry] = []


class AccountConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every channel account has. ``account`` is its id, unique per channel type."""

    account: AccountId
    enabled: bool = True
    dm_policy: DmPolicy = "pairing"
    allow_from: list[str] = []
    # platform user ids of the people who own this assistant: they may always talk to it
    # and may answer approvals (/approve ID) from this account; none: only the gateway
    owners: list[str] = []
    groups: GroupsConfig = msgspec.field(default_factory=GroupsConfig)
    api_base: str = ""
    stuck_after_s: PosFloat = 600.0


class TelegramAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: SecretRef
    api_base: str = "https://api.telegram.org"
    poll_timeout_s: Annotated[int, Meta(ge=0, le=50)] = 25


class SlackAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bot_token: SecretRef
    app_token: SecretRef
    api_base: str = "https://slack.com/api"


class SignalAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    number: Annotated[str, Meta(pattern=E164_PATTERN)]
    receive_mode: Literal["websocket", "poll"] = "websocket"
    api_base: str = "http://127.0.0.1:8080"


class IMessageAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """iMessage through a BlueBubbles server on a Mac. ``api_base``: its address, e.g.
    ``http://127.0.0.1:1234``; ``password``: the server password. iMessage groups have no
    mentions: a group message counts as one when it names the bot by a word of
    ``mention_names``. ``catch_up_max``: messages fetched at most after an outage."""

    api_base: Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]
    password: SecretRef
    mention_names: list[Annotated[str, Meta(min_length=1)]] = msgspec.field(
        default_factory=lambda: ["moltbot"]
    )
    catch_up_max: Annotated[int, Meta(ge=1, le=1000)] = 200
    poll_interval_s: Annotated[float, Meta(ge=0.2, le=60)] = 2.0
    send_method: Literal["auto", "apple-script", "private-api"] = "auto"


class DiscordAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A Discord bot. ``catch_up_max``: after a reconnect, at most this many missed messages
    per channel are read back from the channel's history (Discord does not re-deliver)."""

    token: SecretRef
    api_base: str = "https://discord.com/api/v10"
    catch_up_max: Annotated[int, Meta(ge=0, le=10000)] = 200


class WhatsAppAccount(AccountConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """WhatsApp. ``mode: "cloud"``: the Business Cloud API (Meta calls the gateway's
    ``/hooks/whatsapp/<account>``; ``phone_number_id``, ``access_token``, ``app_secret`` and
    ``verify_token`` required). ``mode: "web"``: moltbot linked as a device of your own
    WhatsApp by QR (``moltbot channels login whatsapp:<account>``); the device session is
    kept encrypted under MOLTBOT_HOME. ``mention_names``: words that count as a mention in a
    group (web mode). ``bridge_socket``: run the WhatsApp client in a process of its own
    (``python -m moltbot.channels.whatsapp_bridge``) and reach it on this Unix socket."""

    mode: Literal["cloud", "web"]
    phone_number_id: Annotated[str, Meta(pattern=r"^[0-9]{5,20}$")] | None = None
    access_token: SecretRef | None = None
    app_secret: SecretRef | None = None
    verify_token: SecretRef | None = None
    api_base: str = "https://graph.facebook.com"
    api_version: Annotated[str, Meta(pattern=r"^v[0-9]{1,3}\.[0-9]{1,2}$")] = "v21.0"
    mention_names: list[Annotated[str, Meta(min_length=1)]] = msgspec.field(
        default_factory=lambda: ["moltbot"]
    )
    bridge_socket: Annotated[str, Meta(min_length=1)] | None = None


class ChannelsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    telegram: list[TelegramAccount] = []
    slack: list[SlackAccount] = []
    signal: list[SignalAccount] = []
    imessage: list[IMessageAccount] = []
    discord: list[DiscordAccount] = []
    whatsapp: list[WhatsAppAccount] = []


# the built-in channel types: each a list of accounts under "channels"
CHANNEL_KINDS = ("telegram", "slack", "signal", "imessage", "discord", "whatsapp")


# --- tools ---------------------------------------------------------------------------------
class BashConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    policy: ExecPolicy = "ask"
    allowlist: list[str] = []
    network: bool = False
    timeout_s: PosFloat = 30.0
    memory_mb: PosInt = 512
    max_processes: PosInt = 64
    output_limit_bytes: PosInt = 65536
    approval_ttl_s: PosFloat = 300.0
    nice: Annotated[int, Meta(ge=0, le=19)] = 10  # commands' CPU priority (19: lowest)


class FilesConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    max_bytes: PosInt = 1048576


class WebFetchConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    # a session holding untrusted content (a page, a file) asks before fetching a new host
    approve_new_hosts_when_untrusted: bool = True
    max_bytes: PosInt = 2097152
    timeout_s: PosFloat = 15.0
    max_redirects: NonNegInt = 5


class ToolsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    workers: PosInt = 1
    # a sandbox starts on the first tool call and stops after this long without one (and
    # with no approval pending); 0: every sandbox runs from the start and never stops
    idle_stop_s: NonNegFloat = 600.0
    workspace: str | None = None  # None: $MOLTBOT_HOME/workspace
    bash: BashConfig = msgspec.field(default_factory=BashConfig)
    files: FilesConfig = msgspec.field(default_factory=FilesConfig)
    web_fetch: WebFetchConfig = msgspec.field(default_factory=WebFetchConfig)

    def workspace_path(self) -> Path:
        """The workspace folder: ``workspace`` (``~`` expanded) or ``paths.workspace_dir()``."""
        return Path(self.workspace).expanduser() if self.workspace else paths.workspace_dir()


# --- media ---------------------------------------------------------------------------------
class TranscriptionConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OpenAI-compatible ``/audio/transcriptions`` endpoint (a local whisper server, or a
    hosted one): ``base_url`` ends before ``/audio`` (e.g. ``http://gpu-box:8000/v1``)."""

    base_url: Annotated[str, Meta(pattern=r"^https?://")]
    model: str = "whisper-1"
    api_key: SecretRef | None = None
    timeout_s: PosFloat = 120.0


class MediaConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Pictures, voice notes and files: ``max_bytes`` caps one inbound file (larger ones are
    refused and the sender told) and one file the agent sends; images go to the model with
    their long edge at most ``image_max_edge`` px and at most ``image_max_bytes``."""

    enabled: bool = True
    max_bytes: PosInt = 20 * 1024 * 1024
    image_max_edge: Annotated[int, Meta(ge=64, le=8000)] = 1568
    image_max_bytes: PosInt = 5 * 1024 * 1024
    image_max_pixels: PosInt = 50_000_000  # decompression-bomb guard
    transcription: TranscriptionConfig | None = None


# --- supervision ---------------------------------------------------------------------------
class BackoffConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    base_s: NonNegFloat = 0.2
    max_s: NonNegFloat = 10.0
    jitter: Fraction = 0.2


class SupervisorConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: NonNegInt = 3  # restarts allowed ...
    period: PosFloat = 5.0  # ... within this many seconds
    backoff: BackoffConfig = msgspec.field(default_factory=BackoffConfig)
    # keep one warm standby process per child (imports done, not connected): a restart
    # promotes it instead of starting a new process (channels: under 1 s instead of 2.5-10 s),
    # at the cost of one more idle process per child
    standby: bool = False
    # OTP's max_heap_size for each child of this supervisor, in MB of its process tree (the
    # actor and what it started); above it the child is restarted (audited, counted against
    # intensity). 0: no ceiling
    max_memory_mb: NonNegInt = 1024


def _sup() -> SupervisorConfig:
    return SupervisorConfig()


def _tools_sup() -> SupervisorConfig:
    # a sandbox worker's tree holds the commands it runs (each capped by tools.bash.memory_mb)
    return SupervisorConfig(max_memory_mb=4096)


class SupervisionConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    root: SupervisorConfig = msgspec.field(default_factory=_sup)
    agents: SupervisorConfig = msgspec.field(default_factory=_sup)
    tools: SupervisorConfig = msgspec.field(default_factory=_tools_sup)
    channels: SupervisorConfig = msgspec.field(default_factory=_sup)
    plugins: SupervisorConfig = msgspec.field(default_factory=_sup)
    ping_interval_s: PosFloat = 2.0
    ping_timeout_s: PosFloat = 5.0
    shutdown_s: PosFloat = 5.0
    ready_timeout_s: PosFloat = 120.0  # a cold start imports big SDKs on a busy machine


# --- cluster -------------------------------------------------------------------------------
class Placement(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where actors whose path matches the glob key run: custom Ray resources and/or labels."""

    resources: dict[str, NonNegFloat] = {}
    node_labels: dict[str, str] = {}


class ClusterConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: str | None = None  # None: start a local Ray; "auto" or "host:port": join
    # the head's address for other home-lab machines; loopback (default) = this machine only
    head_ip: str = "127.0.0.1"
    head_port: Port = 6379
    object_store_mb: Annotated[int, Meta(ge=50)] = 200
    dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: Port = 8265
    namespace: Annotated[str, Meta(min_length=1)] = "moltbot"
    placement: dict[str, Placement] = {}  # actor path glob, e.g. "channels/signal:*"


# --- plugins -------------------------------------------------------------------------------
class ChannelPolicy(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who may talk to the bot through a plugin's channels: a channel account's access rules."""

    dm_policy: DmPolicy = "pairing"
    allow_from: list[str] = []
    owners: list[str] = []
    groups: GroupsConfig = msgspec.field(default_factory=GroupsConfig)


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
HOST_NAME_PATTERN = rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$"


class PluginConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=PLUGIN_NAME_PATTERN)]
    module: Annotated[str, Meta(min_length=1)]
    version: str | None = None
    sha256: Annotated[str, Meta(pattern=SHA256_PATTERN)] | None = None
    enabled: bool = True
    capabilities: list[str] = []
    secrets: list[str] = []  # vault names this plugin may read
    # exact host names the plugin's api.http() may reach (with the 'network' capability)
    http_hosts: list[Annotated[str, Meta(pattern=HOST_NAME_PATTERN)]] = []
    config: dict[str, Any] = {}
    channel_policy: ChannelPolicy = msgspec.field(default_factory=ChannelPolicy)


# --- schedules -----------------------------------------------------------------------------
class ScheduleConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scheduler (``moltbot.schedule``): where a job's answer goes when the job names no
    chat, and the heartbeat (0: off)."""

    enabled: bool = True
    deliver_to: Annotated[str, Meta(pattern=r"^$|^[a-z][a-z0-9_-]*:[^:\s]+:\S+$")] = ""
    heartbeat_minutes: Annotated[int, Meta(ge=0, le=10080)] = 0
    heartbeat_prompt: str = ""  # "": the built-in check-in prompt


# --- the whole file ------------------------------------------------------------------------
class Config(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=1)] = 1
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    channels: ChannelsConfig = msgspec.field(default_factory=ChannelsConfig)
    tools: ToolsConfig = msgspec.field(default_factory=ToolsConfig)
    media: MediaConfig = msgspec.field(default_factory=MediaConfig)
    supervision: SupervisionConfig = msgspec.field(default_factory=SupervisionConfig)
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)
    plugins: list[PluginConfig] = []
    schedule: ScheduleConfig = msgspec.field(default_factory=ScheduleConfig)
