"""A wire-level fake of Discord: the REST API under ``/api/v10`` and the gateway websocket.

It speaks the protocol described in PROVIDERS.md §2.3 on ``127.0.0.1:<ephemeral port>``::

    async with DiscordFake() as fake:
        # point the account at fake.api_base_url; GET /gateway/bot returns fake.gateway_url
        await fake.wait_for(lambda: fake.identify_count == 1)
        await fake.dispatch("MESSAGE_CREATE", fake.message_payload("hello"))

Gateway: HELLO, IDENTIFY → READY (+ one GUILD_CREATE per guild), heartbeats and ACKs (which
can be withheld), RESUME with replay of the dispatches the client missed, then RESUMED;
RECONNECT, INVALID_SESSION, closing with any code, dropping the TCP connection. Dispatches are
buffered per session with sequence numbers, so events dispatched while the client is away are
replayed on resume. IDENTIFY asking for a privileged intent the application lacks (see
``application_flags``) is closed with 4014, like Discord does; a wrong token with 4004.

REST: ``Authorization: Bot <token>`` checked on every call; rate-limit buckets set with
:meth:`DiscordFake.set_bucket` (headers on every response of that route, a 429 when the client
ignores them); one-off failures with :meth:`fail_next` / :meth:`rate_limit_next`. Every request
is recorded in :attr:`requests` with its arrival time (``time.monotonic()``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from aiohttp import web

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"

VIEW_CHANNEL, SEND_MESSAGES = 1 << 10, 1 << 11
APP_FLAG_MESSAGE_CONTENT = 1 << 18
APP_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19
_PRIVILEGED_INTENTS = {1 << 1: (1 << 14, 1 << 15), 1 << 8: (1 << 12, 1 << 13),
                       1 << 15: (APP_FLAG_MESSAGE_CONTENT, APP_FLAG_MESSAGE_CONTENT_LIMITED)}
#: Close codes after which Discord forgets the session.
_SESSION_ENDING_CODES = {4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014}


@dataclass
class UploadedFile:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One REST call as the fake saw it. ``body`` is the JSON body or the ``payload_json`` part."""

    method: str
    path: str  # without /api/v10
    headers: Mapping[str, str]
    at: float  # time.monotonic() on arrival
    body: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    multipart: bool = False
    status: int | None = None

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class FakeBucket:
    """A rate-limit bucket of one route. ``resets`` lists the end of every window so far."""

    limit: int
    remaining: int
    reset_after: float
    name: str
    armed: bool = True  # the next request opens a window reporting ``remaining``
    reset_at: float | None = None
    resets: list[float] = field(default_factory=list)
    rejected: int = 0


@dataclass
class _Session:
    id: str
    seq: int = 0
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    conn: _Conn | None = None
    valid: bool = True

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    query: Mapping[str, str]
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    session: _Session | None = None
    withhold_acks: bool = False
    closed: bool = False
    closed_by: str | None = None  # "server", "drop"; None = the client closed it

    async def send(self, payload: Mapping[str, Any]) -> bool:
        async with self.lock:
            return await self.send_unlocked(payload)

    async def send_unlocked(self, payload: Mapping[str, Any]) -> bool:
        if self.closed or self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(payload))
            return True
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False


_RECORD = web.RequestKey("record", RecordedRequest)


