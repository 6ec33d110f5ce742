"""The per-account Slack client and the mapping of Slack failures onto Switchboard errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway.errors import (
    AccountNotReady,
    AuthFailed,
    ConfigInvalid,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    SwitchboardError,
    TargetNotFound,
    TransientSendError,
)
from gateway.plugin import ResolvedAccount

from .config import REQUIRED_SCOPES, SlackAccountConfig

#: Slack always sends Retry-After with a 429; this is slack_sdk's own fallback (Tier 1).
DEFAULT_RETRY_AFTER = 30.0

# No total timeout: uploads may take long. Websockets ignore these after the handshake.
_SESSION_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)

_AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                          "not_allowed_token_type", "invalid_token", "team_disabled"})
_NOT_FOUND_ERRORS = frozenset({"channel_not_found", "user_not_found", "users_not_found", "thread_not_found",
                               "message_not_found"})
_FORBIDDEN_ERRORS = frozenset({"not_in_channel", "restricted_action", "is_archived", "cannot_dm_bot",
                               "messages_tab_disabled", "team_access_not_granted", "access_denied",
                               "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
                               "restricted_action_non_threadable_channel", "ekm_access_denied", "missing_scope",
                               "user_is_bot", "method_not_supported_for_channel_type"})
_TOO_LARGE_ERRORS = frozenset({"msg_too_long", "msg_blocks_too_long", "too_many_attachments", "file_too_large"})
_TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                               "ratelimited"})
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(frozen=True)
class SlackIdentity:
    """Who the bot token belongs to (``auth.test``) and what it may do."""

    user_id: str
    bot_id: str | None
    user_name: str | None
    team_id: str | None
    team_name: str | None
    #: ``None`` when Slack sent no ``x-oauth-scopes`` header (nothing can be checked).
    scopes: frozenset[str] | None

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        if self.scopes is None:
            return ()
        return tuple(scope for scope in REQUIRED_SCOPES if scope not in self.scopes)


@dataclass
class SlackClient:
    """One per account: the bot-token Web API client, the app token, one aiohttp session."""

    web: AsyncWebClient
    app_token: str
    session: aiohttp.ClientSession
    #: user id -> DM channel id, filled by ``conversations.open``.
    dm_channels: dict[str, str] = field(default_factory=dict)

    async def auth_test(self, *, transient: type[SwitchboardError] = AccountNotReady) -> SlackIdentity:
        with slack_errors("auth.test", transient=transient):
            response = await self.web.auth_test()
        header = response.headers.get("x-oauth-scopes")
        scopes = None if header is None else frozenset(s.strip() for s in header.split(",") if s.strip())
        return SlackIdentity(user_id=str(response.get("user_id") or ""), bot_id=response.get("bot_id"),
                             user_name=response.get("user"), team_id=response.get("team_id"),
                             team_name=response.get("team"), scopes=scopes)

    async def open_socket_url(self) -> str:
        """A fresh single-use Socket Mode URL (``apps.connections.open`` with the app token)."""
        with slack_errors("apps.connections.open", transient=AccountNotReady, app_token=True):
            response = await self.web.apps_connections_open(app_token=self.app_token)
        url = response.get("url")
        if not isinstance(url, str) or not url:
            raise AccountNotReady("apps.connections.open returned no url")
        return url

    async def dm_channel(self, user_id: str) -> str:
        """The DM channel with ``user_id`` (``conversations.open``, cached for the account's life)."""
        channel = self.dm_channels.get(user_id)
        if channel is None:
            with slack_errors("conversations.open", transient=TransientSendError):
                response = await self.web.conversations_open(users=user_id)
            channel = str((response.get("channel") or {}).get("id") or "")
            if not channel:
                raise TransientSendError(f"conversations.open returned no channel for {user_id}")
            self.dm_channels[user_id] = channel
        return channel


@asynccontextmanager
async def open_client(resolved: ResolvedAccount) -> AsyncIterator[SlackClient]:
    """Create the account's client; the aiohttp session is closed on exit."""
    config = resolved.config
    if not isinstance(config, SlackAccountConfig):
        raise ConfigInvalid(f"slack account {resolved.account_id!r} has a {type(config).__name__}, "
                            "expected SlackAccountConfig")
    if config.bot_token is None or config.app_token is None:
        raise ConfigInvalid("slack needs both bot_token (xoxb-...) and app_token (xapp-...)",
                            fix="set bot_token/app_token (or *_file, or SLACK_BOT_TOKEN/SLACK_APP_TOKEN "
                                "for the default account)")
    session = aiohttp.ClientSession(timeout=_SESSION_TIMEOUT)
    try:
        # retry_handlers=[]: the core owns retries. slack_sdk's default handler would re-POST on a
        # dropped connection (a possible duplicate message) and its rate-limit handler would sleep
        # inside the call instead of telling the outbox.
        web = AsyncWebClient(token=config.bot_token.get_secret_value(), base_url=config.api_base_url,
                             session=session, retry_handlers=[])
        yield SlackClient(web=web, app_token=config.app_token.get_secret_value(), session=session)
    finally:
        await session.close()


# --- error mapping ------------------------------------------------------------------------------


@contextmanager
def slack_errors(method: str, *, transient: type[SwitchboardError], app_token: bool = False) -> Iterator[None]:
    """Translate slack_sdk/aiohttp failures of ``method`` into Switchboard's taxonomy.

    ``transient`` is the class for retryable failures: :class:`TransientSendError` on the send
    path, :class:`AccountNotReady` on the account path.
    """
    try:
        yield
    except SlackApiError as exc:
        raise api_error(method, exc.response, transient=transient, app_token=app_token) from None
    except _NETWORK_ERRORS as exc:
        raise transient(f"Slack {method}: network error: {exc!r}") from None


def api_error(method: str, response: Any, *, transient: type[SwitchboardError],
              app_token: bool = False) -> SwitchboardError:
    """The most specific error for a failed Web API response (a SlackResponse-like object)."""
    status = int(getattr(response, "status_code", 0) or 0)
    headers = getattr(response, "headers", None) or {}
    data = getattr(response, "data", None)
    code = str(data.get("error") or "") if isinstance(data, dict) else ""
    what = f"Slack {method} failed: {code or f'HTTP {status}'}"
    if status == 429 or code == "ratelimited":
        return RateLimited(_retry_after(headers), what)
    if code in _AUTH_ERRORS:
        token = "app_token (xapp-...)" if app_token else "bot_token (xoxb-...)"
        return AuthFailed(f"{what}: Slack rejected the {token}")
    if status >= 500 or code in _TRANSIENT_ERRORS or (status == 200 and not code):
        return transient(what)
    if code == "missing_scope" and isinstance(data, dict):
        needed = data.get("needed") or "?"
        what = f"{what}: the token needs scope {needed}; add it and reinstall the app"
        return Forbidden(what) if transient is TransientSendError else ConfigInvalid(what)
    if transient is not TransientSendError:
        # The account path has no target to blame: let the supervisor retry with backoff.
        return transient(what)
    if code in _NOT_FOUND_ERRORS:
        return TargetNotFound(what)
    if code in _FORBIDDEN_ERRORS:
        return Forbidden(what)
    if code in _TOO_LARGE_ERRORS or status == 413:
        return PayloadTooLarge(what)
    return InvalidRequest(what)


def _retry_after(headers: Any) -> float:
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
