"""Outbound delivery: ``Outbox.deliver()`` -- validation, chunking, media, polls, the durable outbox.

See ``docs/outbound.md``.
"""

from gateway.outbound.lanes import DEFAULT_MAX_IN_FLIGHT
from gateway.outbound.model import (
    AccountRemoved,
    DeliveryRecord,
    DeliveryRequest,
    DeliveryState,
    OutboxClosed,
    PollRequest,
)
from gateway.outbound.outbox import Outbox
from gateway.outbound.plan import normalize_poll, poll_text

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT", "AccountRemoved", "DeliveryRecord", "DeliveryRequest", "DeliveryState", "Outbox",
    "OutboxClosed", "PollRequest", "normalize_poll", "poll_text",
]