class DiscordFake:
    """The fake server. Use as ``async with DiscordFake(...) as fake``."""

    def __init__(self, *, token: str = "test-token", heartbeat_interval_ms: int = 41250,
                 bot_id: str = "100", bot_username: str = "gwbot",
                 application_flags: int = APP_FLAG_MESSAGE_CONTENT,
                 session_start_remaining: int = 999, session_start_reset_after_ms: int = 86_400_000,
                 upload_limit: int = 10 * 1024 * 1024):
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.bot_user = {"id": bot_id, "username": bot_username, "discriminator": "0", "bot": True,
                         "global_name": None}
        self.application = {"id": bot_id, "name": "Gateway Test", "flags": application_flags, "bot_public": False}
        self.session_start = {"total": 1000, "remaining": session_start_remaining,
                              "reset_after": session_start_reset_after_ms, "max_concurrency": 1}
        self.upload_limit = upload_limit
        everyone = VIEW_CHANNEL | SEND_MESSAGES
        self.guilds: dict[str, dict[str, Any]] = {
            "400": {"id": "400", "name": "Test Server", "owner_id": "1",
                    "roles": [{"id": "400", "name": "@everyone", "permissions": str(everyone)}]}}
        self.members: dict[tuple[str, str], dict[str, Any]] = {("400", bot_id): {"user": self.bot_user, "roles": []}}
        self.channels: dict[str, dict[str, Any]] = {
            "300": {"id": "300", "type": 0, "guild_id": "400", "name": "general", "permission_overwrites": []},
            "310": {"id": "310", "type": 11, "guild_id": "400", "parent_id": "300", "name": "a-thread"},
        }
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict[str, Any]] = []  # messages created through REST, as returned
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats: list[int | None] = []
        self.client_close_codes: list[int | None] = []
        self.connections: list[_Conn] = []
        self.replayed = 0
        self.buckets: dict[str, FakeBucket] = {}
        self._failures: dict[str, deque[Callable[[], web.Response]]] = defaultdict(deque)
        self._session: _Session | None = None
        self._session_ids = itertools.count(1)
        self._ids = itertools.count(900_000)
        self._dm_ids = itertools.count(600)
        self._dm_channels: dict[str, str] = {}
        self._changed: anyio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> DiscordFake:
        self._changed = anyio.Event()
        app = web.Application(middlewares=[self._middleware])
        api = API_PREFIX
        app.router.add_get(f"{api}/users/@me", self._get_me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._get_application)
        app.router.add_get(f"{api}/gateway/bot", self._get_gateway_bot)
        app.router.add_post(f"{api}/users/@me/channels", self._create_dm)
        app.router.add_get(f"{api}/channels/{{channel_id}}", self._get_channel)
        app.router.add_post(f"{api}/channels/{{channel_id}}/messages", self._create_message)
        app.router.add_get(f"{api}/guilds/{{guild_id}}", self._get_guild)
        app.router.add_get(f"{api}/guilds/{{guild_id}}/members/{{user_id}}", self._get_member)
        app.router.add_get(GATEWAY_PATH, self._gateway)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for conn in self.connections:
            if not conn.closed:
                conn.closed_by = "server"
                self._abort(conn)
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    # --- waiting ----------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever the fake sees something."""
        with anyio.fail_after(timeout):
            while not predicate():
                assert self._changed is not None
                await self._changed.wait()

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a client holds a session (READY or RESUMED sent)."""
        await self.wait_for(lambda: self._session is not None and self._session.conn is not None, timeout)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    @property
    def identify_count(self) -> int:
        return len(self.identifies)

    @property
    def resume_count(self) -> int:
        return len(self.resumes)

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session else None

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # --- gateway controls ---------------------------------------------------------------------

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        """Send a dispatch in the current session (buffered for replay); returns its sequence."""
        session = self._session
        if session is None:
            raise RuntimeError("no gateway session yet: wait for the client to identify first")
        seq = session.next_seq()
        session.events.append((seq, event, data))
        self._notify()
        conn = session.conn
        if conn is not None:
            async with conn.lock:
                if session.conn is conn:
                    await conn.send_unlocked({"op": 0, "t": event, "s": seq, "d": data})
        return seq

    def message_payload(self, content: str = "hello", *, channel_id: str = "300", guild_id: str | None = "400",
                        author_id: str = "500", username: str = "alice", **extra: Any) -> dict[str, Any]:
        """A MESSAGE_CREATE ``d`` object (a DM when ``guild_id`` is None)."""
        data: dict[str, Any] = {
            "id": str(next(self._ids)), "channel_id": channel_id,
            "author": {"id": author_id, "username": username, "discriminator": "0", "global_name": username.title()},
            "content": content, "timestamp": "2026-11-25T10:00:00+00:00", "attachments": [], "embeds": [],
            "mentions": [], "mention_roles": [], "type": 0, "tts": False, "pinned": False}
        if guild_id is not None:
            data["guild_id"] = guild_id
        data.update(extra)
        return data

    async def drop_connection(self) -> None:
        """Cut the TCP connection without a close frame (the session stays resumable)."""
        conn = self._live_conn()
        conn.closed_by = "drop"
        self._detach(conn)
        self._abort(conn)

    async def close_with(self, code: int, reason: str = "") -> None:
        """Close the gateway connection with ``code`` (codes that end sessions invalidate it)."""
        conn = self._live_conn()
        await self._close(conn, code, reason)

    def withhold_acks(self, enabled: bool = True) -> None:
        """Stop (or resume) answering heartbeats on the current connection."""
        self._live_conn().withhold_acks = enabled

    async def send_reconnect(self) -> None:
        await self._live_conn().send({"op": 7, "d": None})

    async def request_heartbeat(self) -> None:
        await self._live_conn().send({"op": 1, "d": None})

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        conn = self._live_conn()
        if not resumable and conn.session is not None:
            conn.session.valid = False
        await conn.send({"op": 9, "d": resumable})

    def _live_conn(self) -> _Conn:
        live = [c for c in self.connections if not c.closed]
        if not live:
            raise RuntimeError("no open gateway connection")
        return live[-1]

    def _detach(self, conn: _Conn) -> None:
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        conn.closed = True
        self._notify()

    @staticmethod
    def _abort(conn: _Conn) -> None:
        transport = conn.request.transport
        if transport is not None:
            transport.abort()

    async def _close(self, conn: _Conn, code: int, reason: str = "") -> None:
        conn.closed_by = "server"
        if code in _SESSION_ENDING_CODES and conn.session is not None:
            conn.session.valid = False
        self._detach(conn)
        with anyio.move_on_after(2):
            await conn.ws.close(code=code, message=reason.encode())

    # --- gateway server -----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws=ws, request=request, query=dict(request.query))
        self.connections.append(conn)
        self._notify()
        await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._on_client_payload(conn, json.loads(msg.data))
        finally:
            if conn.closed_by is None:
                self.client_close_codes.append(ws.close_code)
                if ws.close_code in (1000, 1001) and conn.session is not None:
                    conn.session.valid = False  # a clean close ends the session, as on Discord
            self._detach(conn)
        return ws

    async def _on_client_payload(self, conn: _Conn, payload: Mapping[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats.append(data)
            self._notify()
            if not conn.withhold_acks:
                await conn.send({"op": 11})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})

    async def _identify(self, conn: _Conn, data: Mapping[str, Any]) -> None:
        self.identifies.append(dict(data))
        self._notify()
        if data.get("token") != self.token:
            await self._close(conn, 4004, "Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        for intent, flags in _PRIVILEGED_INTENTS.items():
            if intents & intent and not self.application["flags"] & (flags[0] | flags[1]):
                await self._close(conn, 4014, "Disallowed intent(s).")
                return
        if self._session is not None:
            self._session.valid = False
        session = self._session = _Session(id=f"sess{next(self._session_ids)}")
        self.session_start["remaining"] = max(0, self.session_start["remaining"] - 1)
        ready = {"v": 10, "user": self.bot_user, "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
                 "session_id": session.id, "resume_gateway_url": self.gateway_url,
                 "application": {"id": self.application["id"], "flags": self.application["flags"]}}
        events = [("READY", ready)] + [("GUILD_CREATE", self._guild_create(g)) for g in self.guilds]
        async with conn.lock:
            conn.session, session.conn = session, conn
            for name, event in events:
                seq = session.next_seq()
                session.events.append((seq, name, event))
                await conn.send_unlocked({"op": 0, "t": name, "s": seq, "d": event})
        self._notify()

    async def _resume(self, conn: _Conn, data: Mapping[str, Any]) -> None:
        self.resumes.append(dict(data))
        self._notify()
        if data.get("token") != self.token:
            await self._close(conn, 4004, "Authentication failed.")
            return
        session = self._session
        if session is None or not session.valid or session.id != data.get("session_id"):
            await conn.send({"op": 9, "d": False})
            return
        last = int(data.get("seq") or 0)
        async with conn.lock:
            # Replay until caught up: dispatches arriving meanwhile are only buffered.
            while pending := [e for e in session.events if e[0] > last]:
                for seq, name, event in pending:
                    await conn.send_unlocked({"op": 0, "t": name, "s": seq, "d": event})
                    last = seq
                    self.replayed += 1
            if session.conn is not None and session.conn is not conn:
                session.conn.session = None
            conn.session, session.conn = session, conn
            await conn.send_unlocked({"op": 0, "t": "RESUMED", "s": session.next_seq(), "d": {}})
        self._notify()

    def _guild_create(self, guild_id: str) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        mine = [c for c in self.channels.values() if c.get("guild_id") == guild_id]
        return {**guild, "unavailable": False,
                "channels": [c for c in mine if c.get("type") not in (10, 11, 12)],
                "threads": [c for c in mine if c.get("type") in (10, 11, 12)]}

    # --- REST controls -------------------------------------------------------------------------

    def set_bucket(self, route: str, *, remaining: int, reset_after: float, limit: int = 5,
                   bucket: str = "fakebucket") -> FakeBucket:
        """From the next request on ``route`` (``"POST /channels/300/messages"``), report this bucket.

        That request is served and answered with ``X-RateLimit-Remaining: remaining`` and
        ``Reset-After: reset_after``; requests beyond the window's budget get a 429.
        """
        state = self.buckets[route] = FakeBucket(limit=limit, remaining=remaining, reset_after=reset_after,
                                                 name=bucket)
        return state

    def fail_next(self, route: str, status: int, body: Any = None, headers: Mapping[str, str] | None = None,
                  *, times: int = 1) -> None:
        """Answer the next ``times`` requests on ``route`` with this status instead of serving them."""
        for _ in range(times):
            self._failures[route].append(
                lambda: web.json_response(body if body is not None else {"message": "fake failure", "code": 0},
                                          status=status, headers=dict(headers or {})))

    def rate_limit_next(self, route: str, retry_after: float, *, is_global: bool = False) -> None:
        """Answer the next request on ``route`` with a 429, global or for the route's bucket."""
        headers = {"Retry-After": str(max(1, int(retry_after + 0.999))),
                   "X-RateLimit-Scope": "global" if is_global else "user"}
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update({"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": "fakebucket"})
        self.fail_next(route, 429, {"message": "You are being rate limited.", "retry_after": retry_after,
                                    "global": is_global}, headers)

    def add_channel(self, channel_id: str, *, type: int = 0, guild_id: str | None = "400", **extra: Any) -> None:
        self.channels[channel_id] = {"id": channel_id, "type": type, "guild_id": guild_id,
                                     "permission_overwrites": [], **extra}

    # --- REST server ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        record = RecordedRequest(request.method, request.path[len(API_PREFIX):], dict(request.headers),
                                 time.monotonic())
        self.requests.append(record)
        request[_RECORD] = record
        route = record.route
        try:
            if request.headers.get("Authorization") != f"Bot {self.token}":
                response: web.StreamResponse = web.json_response({"message": "401: Unauthorized", "code": 0},
                                                                 status=401)
            elif self._failures.get(route):
                response = self._failures[route].popleft()()
            else:
                response = self._take_bucket(route) or await handler(request)
        except web.HTTPException as exc:
            response = web.json_response({"message": exc.reason, "code": 0}, status=exc.status)
        self._bucket_headers(route, response)
        record.status = response.status
        self._notify()
        return response

    def _take_bucket(self, route: str) -> web.Response | None:
        bucket = self.buckets.get(route)
        if bucket is None:
            return None
        now = time.monotonic()
        if bucket.armed:
            bucket.armed = False
            bucket.reset_at = now + bucket.reset_after
            bucket.resets.append(bucket.reset_at)
            return None
        assert bucket.reset_at is not None
        if now >= bucket.reset_at:
            bucket.remaining = bucket.limit
            bucket.reset_at = now + bucket.reset_after
            bucket.resets.append(bucket.reset_at)
        if bucket.remaining <= 0:
            bucket.rejected += 1
            retry_after = bucket.reset_at - now
            return web.json_response({"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                                      "global": False}, status=429,
                                     headers={"Retry-After": str(int(retry_after + 0.999)),
                                              "X-RateLimit-Scope": "user"})
        bucket.remaining -= 1
        return None

    def _bucket_headers(self, route: str, response: web.StreamResponse) -> None:
        bucket = self.buckets.get(route)
        if bucket is None or bucket.reset_at is None or "X-RateLimit-Bucket" in response.headers:
            return
        reset_after = max(0.0, bucket.reset_at - time.monotonic())
        response.headers.update({
            "X-RateLimit-Limit": str(bucket.limit), "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}", "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": bucket.name})

    async def _get_me(self, request: web.Request) -> web.Response:
        return web.json_response(self.bot_user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return web.json_response({**self.application, "bot": self.bot_user})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return web.json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": dict(self.session_start)})

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        request[_RECORD].body = body
        user_id = str(body.get("recipient_id"))
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel_id = self._dm_channels[user_id] = str(next(self._dm_ids))
            self.channels[channel_id] = {"id": channel_id, "type": 1, "guild_id": None,
                                         "recipients": [{"id": user_id, "username": f"user{user_id}"}]}
        return web.json_response(self.channels[channel_id])

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["channel_id"])
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        return web.json_response(channel)

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self.guilds.get(request.match_info["guild_id"])
        return web.json_response(guild) if guild else _error(404, 10004, "Unknown Guild")

    async def _get_member(self, request: web.Request) -> web.Response:
        member = self.members.get((request.match_info["guild_id"], request.match_info["user_id"]))
        return web.json_response(member) if member else _error(404, 10007, "Unknown Member")

    async def _create_message(self, request: web.Request) -> web.Response:
        record: RecordedRequest = request[_RECORD]
        channel = self.channels.get(request.match_info["channel_id"])
        if request.content_type == "multipart/form-data":
            record.multipart = True
            reader = await request.multipart()
            async for part in reader:
                assert isinstance(part, aiohttp.BodyPartReader)
                if part.name == "payload_json":
                    record.body = json.loads(await part.text())
                else:
                    record.files.append(UploadedFile(str(part.name), part.filename,
                                                     part.headers.get("Content-Type"), bytes(await part.read())))
        else:
            record.body = await request.json()
        payload: Mapping[str, Any] = record.body or {}
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if channel.get("deny_send"):
            return _error(403, 50013, "Missing Permissions")
        if sum(len(f.data) for f in record.files) > self.upload_limit:
            return _error(413, 40005, "Request entity too large")
        content = payload.get("content") or ""
        if len(content) > 2000:
            return _error(400, 50035, "Invalid Form Body", {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}})
        poll = payload.get("poll")
        if poll is not None and not 1 <= len(poll.get("answers", ())) <= 10:
            return _error(400, 50035, "Invalid Form Body", {"poll": {"answers": {"_errors": [
                {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 10 in length."}]}}})
        if not content and not record.files and poll is None:
            return _error(400, 50006, "Cannot send an empty message")
        reference = payload.get("message_reference")
        message: dict[str, Any] = {
            "id": str(next(self._ids)), "channel_id": channel["id"], "content": content, "author": self.bot_user,
            "timestamp": "2026-11-25T10:00:01+00:00", "embeds": [], "mentions": [], "type": 19 if reference else 0,
            "attachments": [{"id": str(next(self._ids)), "filename": f.filename, "size": len(f.data),
                             "content_type": f.content_type,
                             "url": f"{self.base_url}/attachments/{channel['id']}/{f.filename}"}
                            for f in record.files]}
        if reference:
            message["message_reference"] = {"message_id": reference.get("message_id"), "channel_id": channel["id"]}
        if poll is not None:
            message["poll"] = {**poll, "answers": [{"answer_id": i, **answer}
                                                   for i, answer in enumerate(poll["answers"], start=1)]}
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        self.messages.append(message)
        return web.json_response(message)


def _error(status: int, code: int, message: str, errors: Any = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)
