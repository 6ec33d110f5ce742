"""The provider plugin contract.

A provider plugin is one :class:`ProviderPlugin` object, exported as ``plugin`` from a
built-in ``providers.<id>`` package or from any installed distribution through the
``switchboard.providers`` entry-point group. It bundles:

* ``meta`` and ``capabilities`` -- what the provider is and can do;
* ``config`` -- the pydantic account model, how secrets are found, and a few optional hooks
  (:class:`ConfigSpec`);
* ``gateway`` -- ``run_account(ctx)``, which runs one account until cancelled;
* ``outbound`` -- limits, target resolution and the narrow send primitives;
* ``status`` -- probe and status issues;
* ``reload`` -- which keys apply live and which extra prefixes force a restart;
* ``open_client`` -- the one client object per account (HTTP session, websocket, child
  process) that the core owns and shares between the monitor and the outbound path.

This module holds types only: no I/O. See ``docs/writing-a-provider.md`` for a walk-through.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import structlog


# --- values ---------------------------------------------------------------------------------


class ChatType(enum.StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"
    THREAD = "thread"


class PollSupport(enum.StrEnum):
    NATIVE = "native"
    EMULATED = "emulated"
    NONE = "none"


class MediaKind(enum.StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"

    @classmethod
    def from_mime(cls, mime: str) -> MediaKind:
        major = mime.split("/", 1)[0].lower()
        return {"image": cls.IMAGE, "audio": cls.AUDIO, "video": cls.VIDEO}.get(major, cls.DOCUMENT)


class AccountState(enum.StrEnum):
    """Lifecycle states of one (provider, account)."""

    DISABLED = "disabled"
    UNCONFIGURED = "unconfigured"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def recoverable(self) -> bool:
        """True when the supervisor will get out of this state without an operator."""
        return self in (AccountState.STARTING, AccountState.RUNNING, AccountState.BACKOFF)


@dataclass(frozen=True, order=True)
class AccountKey:
    """Accounts are always keyed by the pair, never by the account id alone.

    A dictionary key on every hot path (supervisor, status, outbox lanes): the hash is
    computed once, and equality compares the two strings without building tuples.
    """

    provider: str
    account: str
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.provider, self.account)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not AccountKey:
            return NotImplemented
        return self.provider == other.provider and self.account == other.account  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[type[AccountKey], tuple[str, str]]:
        return AccountKey, (self.provider, self.account)  # the hash is per process: never pickle it

    def __str__(self) -> str:
        return f"{self.provider}/{self.account}"


@dataclass(frozen=True)
class PluginMeta:
    label: str
    selection_label: str | None = None
    docs_url: str | None = None
    aliases: tuple[str, ...] = ()
    #: Position in listings; ``None`` falls back to the canonical order, then the id.
    order: int | None = None
    show_configured: bool = True
    blurb: str = ""


@dataclass(frozen=True)
class Capabilities:
    chat_types: frozenset[ChatType] = frozenset({ChatType.DIRECT})
    polls: PollSupport = PollSupport.NONE
    media: bool = False
    reactions: bool = False
    threads: bool = False


StatusIssueKind = Literal["intent", "permissions", "config", "auth", "runtime", "plugin"]


@dataclass(frozen=True)
class StatusIssue:
    """Something an operator should fix, shown under "Warnings" by ``switchboard status``."""

    provider: str
    account: str | None
    kind: StatusIssueKind
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "account": self.account, "kind": self.kind,
                "message": self.message, "fix": self.fix}


# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    id: str
    type: ChatType = ChatType.DIRECT
    title: str | None = None


@dataclass(frozen=True)
class Sender:
    id: str
    name: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class MediaRef:
    """Inbound media metadata. ``ref`` is provider-specific (a file id, a URL)."""

    kind: MediaKind
    ref: str
    mime: str | None = None
    size: int | None = None
    filename: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """One message from a chat, normalised. ``raw`` keeps the provider's payload."""

    provider: str
    account: str
    id: str
    chat: Chat
    sender: Sender
    text: str = ""
    media: tuple[MediaRef, ...] = ()
    reply_to: str | None = None
    thread: str | None = None
    mentioned: bool = False
    timestamp: datetime | None = None
    #: ``message`` for ordinary messages, ``poll_vote`` for a vote on a poll.
    type: Literal["message", "poll_vote"] = "message"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Target:
    """A resolved outbound destination. ``kind`` is provider-specific (``chat``, ``user``...)."""

    kind: str
    id: str
    thread: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" + (f":thread:{self.thread}" if self.thread else "")


@dataclass(frozen=True)
class MediaPayload:
    """Outbound media, already loaded and checked by the core."""

    data: bytes
    mime: str
    filename: str
    kind: MediaKind


@dataclass(frozen=True)
class Poll:
    """A normalised poll (validated by the core before any send)."""

    question: str
    options: tuple[str, ...]
    max_selections: int = 1
    duration_hours: int | None = None


