"""The exception taxonomy of Switchboard.

Everything a provider plugin raises across the plugin boundary is (or is translated to) a
subclass of :class:`SwitchboardError`. The supervisor and the outbox classify exceptions by
family, never by message text:

* :class:`AccountNotReady` (and any unexpected exception) -> ``backoff``: retried with
  exponential backoff and jitter.
* :class:`RateLimited` -> wait at least ``retry_after`` seconds, then retry.
* :class:`AuthFailed` -> ``failed`` with an ``auth`` status issue; no retry until the
  account's configuration changes or an operator restarts it.
* :class:`ConfigInvalid` -> ``failed`` with a ``config`` status issue.
* :class:`PermanentSendError` family -> an outbound message goes to dead letters.
* :class:`TransientSendError` -> an outbound message is retried with backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""

    #: Stable machine-readable code (used by the control API's error bodies).
    code: str = "error"


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file, located by its dotted path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(SwitchboardError):
    """The configuration cannot be used. Carries every problem found, not just the first."""

    code = "config_invalid"

    def __init__(self, problems: Sequence[ConfigProblem] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.source = source
        super().__init__("; ".join(str(p) for p in self.problems))


class ConfigNotFound(ConfigError):
    code = "config_not_found"


# --- registry ------------------------------------------------------------------------------


class UnknownProvider(SwitchboardError, LookupError):
    code = "unknown_provider"

    def __init__(self, raw: str, known: Sequence[str]):
        self.raw = raw
        self.known = tuple(known)
        super().__init__(f"unknown provider {raw!r}; known providers: {', '.join(known) or '(none)'}")


class PluginConflict(SwitchboardError):
    """Two plugins claim the same id or alias."""

    code = "plugin_conflict"


class UnknownAccount(SwitchboardError, LookupError):
    code = "unknown_account"


# --- account lifecycle (raised by run_account / probes) -------------------------------------


class AccountError(SwitchboardError):
    """Base of the errors that classify how an account's task ended."""


class AccountNotReady(AccountError):
    """Transient: the account could not connect now. Retried with backoff."""

    code = "not_ready"


class RateLimited(AccountError):
    """The provider asked us to slow down. ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str | None = None):
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(message or f"rate limited; retry after {self.retry_after:g}s")


class AuthFailed(AccountError):
    """The credentials were rejected. The account parks in ``failed`` until fixed."""

    code = "auth_failed"


class ConfigInvalid(AccountError):
    """The provider rejected the account's configuration (e.g. a missing intent)."""

    code = "config_invalid"

    def __init__(self, message: str, *, fix: str | None = None):
        self.fix = fix
        super().__init__(message)


# --- outbound -----------------------------------------------------------------------------


class DeliveryError(SwitchboardError):
    """Base of errors raised while delivering one outbound message."""

    code = "delivery_failed"


class TargetError(DeliveryError, ValueError):
    """The target string is not one the provider accepts. The message shows the formats."""

    code = "invalid_target"


class PermanentSendError(DeliveryError):
    """Retrying will not help: the message goes to dead letters with this reason."""

    code = "permanent"


class TargetNotFound(PermanentSendError):
    code = "target_not_found"


class Forbidden(PermanentSendError):
    code = "forbidden"


class PayloadTooLarge(PermanentSendError):
    code = "payload_too_large"


class InvalidRequest(PermanentSendError):
    """The request itself is malformed (bad poll, empty text, unsupported media)."""

    code = "invalid_request"


class TransientSendError(DeliveryError):
    """A network error or 5xx: retried with backoff."""

    code = "transient"


class AccountUnavailable(TransientSendError):
    """The account is not running, so the message waits in the outbox."""

    code = "account_unavailable"


def is_permanent(exc: BaseException) -> bool:
    """True for errors that retrying cannot fix (the outbox dead-letters them)."""
    return isinstance(exc, (PermanentSendError, AuthFailed, ConfigInvalid, TargetError))
