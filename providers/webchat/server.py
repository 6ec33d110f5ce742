"""The page and the websocket under the mounted path (``/chat``).

``GET /chat`` serves the page, ``GET /chat/static/<file>`` its script and style sheet,
``GET /chat/ws?chat=<id>[&token=<t>]`` the websocket. Protocol (JSON text frames):

* page -> server: ``{"type": "message", "id": "<uuid>", "text": "..."}``
* server -> page: ``{"type": "ready", "chat": id}``, ``{"type": "ack", "id", "queued"}`` once
  the message is stored, ``{"type": "message", "id", "text", "reply_to", "at"}`` for replies,
  ``{"type": "media", ...}``, ``{"type": "error", "message"}``, and
  ``{"type": "auth_required"}`` followed by close code 4401 when the listener wants a token.

Message ids are ``<chat>:<uuid>``: a page that resends an unacknowledged message after a
reconnect is deduplicated by the pipeline.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from gateway.plugin import AccountContext, Chat, ChatType, InboundMessage, Sender
from providers.webchat.hub import WebchatHub

log = structlog.get_logger("providers.webchat")

STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
CHAT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CLOSE_UNAUTHORIZED = 4401
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def authorised(request: web.Request) -> bool:
    """Ask the control server whether this request may use the listener.

    The browser cannot set headers on a websocket, so the page sends the token as the
    ``token`` query parameter, which ``gateway.control.auth.check_token`` accepts. Without a
    control server module every request is allowed.
    """
    try:
        from gateway.control.auth import check_token
    except ImportError:
        return True
    try:
        result: Any = check_token(request)
        if inspect.isawaitable(result):
            result = await result
    except web.HTTPException:
        return False
    except Exception:  # noqa: BLE001 - fail closed, but say why
        log.exception("webchat.auth_check_failed")
        return False
    return result is not False


class WebchatServer:
    """The aiohttp handler mounted at the account's path, bound to one running account."""

    def __init__(self, ctx: AccountContext, hub: WebchatHub, path: str):
        self.ctx = ctx
        self.hub = hub
        self.path = path
        self._template = (STATIC / "index.html").read_text(encoding="utf-8")

    @property
    def title(self) -> str:
        # Read per request: ``title`` and ``max_message_chars`` are live keys.
        return str(getattr(self.ctx.account, "title", "Switchboard"))

    @property
    def max_chars(self) -> int:
        return int(getattr(self.ctx.account, "max_message_chars", 4000))

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        tail = request.path[len(self.path):].strip("/")
        if tail == "":
            page = self._template.replace("{{BASE}}", html.escape(self.path)).replace("{{TITLE}}",
                                                                                       html.escape(self.title))
            return web.Response(text=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)
        if tail == "ws":
            return await self.websocket(request)
        if tail.startswith("static/"):
            return self.static(tail.removeprefix("static/"))
        raise web.HTTPNotFound()

    def static(self, name: str) -> web.StreamResponse:
        file = STATIC / name
        if "/" in name or name.startswith(".") or file.suffix not in _STATIC_TYPES or not file.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=file.read_bytes(), content_type=_STATIC_TYPES[file.suffix],
                            headers={"Cache-Control": "no-cache"})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        chat_id = request.query.get("chat", "")
        if not CHAT_ID.match(chat_id):
            raise web.HTTPBadRequest(text="chat must be 8-64 characters of A-Z a-z 0-9 _ -\n")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=256 * 1024)
        await ws.prepare(request)
        if not await authorised(request):
            await ws.send_json({"type": "auth_required"})
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"token required")
            return ws
        self.hub.add(chat_id, ws)
        try:
            await ws.send_json({"type": "ready", "chat": chat_id, "title": self.title})
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self._on_frame(ws, chat_id, frame.data)
        finally:
            self.hub.remove(chat_id, ws)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, chat_id: str, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "message":
            await ws.send_json({"type": "error", "message": 'expected {"type": "message", "id": ..., "text": ...}'})
            return
        client_id, text = frame.get("id"), frame.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            await ws.send_json({"type": "error", "message": "id must be 1-64 characters of A-Z a-z 0-9 _ -"})
            return
        if not isinstance(text, str) or not text.strip() or len(text) > self.max_chars:
            await ws.send_json({"type": "error", "id": client_id,
                                "message": f"text must be 1 to {self.max_chars} characters"})
            return
        message = InboundMessage(
            provider=self.ctx.key.provider, account=self.ctx.key.account, id=f"{chat_id}:{client_id}",
            chat=Chat(chat_id, ChatType.DIRECT), sender=Sender(chat_id, name="Web visitor"),
            text=text, timestamp=datetime.now(UTC), raw=frame)
        try:
            queued = await self.ctx.emit(message)
        except Exception as exc:  # noqa: BLE001 - the page retries; the daemon keeps running
            self.ctx.log.error("webchat.emit_failed", error=f"{type(exc).__name__}: {exc}")
            await ws.send_json({"type": "error", "id": client_id, "message": "not accepted, try again"})
            return
        await ws.send_json({"type": "ack", "id": client_id, "queued": queued})