# SendOptions and SendResult are built once per message sent: plain slotted dataclasses,
# because a frozen dataclass's __init__ (object.__setattr__ per field) costs twice as much.
# Both are values: the outbox builds a new SendOptions for every call, and reads a
# SendResult once.


@dataclass(slots=True)
class SendOptions:
    reply_to: str | None = None
    thread: str | None = None
    #: ``<outbox id>:<part index>``, stable across retries and restarts: a provider that can
    #: dedupe (Discord ``nonce``, Slack ``client_msg_id``) may pass it on.
    delivery_id: str | None = None


@dataclass(slots=True)
class SendResult:
    """What one provider call produced. ``message_id`` is the provider's id."""

    message_id: str
    chat_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


# --- configuration ----------------------------------------------------------------------------


DmPolicy = Literal["open", "allowlist", "pairing", "disabled"]
GroupPolicy = Literal["open", "allowlist", "disabled"]


class AccountConfig(BaseModel):
    """Keys every provider account has. Plugins subclass this for their own keys.

    Unknown keys are errors (``extra="forbid"``) so typos never silently do nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    enabled: bool = True
    name: str | None = None
    dm_policy: DmPolicy = "pairing"
    allow_from: tuple[str, ...] = ()
    group_policy: GroupPolicy = "open"
    group_allow_from: tuple[str, ...] = ()
    require_mention: bool = True
    text_chunk_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    media_max_mb: float | None = Field(default=None, gt=0, le=4096)

    @field_validator("allow_from", "group_allow_from", mode="before")
    @classmethod
    def _stringify_ids(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(str(v).strip() for v in value)
        return value


@dataclass(frozen=True)
class SecretSpec:
    """A secret field of the account model.

    ``field`` (e.g. ``bot_token``) may be given literally, or read from ``<field>_file``, or
    -- for the default account only -- from the environment variable ``env``. The account
    model must declare ``<field>: SecretStr | None = None`` and ``<field>_file: str | None =
    None``. A leading ``strip_prefix`` (Discord's ``Bot ``) is removed.
    """

    field: str
    env: str | None = None
    required: bool = True
    strip_prefix: str | None = None


@dataclass(frozen=True)
class ResolvedAccount:
    """An account's effective configuration: provider-level keys merged, secrets resolved."""

    key: AccountKey
    config: AccountConfig
    #: Where each secret came from: ``config``, ``file``, ``env`` or ``none``.
    secret_sources: Mapping[str, str]
    #: The merged raw mapping (secrets included, file contents substituted) that reload
    #: compares to decide whether the account must restart.
    effective: Mapping[str, Any]
    enabled: bool = True
    disabled_reason: str | None = None

    @property
    def provider(self) -> str:
        return self.key.provider

    @property
    def account_id(self) -> str:
        return self.key.account


@dataclass(frozen=True)
class ConfigSpec:
    """How the core builds this provider's accounts from the TOML file."""

    model: type[AccountConfig] = AccountConfig
    secrets: tuple[SecretSpec, ...] = ()
    #: Provider-level sections whose keys are free-form (not validated against the model).
    free_form: tuple[str, ...] = ()
    #: ``(configured, reason)``; default: configured when every required secret is present.
    is_configured: Callable[[ResolvedAccount], tuple[bool, str | None]] | None = None
    #: A safe summary for ``providers list`` / status. Never include secrets.
    describe_account: Callable[[ResolvedAccount], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class ReloadSpec:
    #: Keys applied without restarting the account (policy keys are live everywhere).
    live_keys: frozenset[str] = frozenset()
    #: Extra dotted config prefixes (outside ``providers.<id>``) that restart every account
    #: of this provider when they change.
    prefixes: tuple[str, ...] = ()


#: Keys applied live for every provider: the inbound policy reads them per message.
COMMON_LIVE_KEYS = frozenset({"name", "dm_policy", "allow_from", "group_policy",
                              "group_allow_from", "require_mention", "text_chunk_limit"})


# --- runtime contexts ---------------------------------------------------------------------------


class KeyValueStore(Protocol):
    """Per-account persistent key/value store (cursors, offsets, session ids)."""

    async def get(self, key: str, default: Any = None) -> Any: ...
    async def set(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...


WebhookHandler = Callable[[Any], Awaitable[Any]]  # aiohttp.web.Request -> aiohttp.web.StreamResponse


class WebhookMount(Protocol):
    """Mount/unmount routes on the daemon's control listener under ``/hooks/<p>/<a>/``."""

    def mount(self, key: AccountKey, handler: WebhookHandler, *, methods: Sequence[str] = ("POST",)) -> str:
        """Mount ``handler`` for every path below ``/hooks/<provider>/<account>/``; returns the URL path."""
        ...

    def unmount(self, key: AccountKey) -> None: ...

    def mount_path(self, path: str, handler: WebhookHandler, *, methods: Sequence[str] = ("GET",)) -> str:
        """Serve a top-level ``path`` and everything below it (the web chat's ``/chat``)."""
        ...

    def unmount_path(self, path: str) -> None: ...


@runtime_checkable
class AccountContext(Protocol):
    """What ``run_account`` and the send primitives receive.

    ``account`` is the validated account model; ``client`` the shared per-account client
    from ``plugin.open_client`` (``None`` when the plugin has none); ``log`` a structlog
    logger bound with ``provider`` and ``account``.
    """

    key: AccountKey
    account: AccountConfig
    resolved: ResolvedAccount
    client: Any
    log: structlog.typing.FilteringBoundLogger
    store: KeyValueStore
    webhooks: WebhookMount

    def set_status(self, **fields: Any) -> None:
        """Merge plugin extras into this account's snapshot (e.g. ``bot_username``)."""
        ...

    def started(self) -> None:
        """Call once the account is really connected: only then is it ``running``."""
        ...

    async def emit(self, message: InboundMessage) -> bool:
        """Hand an inbound message to the pipeline. Returns once it is durably stored
        (acknowledge the provider only after this returns); ``False`` for a duplicate."""
        ...

    def add_issue(self, kind: StatusIssueKind, message: str, fix: str | None = None) -> None:
        """Raise a runtime status issue for this account (cleared on the next start)."""
        ...

    def clear_issues(self) -> None: ...


class GatewayAdapter(Protocol):
    async def run_account(self, ctx: AccountContext) -> None:
        """Run the account until cancelled. Call ``ctx.started()`` once connected.

        Raise :class:`~gateway.errors.AccountNotReady`, :class:`~gateway.errors.RateLimited`,
        :class:`~gateway.errors.AuthFailed` or :class:`~gateway.errors.ConfigInvalid` to
        tell the supervisor what happened. Returning counts as an unexpected exit.
        """
        ...


class OutboundAdapter(Protocol):
    """The narrow send surface. Chunking, retries, rate limits live in the core above it.

    Optional: ``reply_target(message: InboundMessage) -> str``, the target string that
    reaches the chat of an inbound message (handler replies, pairing codes); without it the
    chat id is used (see :class:`BaseOutbound`).
    """

    text_chunk_limit: int
    chunker: Literal["markdown", "plain", "none"]
    caption_limit: int | None
    media_max_bytes: Mapping[MediaKind, int]
    poll_max_options: int | None

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        """Parse ``raw`` or raise :class:`~gateway.errors.TargetError` showing the formats."""
        ...

    def render(self, text: str) -> str:
        """Convert markdown to what is actually sent (e.g. Telegram HTML); identity by default."""
        ...

    def measure(self, text: str) -> int:
        """Length as the provider counts it (Telegram: UTF-16 code units)."""
        ...

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult: ...

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult: ...

    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        """Only called when ``capabilities.polls`` is ``native`` (or the plugin emulates)."""
        ...


class StatusAdapter(Protocol):
    async def probe(self, ctx: AccountContext | None, resolved: ResolvedAccount, timeout: float) -> Mapping[str, Any]:
        """Check the credentials/connection; return a small JSON-able dict (``ok`` key)."""
        ...

    def collect_issues(self, snapshots: Sequence[Mapping[str, Any]]) -> Sequence[StatusIssue]: ...


ClientFactory = Callable[[ResolvedAccount], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class ProviderPlugin:
    """One provider. Export an instance as ``plugin``."""

    id: str
    meta: PluginMeta
    gateway: GatewayAdapter
    capabilities: Capabilities = Capabilities()
    config: ConfigSpec = ConfigSpec()
    outbound: OutboundAdapter | None = None
    status: StatusAdapter | None = None
    reload: ReloadSpec = ReloadSpec()
    open_client: ClientFactory | None = None

    @property
    def live_keys(self) -> frozenset[str]:
        return COMMON_LIVE_KEYS | self.reload.live_keys


class BaseOutbound:
    """Defaults for :class:`OutboundAdapter`; providers subclass and fill in the sends."""

    text_chunk_limit: int = 4000
    chunker: Literal["markdown", "plain", "none"] = "markdown"
    caption_limit: int | None = None
    media_max_bytes: Mapping[MediaKind, int] = {}
    poll_max_options: int | None = None

    def render(self, text: str) -> str:
        return text

    def measure(self, text: str) -> int:
        return len(text)

    def reply_target(self, message: InboundMessage) -> str:
        """The target string (for ``resolve_target``) that reaches ``message``'s chat."""
        return f"{message.chat.id}"

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult:
        from gateway.errors import InvalidRequest

        raise InvalidRequest("this provider cannot send media")

    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        from gateway.errors import InvalidRequest

        raise InvalidRequest("this provider has no native polls")
