"""A wire-level fake of Slack's Web API and Socket Mode on 127.0.0.1 (PROVIDERS.md §3.3).

Web API: ``POST /api/<method>`` with ``Authorization: Bearer xoxb-...`` (``xapp-...`` for
``apps.connections.open``), JSON, form or query parameters, Slack's ``{"ok": ...}`` answers,
HTTP 429 + ``Retry-After`` on demand. Socket Mode: ``apps.connections.open`` hands out a
single-use ``ws://127.0.0.1:<port>/link?ticket=...``; each link gets ``hello``, then envelopes.
Envelopes are tracked per ``envelope_id``; those still unacked when their link closes are
redelivered on the newest open link (or the next one) with ``retry_attempt`` incremented.

    async with SlackFake() as fake:
        env = await fake.inject_event({"type": "message", ...})
        await fake.wait_for_ack(env)

Every wait is event-driven and bounded by a timeout; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import WSMsgType, web

DEFAULT_SCOPES = ("app_mentions:read", "channels:history", "chat:write", "files:write", "im:history", "im:write")


@dataclass(frozen=True)
class ApiCall:
    """One request the fake received. ``method`` is the Web API method, or ``upload``."""

    method: str
    params: Mapping[str, Any]
    token: str | None
    body: bytes = b""


@dataclass(frozen=True)
class _Failure:
    status: int
    error: str | None
    retry_after: float | None


@dataclass(eq=False)
class FakeLink:
    """One Socket Mode websocket, as the server sees it."""

    index: int
    ws: web.WebSocketResponse
    request: web.Request
    unacked: list[str] = field(default_factory=list)
    disconnect_reason: str | None = None
    closed: bool = False


@dataclass(eq=False)
class _Envelope:
    id: str
    type: str
    payload: dict[str, Any]
    retry_attempt: int = 0
    retry_reason: str = ""
    #: (link index, retry_attempt) for every time it was sent.
    deliveries: list[tuple[int, int]] = field(default_factory=list)

    def frame(self) -> dict[str, Any]:
        return {"envelope_id": self.id, "type": self.type, "accepts_response_payload": False,
                "retry_attempt": self.retry_attempt, "retry_reason": self.retry_reason, "payload": self.payload}


class SlackFake:
    """Start with ``async with SlackFake() as fake``; point the client at ``fake.api_base_url``."""

    def __init__(self, *, bot_token: str = "xoxb-fake-bot", app_token: str = "xapp-fake-app",
                 scopes: tuple[str, ...] | None = DEFAULT_SCOPES, bot_user_id: str = "U0BOT",
                 bot_id: str = "B0BOT", team_id: str = "T1", users: tuple[str, ...] = ("U2", "U3"),
                 channels: tuple[str, ...] = ("C1", "C2", "G1")):
        self.bot_token, self.app_token = bot_token, app_token
        self.scopes = scopes
        self.bot_user_id, self.bot_id, self.team_id = bot_user_id, bot_id, team_id
        self.users = set(users)
        self.channels = set(channels)
        self.calls: list[ApiCall] = []
        self.messages: list[dict[str, Any]] = []
        self.uploads: dict[str, bytes] = {}
        self.shares: list[dict[str, Any]] = []
        self.links: list[FakeLink] = []
        self._envelopes: dict[str, _Envelope] = {}
        self._queue: deque[_Envelope] = deque()
        self._acked: set[str] = set()
        self._ack_attempts: dict[str, int] = {}
        self._lose_acks = 0
        self._failures: dict[str, deque[_Failure]] = {}
        self._tickets: set[str] = set()
        self._files: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self._link_gate: anyio.Event | None = None
        self._changed = anyio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> SlackFake:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release_links()
        for link in self.links:
            if not link.closed:
                await link.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def account_keys(self) -> dict[str, str]:
        """Account config keys that point a Slack account at this fake."""
        return {"bot_token": self.bot_token, "app_token": self.app_token, "api_base_url": self.api_base_url}

    # --- test controls ------------------------------------------------------------------------------

    def fail_next(self, method: str, *, status: int = 429, retry_after: float | None = 1,
                  error: str | None = None) -> None:
        """Make the next call of ``method`` (or ``upload``) fail: 429 + Retry-After, another status,
        or ``status=200, error="channel_not_found"`` for Slack's ``ok: false`` answers."""
        self._failures.setdefault(method, deque()).append(
            _Failure(status, error, retry_after if status == 429 else None))

    async def inject_event(self, event: Mapping[str, Any], *, event_id: str | None = None) -> str:
        """Deliver an ``events_api`` envelope; returns its envelope id."""
        n = next(self._counter)
        payload = {"token": "legacy", "team_id": self.team_id, "api_app_id": "A1", "type": "event_callback",
                   "event_id": event_id or f"Ev{n:04d}", "event_time": 1764064800 + n, "event": dict(event)}
        return await self._inject("events_api", payload)

    async def inject_interactive(self, payload: Mapping[str, Any]) -> str:
        """Deliver an ``interactive`` envelope (e.g. ``block_actions``); returns its envelope id."""
        return await self._inject("interactive", dict(payload))

    async def send_disconnect(self, reason: str, *, link: int | None = None) -> int:
        """Send ``{"type": "disconnect", "reason": ...}`` on the newest open link (or ``link``).

        ``link_disabled`` also closes that link, as Slack does.
        """
        target = self._link_or_newest(link)
        target.disconnect_reason = reason
        await target.ws.send_str(json.dumps({"type": "disconnect", "reason": reason,
                                             "debug_info": {"host": "fake"}}))
        if reason == "link_disabled":
            await target.ws.close()
        return target.index

    async def drop_connection(self, *, link: int | None = None) -> int:
        """Cut the newest open link (or ``link``) without a close handshake."""
        target = self._link_or_newest(link)
        target.closed = True  # dead from now on, even before its handler notices
        transport = target.request.transport
        if transport is not None:
            transport.abort()
        self._notify()
        return target.index

    def hold_links(self) -> None:
        """New websocket handshakes wait until :meth:`release_links`."""
        if self._link_gate is None:
            self._link_gate = anyio.Event()

    def release_links(self) -> None:
        if self._link_gate is not None:
            self._link_gate.set()
            self._link_gate = None

    def lose_next_acks(self, count: int = 1) -> None:
        """Ignore the next ``count`` acks, as if they were lost on the way."""
        self._lose_acks += count

    # --- observations ---------------------------------------------------------------------------------

    def acked(self, envelope_id: str) -> bool:
        return envelope_id in self._acked

    def ack_attempts(self, envelope_id: str) -> int:
        """Acks received for ``envelope_id``, counting lost ones."""
        return self._ack_attempts.get(envelope_id, 0)

    def deliveries(self, envelope_id: str) -> list[tuple[int, int]]:
        """``(link index, retry_attempt)`` for each time the envelope was sent."""
        return list(self._envelopes[envelope_id].deliveries)

    def calls_of(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    @property
    def open_links(self) -> list[FakeLink]:
        return [link for link in self.links if not link.closed]

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> None:
        await self._wait(lambda: envelope_id in self._acked, timeout)

    async def wait_for_ack_attempts(self, envelope_id: str, count: int = 1, timeout: float = 5.0) -> None:
        await self._wait(lambda: self._ack_attempts.get(envelope_id, 0) >= count, timeout)

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> list[ApiCall]:
        await self._wait(lambda: len(self.calls_of(method)) >= count, timeout)
        return self.calls_of(method)

    async def wait_for_links(self, count: int, timeout: float = 5.0) -> FakeLink:
        """Wait until ``count`` links in total got their ``hello``; returns the latest."""
        await self._wait(lambda: len(self.links) >= count, timeout)
        return self.links[count - 1]

    async def wait_link_closed(self, index: int, timeout: float = 5.0) -> None:
        await self._wait(lambda: len(self.links) > index and self.links[index].closed, timeout)

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- Socket Mode --------------------------------------------------------------------------------

    async def _inject(self, kind: str, payload: dict[str, Any]) -> str:
        envelope = _Envelope(id=f"env-{next(self._counter):04d}", type=kind, payload=payload)
        self._envelopes[envelope.id] = envelope
        await self._deliver(envelope)
        return envelope.id

    async def _deliver(self, envelope: _Envelope) -> None:
        live = [link for link in self.links if not link.closed and link.disconnect_reason != "link_disabled"]
        if not live:
            self._queue.append(envelope)
            return
        link = live[-1]
        link.unacked.append(envelope.id)
        envelope.deliveries.append((link.index, envelope.retry_attempt))
        # If the link is dying, its close hands the envelope on again.
        with contextlib.suppress(ConnectionError):
            await link.ws.send_str(json.dumps(envelope.frame()))
        self._notify()

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self._tickets.discard(ticket)
        if self._link_gate is not None:
            await self._link_gate.wait()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        link = FakeLink(index=len(self.links), ws=ws, request=request)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": len(self.open_links) + 1,
                                      "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                                      "connection_info": {"app_id": "A1"}}))
        self.links.append(link)
        self._notify()
        while self._queue:
            await self._deliver(self._queue.popleft())
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._on_client_frame(link, message.data)
        finally:
            link.closed = True
            self._notify()
            await self._redeliver(link)
        return ws

    def _on_client_frame(self, link: FakeLink, raw: str) -> None:
        frame = json.loads(raw)
        envelope_id = frame.get("envelope_id")
        if not envelope_id:
            return
        self._ack_attempts[envelope_id] = self._ack_attempts.get(envelope_id, 0) + 1
        if self._lose_acks:
            self._lose_acks -= 1
        else:
            self._acked.add(envelope_id)
            for other in self.links:
                if envelope_id in other.unacked:
                    other.unacked.remove(envelope_id)
        self._notify()

    async def _redeliver(self, link: FakeLink) -> None:
        pending, link.unacked = link.unacked, []
        for envelope_id in pending:
            envelope = self._envelopes[envelope_id]
            if envelope_id in self._acked:
                continue
            envelope.retry_attempt += 1
            envelope.retry_reason = "timeout"
            await self._deliver(envelope)

    def _link_or_newest(self, index: int | None) -> FakeLink:
        if index is not None:
            return self.links[index]
        open_links = self.open_links
        if not open_links:
            raise RuntimeError("no open Socket Mode link")
        return open_links[-1]

    # --- Web API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        body = await request.read()
        if request.content_type == "application/json" and body:
            params.update(json.loads(body))
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else params.pop("token", None)
        self.calls.append(ApiCall(method, params, token, body))
        self._notify()
        if (failure := self._next_failure(method)) is not None:
            return failure
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method", status=404)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if not token:
            return _error("not_authed")
        if token != wanted:
            wrong_kind = token.startswith("xoxb-") != wanted.startswith("xoxb-")
            return _error("not_allowed_token_type" if wrong_kind else "invalid_auth")
        response: web.Response = handler(params)
        return response

    def _next_failure(self, method: str) -> web.Response | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue.popleft()
        if failure.status == 429:
            return web.json_response({"ok": False, "error": failure.error or "ratelimited"}, status=429,
                                     headers={"Retry-After": f"{failure.retry_after:g}"})
        return _error(failure.error or ("internal_error" if failure.status >= 500 else "invalid_arguments"),
                      status=failure.status)

    def _m_auth_test(self, params: dict[str, Any]) -> web.Response:
        headers = {} if self.scopes is None else {"x-oauth-scopes": ",".join(self.scopes)}
        return web.json_response({"ok": True, "url": "https://fake.slack.com/", "team": "Fake Team",
                                  "user": "switchboard", "team_id": self.team_id, "user_id": self.bot_user_id,
                                  "bot_id": self.bot_id, "is_enterprise_install": False}, headers=headers)

    def _m_apps_connections_open(self, params: dict[str, Any]) -> web.Response:
        ticket = f"t{next(self._counter)}"
        self._tickets.add(ticket)
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/link?ticket={ticket}"})

    def _m_chat_postMessage(self, params: dict[str, Any]) -> web.Response:
        channel = params.get("channel")
        if channel not in self.channels:
            return _error("channel_not_found")
        text, blocks = params.get("text"), params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            return _error("no_text")
        if text and len(text) > 40_000:
            return _error("msg_too_long")
        n = next(self._counter)
        ts = f"{1764064800 + n}.{n:06d}"
        message = {"channel": channel, "text": text, "blocks": blocks, "thread_ts": params.get("thread_ts"),
                   "ts": ts}
        self.messages.append(message)
        return web.json_response({"ok": True, "channel": channel, "ts": ts,
                                  "message": {"type": "message", "text": text, "user": self.bot_user_id,
                                              "bot_id": self.bot_id, "ts": ts}})

    def _m_conversations_open(self, params: dict[str, Any]) -> web.Response:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if not users:
            return _error("users_list_not_supplied")
        if any(u not in self.users for u in users):
            return _error("user_not_found")
        channel = "D" + users[0][1:] if len(users) == 1 else "G" + "".join(u[1:] for u in users)
        self.channels.add(channel)
        return web.json_response({"ok": True, "channel": {"id": channel}})

    def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> web.Response:
        filename, length = params.get("filename"), str(params.get("length") or "")
        if not filename or not length.isdigit() or int(length) <= 0:
            return _error("invalid_arguments")
        file_id = f"F{next(self._counter):04d}"
        self._files[file_id] = {"filename": filename, "length": int(length)}
        return web.json_response({"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
                                  "file_id": file_id})

    def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> web.Response:
        files = params.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        if not files:
            return _error("invalid_arguments")
        channel = params.get("channel_id")
        if channel is not None and channel not in self.channels:
            return _error("channel_not_found")
        out = []
        for item in files:
            file_id = item.get("id")
            if file_id not in self.uploads:
                return _error("file_not_found")
            out.append({"id": file_id, "name": self._files[file_id]["filename"], "title": item.get("title"),
                        "size": len(self.uploads[file_id])})
        self.shares.append({"files": [f["id"] for f in out], "channel_id": channel,
                            "thread_ts": params.get("thread_ts"), "initial_comment": params.get("initial_comment")})
        return web.json_response({"ok": True, "files": out})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        body = await request.read()
        self.calls.append(ApiCall("upload", {"file_id": file_id}, None, body))
        self._notify()
        if (failure := self._next_failure("upload")) is not None:
            return failure
        if file_id not in self._files:
            return web.Response(status=404, text="unknown upload url")
        self.uploads[file_id] = body
        return web.Response(text=f"OK - {len(body)}", content_type="text/plain")


def _error(code: str, *, status: int = 200) -> web.Response:
    return web.json_response({"ok": False, "error": code}, status=status)
