"""The gateway's event feed: inbound messages, delivery results, reloads (for SSE and the UI).

Status changes have their own feed on :class:`gateway.status.StatusStore`; this one carries
everything else. Subscribers get a bounded stream; a slow one loses the oldest events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gateway.status import utcnow_iso


@dataclass(frozen=True)
class Event:
    kind: str  # "inbound" | "outbound" | "reload" | ...
    data: Mapping[str, Any]
    at: str = field(default_factory=utcnow_iso)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "data": dict(self.data)}


class EventBus:
    def __init__(self, buffer: int = 256):
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()
        self._buffer = buffer

    @property
    def has_subscribers(self) -> bool:
        """Lets a hot path skip building an event nobody would receive."""
        return bool(self._subscribers)

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if not self._subscribers:
            return
        event = Event(kind, data)
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                pass  # a slow subscriber misses events rather than slowing the gateway
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        send, receive = anyio.create_memory_object_stream[Event](self._buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()
