"""The Discord gateway protocol over one websocket connection.

One :class:`GatewayConnection` runs one connection: HELLO, then IDENTIFY (or RESUME when
:class:`ResumeState` allows), heartbeats with ACK tracking, and dispatches handed one by one to
a callback. It returns a :class:`Disconnect` saying how the connection ended and whether the
session can be resumed; the monitor decides what to do next.

Two sequence numbers are kept on purpose: heartbeats carry the last one *received*, while the
resume point (``ResumeState.seq``) only advances once the dispatch was *handled* (the inbound
message durably stored). Discord replays everything after the resume point, so a message that
was received but not yet stored when the socket died is delivered again, never lost.
"""

from __future__ import annotations

import json
import platform
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from yarl import URL

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11

#: Any close code other than 1000/1001 keeps the session resumable on Discord's side.
RESUMABLE_CLOSE = 4000
#: Close codes after which reconnecting cannot help (auth, shard, version, intents).
FATAL_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
#: Close codes after which the session is gone: identify afresh.
SESSION_LOST_CLOSE_CODES = frozenset({4007, 4009})


@dataclass
class ResumeState:
    """What RESUME needs. Persisted in the account store so a restart resumes too."""

    session_id: str | None = None
    resume_gateway_url: str | None = None
    seq: int | None = None

    @property
    def resumable(self) -> bool:
        return bool(self.session_id and self.resume_gateway_url and self.seq is not None)

    def clear(self) -> None:
        self.session_id = self.resume_gateway_url = self.seq = None

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "resume_gateway_url": self.resume_gateway_url, "seq": self.seq}

    @classmethod
    def from_dict(cls, value: Any) -> ResumeState:
        if not isinstance(value, dict):
            return cls()
        seq = value.get("seq")
        return cls(session_id=value.get("session_id") or None,
                   resume_gateway_url=value.get("resume_gateway_url") or None,
                   seq=seq if isinstance(seq, int) else None)


@dataclass(frozen=True)
class Dispatch:
    """One op 0 event: ``name`` is the ``t`` field (``MESSAGE_CREATE``)."""

    name: str
    data: Any
    seq: int | None


@dataclass(frozen=True)
class Disconnect:
    """How one connection ended."""

    reason: str
    #: False when the session is gone and the next connection must IDENTIFY.
    resume: bool = True
    #: True when READY or RESUMED was handled on this connection.
    handshake: bool = False
    close_code: int | None = None
    #: Set for the close codes in :data:`FATAL_CLOSE_CODES`: do not reconnect.
    fatal: bool = False


#: Handles one dispatch; returns True when the resume point should be persisted now.
DispatchHandler = Callable[[Dispatch], Awaitable[bool]]
Persist = Callable[["ResumeState"], Awaitable[None]]


def gateway_url(url: str) -> str:
    """``url`` with the version and encoding query (no compression: plain JSON text frames)."""
    return str(URL(url).update_query(v="10", encoding="json"))


