"""Translate client errors into the gateway's taxonomy (one place, ``raise ... from None``)."""

from __future__ import annotations

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

from .client import TelegramAPIError, TelegramError

#: Telegram sometimes omits ``retry_after``; wait this long rather than hammering.
DEFAULT_RETRY_AFTER_S = 5.0

TOKEN_FIX = "check bot_token / bot_token_file (or $TELEGRAM_BOT_TOKEN); @BotFather /token shows the current one"


def _auth_failed(exc: TelegramAPIError) -> AuthFailed:
    return AuthFailed(f"Telegram rejected the bot token ({exc.error_code} {exc.description} on {exc.method}); "
                      + TOKEN_FIX)


def is_unauthorized(exc: TelegramAPIError) -> bool:
    # A malformed token yields 404 on every method rather than 401.
    return exc.error_code == 401 or (exc.error_code == 404 and exc.description.lower().startswith("not found"))


def to_account_error(exc: TelegramError) -> SwitchboardError:
    """For the monitor and probes: what the supervisor should do about ``exc``."""
    if not isinstance(exc, TelegramAPIError):
        return AccountNotReady(f"Telegram API unreachable ({exc})")
    if is_unauthorized(exc):
        return _auth_failed(exc)
    if exc.error_code == 429:
        return RateLimited(exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S,
                           f"Telegram rate limit on {exc.method}: {exc.description}")
    return AccountNotReady(f"Telegram {exc.method} failed: {exc.error_code} {exc.description}")


def to_send_error(exc: TelegramError, chat: object) -> SwitchboardError:
    """For the send primitives: permanent, transient, rate limit or auth."""
    if not isinstance(exc, TelegramAPIError):
        return TransientSendError(f"Telegram API unreachable ({exc})")
    code, text = exc.error_code, f"{exc.description} ({exc.method}, chat {chat})"
    error: SwitchboardError
    if is_unauthorized(exc):
        error = _auth_failed(exc)
    elif code == 429:
        error = RateLimited(exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S, text)
    elif code == 413 or exc.mentions("too big", "too large", "too long"):
        error = PayloadTooLarge(text)
    elif code == 403:
        error = Forbidden(text)
    elif code == 400 and exc.mentions("chat not found", "thread not found", "user not found",
                                      "peer_id_invalid", "chat_id is empty"):
        error = TargetNotFound(text)
    elif code >= 500:
        error = TransientSendError(text)
    else:
        error = InvalidRequest(text)
    return error


def config_error(exc: TelegramAPIError, what: str, fix: str) -> ConfigInvalid:
    return ConfigInvalid(f"{what}: {exc.description}", fix=fix)

