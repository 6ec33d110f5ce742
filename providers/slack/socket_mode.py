"""Socket Mode on aiohttp: envelopes in, acknowledgements out, refreshes without losses.

Why not slack_sdk's SocketModeClient: see ``docs/decisions/0004-slack-socket-mode.md``.

Each websocket (a *link*) has a reader task and a worker task. The reader only parses frames
and queues envelopes, so pings keep flowing while a handler waits on the inbox; the worker runs
the handler for one envelope at a time (order kept per link) and acknowledges it on the link it
came from once the handler returned. On ``disconnect`` with ``refresh_requested``/``warning`` a
new link is opened *first*; the old one keeps being served until the new one said ``hello``,
then it is drained (queued envelopes handled and acked) and closed. An envelope that arrives
after the close started is not acked, so Slack redelivers it and the handler's dedupe absorbs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gateway.errors import AccountNotReady, ConfigInvalid

from .client import SlackClient

#: ``disconnect`` reasons after which a new link is opened before the old one is closed.
REFRESH_REASONS = frozenset({"refresh_requested", "warning"})
HELLO_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 5.0
#: How long a retiring link may take to finish the envelopes it already has.
DRAIN_TIMEOUT_S = 30.0
HEARTBEAT_S = 20.0
#: Delays before successive attempts to (re)open a link; then the supervisor takes over.
RECONNECT_DELAYS_S = (0.0, 1.0, 2.0, 5.0, 10.0)
_QUEUE_SIZE = 1000

LINK_DISABLED_FIX = ("Enable Socket Mode in the app settings (api.slack.com/apps > your app > Socket Mode), "
                     "then restart the account")


@dataclass(frozen=True)
class Envelope:
    """One Socket Mode envelope (``events_api``, ``interactive``, ``slash_commands``)."""

    id: str
    type: str
    payload: Mapping[str, Any]
    retry_attempt: int = 0
    retry_reason: str = ""


EnvelopeHandler = Callable[[Envelope], Awaitable[None]]


@dataclass(eq=False)
class _Link:
    """One websocket from ``apps.connections.open``."""

    number: int
    ws: aiohttp.ClientWebSocketResponse
    hello: anyio.Event = field(default_factory=anyio.Event)
    #: Set on ``disconnect`` or when the socket ended; ``reason`` says which.
    notice: anyio.Event = field(default_factory=anyio.Event)
    reason: str | None = None
    #: Set once the reader and the worker are both done.
    ended: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    pending: int = 0
    idle: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def took(self) -> None:
        if self.pending == 0:
            self.idle = anyio.Event()
        self.pending += 1

    def finished(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    async def wait_idle(self) -> None:
        while self.pending:
            await self.idle.wait()


class SocketModeRunner:
    """Serves Socket Mode for one account until cancelled or a fatal ``disconnect``."""

    def __init__(self, client: SlackClient, handle: EnvelopeHandler, log: Any):
        self._client = client
        self._handle = handle
        self._log = log
        self._current: _Link | None = None
        self._opened = 0

    async def run(self, on_connected: Callable[[], None]) -> None:
        """Connect, call ``on_connected`` after the first ``hello``, serve until cancelled.

        Raises :class:`ConfigInvalid` on ``link_disabled``; :class:`AccountNotReady`,
        :class:`AuthFailed` or :class:`RateLimited` when no link can be opened.
        """
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            try:
                await self._serve(tg, on_connected)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _serve(self, tg: TaskGroup, on_connected: Callable[[], None]) -> None:
        current = self._current = await self._connect(tg)
        on_connected()
        while True:
            await current.notice.wait()
            reason = current.reason or "closed"
            if reason == "link_disabled":
                raise ConfigInvalid("Socket Mode is disabled for this Slack app (Slack sent disconnect: "
                                    "link_disabled)", fix=LINK_DISABLED_FIX)
            if reason in REFRESH_REASONS:
                self._log.info("slack.socket.refresh", reason=reason, link=current.number)
            else:
                self._log.warning("slack.socket.lost", reason=reason, link=current.number)
            # The old link is still read and served while the new one is opened.
            new = await self._connect(tg)
            self._current = new
            tg.start_soon(self._retire, current)
            current = new

    async def _connect(self, tg: TaskGroup) -> _Link:
        last: AccountNotReady | None = None
        for attempt, delay in enumerate(RECONNECT_DELAYS_S, start=1):
            if delay:
                await anyio.sleep(delay)
            try:
                return await self._open(tg)
            except AccountNotReady as exc:
                last = exc
                self._log.warning("slack.socket.connect_failed", attempt=attempt, error=str(exc))
        raise AccountNotReady(f"Socket Mode: no connection after {len(RECONNECT_DELAYS_S)} attempts: {last}")

    async def _open(self, tg: TaskGroup) -> _Link:
        url = await self._client.open_socket_url()
        try:
            ws = await self._client.session.ws_connect(
                url, heartbeat=HEARTBEAT_S, timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AccountNotReady(f"Socket Mode websocket failed: {exc!r}") from None
        self._opened += 1
        link = _Link(self._opened, ws)
        tg.start_soon(self._serve_link, link)
        with anyio.move_on_after(HELLO_TIMEOUT_S):
            await _first(link.hello, link.notice)
        if not link.hello.is_set():
            link.scope.cancel()
            why = f"it ended ({link.reason})" if link.notice.is_set() else f"none within {HELLO_TIMEOUT_S:g}s"
            raise AccountNotReady(f"Socket Mode: no hello on the new connection: {why}")
        return link

    async def _serve_link(self, link: _Link) -> None:
        send, receive = anyio.create_memory_object_stream[Envelope](_QUEUE_SIZE)
        try:
            with link.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._work, link, receive)
                    await self._read(link, send)
        finally:
            link.notice.set()
            link.ended.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
                await link.ws.close()

    async def _read(self, link: _Link, send: MemoryObjectSendStream[Envelope]) -> None:
        async with send:
            try:
                while True:
                    message = await link.ws.receive()
                    if message.type is aiohttp.WSMsgType.TEXT:
                        await self._on_frame(link, message.data, send)
                    elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                          aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
            except Exception as exc:  # noqa: BLE001 - a broken socket is just a lost link
                self._log.warning("slack.socket.read_failed", link=link.number, error=repr(exc))
            finally:
                if link.reason is None:
                    link.reason = f"closed (code {link.ws.close_code})"
                link.notice.set()

    async def _on_frame(self, link: _Link, raw: str, send: MemoryObjectSendStream[Envelope]) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            self._log.warning("slack.socket.bad_frame", link=link.number, frame=raw[:200])
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "hello":
            info = frame.get("debug_info") or {}
            self._log.info("slack.socket.connected", link=link.number, num_connections=frame.get("num_connections"),
                           approximate_connection_time=info.get("approximate_connection_time"))
            link.hello.set()
        elif kind == "disconnect":
            link.reason = str(frame.get("reason") or "unknown")
            link.notice.set()
        elif frame.get("envelope_id"):
            payload = frame.get("payload")
            envelope = Envelope(id=str(frame["envelope_id"]), type=str(kind or ""),
                                payload=payload if isinstance(payload, dict) else {},
                                retry_attempt=int(frame.get("retry_attempt") or 0),
                                retry_reason=str(frame.get("retry_reason") or ""))
            link.took()
            await send.send(envelope)
        else:
            self._log.debug("slack.socket.ignored_frame", link=link.number, type=kind)

    async def _work(self, link: _Link, receive: MemoryObjectReceiveStream[Envelope]) -> None:
        async with receive:
            async for envelope in receive:
                try:
                    await self._handle(envelope)
                except Exception as exc:  # noqa: BLE001 - unacked: Slack redelivers it later
                    self._log.error("slack.envelope.failed", envelope_id=envelope.id, type=envelope.type,
                                    error=repr(exc))
                else:
                    await self._ack(link, envelope.id)
                finally:
                    link.finished()

    async def _ack(self, link: _Link, envelope_id: str) -> None:
        frame = json.dumps({"envelope_id": envelope_id})
        # The link the envelope came on first; if that one is closing, the current one.
        for candidate in dict.fromkeys((link, self._current)):
            if candidate is None or candidate.ws.closed:
                continue
            try:
                await candidate.ws.send_str(frame)
                return
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                continue
        self._log.warning("slack.envelope.ack_lost", envelope_id=envelope_id,
                          note="Slack redelivers it; the event id dedupes the copy")

    async def _retire(self, link: _Link) -> None:
        with anyio.move_on_after(DRAIN_TIMEOUT_S):
            await link.wait_idle()
        with anyio.move_on_after(CLOSE_TIMEOUT_S):
            await link.ws.close()
        with anyio.move_on_after(CLOSE_TIMEOUT_S):
            await link.ended.wait()
        link.scope.cancel()
        self._log.info("slack.socket.retired", link=link.number)


async def _first(*events: anyio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    async with anyio.create_task_group() as tg:
        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)