class GatewayConnection:
    """Runs connections for one session state; call :meth:`run` once per connection."""

    def __init__(self, *, session: aiohttp.ClientSession, token: str, intents: int, state: ResumeState,
                 on_dispatch: DispatchHandler, persist: Persist,
                 log: structlog.typing.FilteringBoundLogger, hello_timeout: float = 30.0,
                 jitter: Callable[[], float] = random.random):
        self.state = state
        self._session = session
        self._token = token
        self._intents = intents
        self._on_dispatch = on_dispatch
        self._persist = persist
        self._log = log
        self._hello_timeout = hello_timeout
        self._jitter = jitter
        self._send_lock = anyio.Lock()
        self._end: Disconnect | None = None
        self._handshake = False
        self._awaiting_ack = False
        self._received_seq: int | None = None
        self._scope: anyio.CancelScope | None = None

    async def run(self, url: str) -> Disconnect:
        """Connect to ``url``, identify or resume, and serve until the connection ends."""
        self._end, self._handshake, self._awaiting_ack, self._scope = None, False, False, None
        self._received_seq = self.state.seq
        try:
            with anyio.fail_after(self._hello_timeout):
                ws = await self._session.ws_connect(gateway_url(url), autoping=True, heartbeat=None,
                                                    max_msg_size=64 * 1024 * 1024)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Disconnect(f"cannot connect to the gateway: {type(exc).__name__}: {exc}")
        try:
            return await self._serve(ws)
        finally:
            if not ws.closed:
                # Never 1000/1001 here: those end the session, and we want to resume it.
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await ws.close(code=RESUMABLE_CLOSE)

    # --- one connection ------------------------------------------------------------------

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> Disconnect:
        hello: dict[str, Any] | Disconnect | None = None
        with anyio.move_on_after(self._hello_timeout):
            hello = await self._next(ws)
        if isinstance(hello, Disconnect):
            return hello
        if hello is None or hello.get("op") != OP_HELLO:
            return Disconnect(f"no HELLO within {self._hello_timeout:g}s")
        interval = float(hello["d"]["heartbeat_interval"]) / 1000
        if self.state.resumable:
            self._log.info("discord.gateway.resuming", seq=self.state.seq)
            await self._send(ws, {"op": OP_RESUME, "d": {"token": self._token, "session_id": self.state.session_id,
                                                         "seq": self.state.seq}})
        else:
            self._log.info("discord.gateway.identifying", intents=self._intents)
            await self._send(ws, {"op": OP_IDENTIFY, "d": {
                "token": self._token, "intents": self._intents,
                "properties": {"os": platform.system().lower(), "browser": "switchboard", "device": "switchboard"},
            }})
        send, receive = anyio.create_memory_object_stream[Dispatch](256)
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._heartbeat, ws, interval)
                tg.start_soon(self._process, receive)
                self._finish(await self._read(ws, send))
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            send.close()
            receive.close()
        assert self._end is not None
        return self._end

    async def _read(self, ws: aiohttp.ClientWebSocketResponse,
                    dispatches: MemoryObjectSendStream[Dispatch]) -> Disconnect:
        while True:
            payload = await self._next(ws)
            if isinstance(payload, Disconnect):
                return payload
            op = payload.get("op")
            if op == OP_DISPATCH:
                seq = payload.get("s")
                if isinstance(seq, int):
                    self._received_seq = seq
                await dispatches.send(Dispatch(str(payload.get("t")), payload.get("d"), seq))
            elif op == OP_HEARTBEAT:
                await self._beat(ws)
            elif op == OP_HEARTBEAT_ACK:
                self._awaiting_ack = False
            elif op == OP_RECONNECT:
                return self._disconnect("Discord asked for a reconnect (op 7)")
            elif op == OP_INVALID_SESSION:
                resumable = bool(payload.get("d"))
                return self._disconnect(f"invalid session (op 9, resumable={str(resumable).lower()})",
                                        resume=resumable)

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | Disconnect:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                payload = json.loads(msg.data)
            except ValueError:
                return self._disconnect("undecodable gateway frame")
            return payload if isinstance(payload, dict) else self._disconnect("unexpected gateway frame")
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return self._closed(int(msg.data), msg.extra)
        if msg.type == aiohttp.WSMsgType.ERROR:
            return self._disconnect(f"websocket error: {ws.exception()!r}")
        return self._closed(ws.close_code, None)

    def _closed(self, code: int | None, reason: str | None) -> Disconnect:
        text = f"gateway closed the connection (code {code}" + (f": {reason}" if reason else "") + ")"
        if code in FATAL_CLOSE_CODES:
            return self._disconnect(text, resume=False, close_code=code, fatal=True)
        return self._disconnect(text, resume=code not in SESSION_LOST_CLOSE_CODES, close_code=code)

    async def _process(self, dispatches: MemoryObjectReceiveStream[Dispatch]) -> None:
        async for event in dispatches:
            if event.name == "READY" and isinstance(event.data, dict):
                self.state.session_id = event.data.get("session_id")
                self.state.resume_gateway_url = event.data.get("resume_gateway_url")
            persist = await self._on_dispatch(event)
            if event.seq is not None:
                self.state.seq = event.seq
            if event.name in ("READY", "RESUMED"):
                self._handshake = persist = True
            if persist:
                await self._persist(self.state)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        await anyio.sleep(interval * self._jitter())
        while True:
            if self._awaiting_ack:
                self._finish(self._disconnect(f"no heartbeat ACK within {interval:g}s (zombie connection)"))
                return
            await self._beat(ws)
            await anyio.sleep(interval)

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._awaiting_ack = True
        await self._send(ws, {"op": OP_HEARTBEAT, "d": self._received_seq})

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, payload: dict[str, Any]) -> None:
        try:
            async with self._send_lock:
                await ws.send_str(json.dumps(payload))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self._finish(self._disconnect(f"gateway send failed: {type(exc).__name__}: {exc}"))

    def _disconnect(self, reason: str, *, resume: bool = True, close_code: int | None = None,
                    fatal: bool = False) -> Disconnect:
        return Disconnect(reason, resume=resume, handshake=self._handshake, close_code=close_code, fatal=fatal)

    def _finish(self, end: Disconnect) -> None:
        """Record how the connection ended (the first reason wins) and stop its tasks."""
        if self._end is None:
            self._end = end
        if self._scope is not None:
            self._scope.cancel()


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
