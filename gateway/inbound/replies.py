"""Replies and pairing notices go out through the outbox, to the chat a message came from.

Every request carries an idempotency key derived from the inbound message, so a handler
that runs again (after a crash between "reply queued" and "message done") never sends a
reply twice: the outbox returns the first result for a repeated key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.plugin import InboundMessage, ProviderPlugin

if TYPE_CHECKING:
    from gateway.app import Gateway


class DeliverySink(Protocol):
    """The part of :class:`gateway.outbound.Outbox` the pipeline uses."""

    async def deliver(self, request: Any, *, wait: bool = False) -> Any: ...


class NoOutbox(RuntimeError):
    """No outbox service runs in this gateway, so nothing can be sent."""


def reply_target(plugin: ProviderPlugin, message: InboundMessage) -> str:
    """The target string the provider's ``resolve_target`` accepts for ``message``'s chat."""
    method = getattr(plugin.outbound, "reply_target", None)
    return method(message) if method is not None else message.chat.id


def reply_key(message: InboundMessage, n: int) -> str:
    return f"reply:{message.provider}:{message.account}:{message.id}:{n}"


class ReplySender:
    """Builds delivery requests and hands them to the outbox (or an injected sink)."""

    def __init__(self, gateway: Gateway, sink: DeliverySink | None = None):
        self.gateway = gateway
        self._sink = sink

    def sink(self) -> DeliverySink:
        if self._sink is not None:
            return self._sink
        from gateway.outbound import Outbox

        outbox = self.gateway.service(Outbox)
        if outbox is None:
            raise NoOutbox("no outbox service is running; replies cannot be sent")
        return outbox  # type: ignore[no-any-return]

    async def send(self, *, provider: str, account: str, to: str, text: str, media: Sequence[str] = (),
                   reply_to: str | None = None, thread: str | None = None, idempotency_key: str) -> Any:
        from gateway.outbound import DeliveryRequest

        request = DeliveryRequest(provider=provider, account=account, to=to, text=text, media=tuple(media),
                                  reply_to=reply_to, thread=thread, idempotency_key=idempotency_key)
        return await self.sink().deliver(request, wait=False)
