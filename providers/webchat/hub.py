"""The web chat's one client object: the open websockets of every chat, by chat id.

Shared by the page's websocket handler (which adds and removes sockets) and the outbound
path (which pushes replies to every tab of a chat). Closed by the core when the account stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from aiohttp import WSCloseCode, web

from gateway.errors import TransientSendError
from gateway.plugin import ResolvedAccount


class WebchatHub:
    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        #: Called with the number of connected chats whenever it changes (status extras).
        self.on_change: Callable[[int], None] = lambda _count: None

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, chat_id: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(chat_id, set()).add(ws)
        self.on_change(len(self._sockets))

    def remove(self, chat_id: str, ws: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(chat_id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._sockets[chat_id]
        self.on_change(len(self._sockets))

    def connected(self, chat_id: str) -> bool:
        return bool(self._sockets.get(chat_id))

    async def push(self, chat_id: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` to every open tab of ``chat_id``.

        With none open the send is transient: the outbox retries, and a tab that reconnects
        (same chat id, kept in the tab's sessionStorage) receives it.
        """
        sent = 0
        for ws in list(self._sockets.get(chat_id, ())):
            if ws.closed:
                continue
            try:
                await ws.send_json(payload)
                sent += 1
            except (ConnectionError, RuntimeError):
                continue  # the tab went away mid-send; the others still count
        if not sent:
            raise TransientSendError(f"web chat {chat_id} has no open tab right now")

    async def close_all(self) -> None:
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                with anyio.move_on_after(1):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"account stopped")
        self._sockets.clear()


@asynccontextmanager
async def open_hub(resolved: ResolvedAccount) -> AsyncIterator[WebchatHub]:
    hub = WebchatHub()
    try:
        yield hub
    finally:
        with anyio.CancelScope(shield=True):
            await hub.close_all()
