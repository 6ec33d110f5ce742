"""The values of the outbound API: what callers ask for and what the outbox reports back."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.errors import (
    AccountUnavailable,
    AuthFailed,
    ConfigInvalid,
    DeliveryError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    PermanentSendError,
    TargetError,
    TargetNotFound,
    TransientSendError,
)
from gateway.status import utcnow_iso

DeliveryState = Literal["pending", "sending", "delivered", "dead"]
PENDING: DeliveryState = "pending"
SENDING: DeliveryState = "sending"
DELIVERED: DeliveryState = "delivered"
DEAD: DeliveryState = "dead"
STATES: tuple[DeliveryState, ...] = (PENDING, SENDING, DELIVERED, DEAD)


@dataclass(frozen=True)
class PollRequest:
    """A poll as the caller asks for it; the outbox validates it before accepting."""

    question: str
    options: tuple[str, ...]
    max_selections: int = 1
    duration_hours: int | None = None


@dataclass(frozen=True)
class DeliveryRequest:
    """One outbound message: text, media (paths, ``file://``, ``http(s)://``, ``data:``) or a poll.

    ``provider`` accepts aliases; ``account`` defaults to the provider's default account;
    ``to`` is a target string in the provider's format. A repeated ``idempotency_key``
    returns the first message's record and sends nothing.
    """

    provider: str
    to: str
    text: str = ""
    account: str | None = None
    media: tuple[str, ...] = ()
    reply_to: str | None = None
    thread: str | None = None
    poll: PollRequest | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class DeliveryRecord:
    """The state of one accepted message, as stored in the outbox.

    Times are kept as epoch seconds (``created``, ``updated``) and formatted only when read
    (``created_at``, ``updated_at``: ISO-8601 UTC with milliseconds): ``deliver()`` returns
    a record for every message, and most callers never look at its times.
    """

    id: str
    provider: str
    account: str
    target: str
    state: str  # pending | sending | delivered | dead
    attempts: int
    created: float
    updated: float
    last_error: str | None
    error_code: str | None
    #: One entry per part sent so far (text chunk, media, poll): ``message_id``, ``chat_id``.
    results: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None

    @property
    def created_at(self) -> str:
        return iso(self.created)

    @property
    def updated_at(self) -> str:
        return iso(self.updated)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "account": self.account, "target": self.target,
                "state": self.state, "attempts": self.attempts, "created_at": self.created_at,
                "updated_at": self.updated_at, "last_error": self.last_error, "error_code": self.error_code,
                "results": [dict(r) for r in self.results], "idempotency_key": self.idempotency_key}


def iso(ts: float) -> str:
    """``utcnow_iso(ts)`` (ISO-8601, milliseconds, ``Z``) at a fraction of the cost."""
    frac, whole = math.modf(ts)  # rounded the way datetime.fromtimestamp rounds
    micros = round(frac * 1_000_000)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    return f"{_second(second)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return utcnow_iso(second)[:-5]


class OutboxClosed(TransientSendError):
    """The gateway is shutting down (or the outbox is not running): nothing was queued."""

    code = "outbox_closed"


class AccountRemoved(PermanentSendError):
    """The message's account left the configuration before the message could be sent."""

    code = "account_removed"


_ERRORS_BY_CODE: dict[str, type[Exception]] = {
    cls.code: cls for cls in (PermanentSendError, TargetNotFound, Forbidden, PayloadTooLarge, InvalidRequest,
                              TransientSendError, AccountUnavailable, TargetError, AccountRemoved,
                              AuthFailed, ConfigInvalid)
}


def error_for(record: DeliveryRecord) -> Exception:
    """The classified exception that ``deliver(wait=True)`` raises for a dead message."""
    cls = _ERRORS_BY_CODE.get(record.error_code or "", DeliveryError)
    error = cls(record.last_error or "delivery failed")
    error.record = record  # type: ignore[attr-defined]
    return error
