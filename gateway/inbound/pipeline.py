"""The inbound pipeline: dedupe, access policy, the durable inbox, and handler dispatch.

``accept`` (what ``ctx.emit`` calls) runs synchronously against SQLite up to the point the
message is stored, so a provider that acknowledges after ``emit`` returns never loses one.
Dispatch then runs one task per active chat ("lane"): messages of one chat are handled
strictly in order, while chats of one account share ``handler.concurrency`` slots. A failed
attempt leaves the message in the inbox and blocks its chat until a retry succeeds or the
message is parked as ``failed`` after ``handler.max_attempts``; the slot is released while
it waits. The handler configuration is read for every attempt, so a reload applies at once.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import structlog
from anyio.abc import TaskGroup

from gateway.backoff import Backoff
from gateway.config.model import HandlerConfig
from gateway.errors import UnknownAccount, UnknownProvider, is_permanent
from gateway.inbound.handlers import Handler, HandlerEnv, HandlerError, build_handler
from gateway.inbound.inbox import Inbox, InboxEntry
from gateway.inbound.messages import Reply, from_envelope, to_envelope
from gateway.inbound.pairing import PairingRequest, PairingStore
from gateway.inbound.policy import Decision, evaluate
from gateway.inbound.replies import DeliverySink, NoOutbox, ReplySender, reply_key, reply_target
from gateway.plugin import AccountConfig, AccountKey, InboundMessage, StatusIssue

if TYPE_CHECKING:
    from gateway.app import Gateway

log = structlog.get_logger("gateway.inbound")

PRUNE_EVERY_S = 3600.0
_LaneId = tuple[AccountKey, str]


def pairing_text(request: PairingRequest) -> str:
    return (f"Hi! This account only talks to people its operator has approved.\n"
            f"Your pairing code: {request.code}\n"
            f"Ask the operator to run: switchboard pairing approve {request.provider} {request.code}\n"
            f"The code expires in one hour.")


APPROVED_TEXT = "You are approved: your messages now reach this account."


class InboundPipeline:
    """The :class:`~gateway.app.Service` that owns the inbox, pairing and handler dispatch."""

    def __init__(self, gateway: Gateway, *, outbox: DeliverySink | None = None):
        self.gateway = gateway
        self.inbox = Inbox(gateway.db)
        self.pairing = PairingStore(gateway.db)
        self.replies = ReplySender(gateway, outbox)
        self._lanes: dict[_LaneId, deque[InboxEntry]] = {}
        self._limiters: dict[AccountKey, anyio.CapacityLimiter] = {}
        self._tg: TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dispatching = True
        self._in_flight = 0
        self._idle: anyio.Event | None = None
        self._progress: anyio.Event | None = None
        self._handler: tuple[HandlerConfig, Handler | None] | None = None
        gateway.set_inbound(self.accept)

    # --- service lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            self._session = session
            self._tg = tg
            pending = self.inbox.pending()
            for entry in pending:
                self._enqueue(entry)
            if pending:
                log.info("inbound.resumed", pending=len(pending))
            tg.start_soon(self._housekeeping)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def stop_accepting(self) -> None:
        """Shutdown: messages are still stored (providers get their ack) but no new handler call starts."""
        self._dispatching = False

    async def drain(self) -> None:
        """Wait for the handler calls in flight; what is left runs after the next start."""
        while self._in_flight:
            self._idle = self._idle or anyio.Event()
            await self._idle.wait()

    async def wait_settled(self) -> None:
        """Wait until no inbox message is pending (every one handled or parked). Unbounded:
        wrap it in a timeout."""
        while self.inbox.counts()["pending"]:
            self._progress = self._progress or anyio.Event()
            await self._progress.wait()

    def _progressed(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def api_routes(self) -> list[Any]:
        from gateway.inbound.api import routes

        return routes(self)

    # --- accept ------------------------------------------------------------------------------

    async def accept(self, message: InboundMessage) -> bool:
        """Dedupe, apply the policy, store. ``True`` when the message was queued for the handler."""
        key = AccountKey(message.provider, message.account)
        if self.inbox.seen(key.provider, key.account, message.id):
            return self._rejected(message, "duplicate", "duplicate")
        decision = self.decide(message)
        if not decision.allowed:
            self._rejected(message, "denied", decision.reason)
            if decision.pair:
                await self._offer_pairing(message)
            return False
        envelope = to_envelope(message, received_at=datetime.now(UTC))
        entry = self.inbox.insert(envelope)
        if entry is None:
            return self._rejected(message, "duplicate", "duplicate")
        self.gateway.metrics.inbound.labels(key.provider, key.account, "accepted").inc()
        self.gateway.events.publish("inbound", _event(message, "accepted", decision.reason, entry.seq))
        if self._tg is not None and self._dispatching:
            self._enqueue(entry)
        return True

    def decide(self, message: InboundMessage) -> Decision:
        """The policy decision for ``message`` under the account's configuration right now."""
        key = AccountKey(message.provider, message.account)
        resolved = self.gateway.supervisor.resolved(key) or self.gateway.config.accounts.get(key)
        if resolved is None:
            return Decision(False, "unknown_account")
        account: AccountConfig = resolved.config
        return evaluate(account, message, lambda sender_id: self.pairing.is_approved(key, sender_id))

    def _rejected(self, message: InboundMessage, result: str, reason: str) -> bool:
        self.gateway.metrics.inbound.labels(message.provider, message.account, result).inc()
        self.gateway.events.publish("inbound", _event(message, result, reason, None))
        # Group chatter without a mention is routine; every other refusal is worth a line at info.
        emit = log.debug if reason in ("not_mentioned", "duplicate") else log.info
        emit("inbound.rejected", provider=message.provider, account=message.account, message_id=message.id,
             chat_id=message.chat.id, sender_id=message.sender.id, result=result, reason=reason)
        return False

    # --- pairing -------------------------------------------------------------------------------

    async def _offer_pairing(self, message: InboundMessage) -> None:
        try:
            target = reply_target(self.gateway.registry.get_plugin(message.provider), message)
        except UnknownProvider:
            return
        offer = self.pairing.offer(message, target)
        if isinstance(offer, str):
            (log.warning if offer == "full" else log.debug)(
                "pairing.not_offered", provider=message.provider, account=message.account,
                sender_id=message.sender.id, reason=offer)
            return
        log.info("pairing.requested", provider=offer.provider, account=offer.account, sender_id=offer.sender_id,
                 sender_name=offer.sender_name, code=offer.code)
        await self._notify(offer, pairing_text(offer), f"pairing:{offer.provider}:{offer.account}:{offer.code}")

    def approve(self, provider: str, code: str) -> PairingRequest | None:
        """Approve a pending code (the sender's next message goes through); notify the sender."""
        request = self.pairing.approve(provider, code)
        if request is not None:
            log.info("pairing.approved", provider=provider, account=request.account, sender_id=request.sender_id)
            if self._tg is not None:
                self._tg.start_soon(self._notify, request, APPROVED_TEXT,
                                    f"pairing-approved:{provider}:{request.account}:{request.code}")
        return request

    def deny(self, provider: str, code: str) -> PairingRequest | None:
        request = self.pairing.deny(provider, code)
        if request is not None:
            log.info("pairing.denied", provider=provider, account=request.account, sender_id=request.sender_id)
        return request

    async def _notify(self, request: PairingRequest, text: str, idempotency_key: str) -> None:
        try:
            await self.replies.send(provider=request.provider, account=request.account, to=request.reply_target,
                                    text=text, idempotency_key=idempotency_key)
        except Exception as exc:  # noqa: BLE001 - the request stays listed; the operator still sees the code
            log.error("pairing.notify_failed", provider=request.provider, account=request.account,
                      sender_id=request.sender_id, error=f"{type(exc).__name__}: {exc}")

    # --- dispatch ------------------------------------------------------------------------------

    def _enqueue(self, entry: InboxEntry) -> None:
        assert self._tg is not None
        lane_id = (AccountKey(entry.provider, entry.account), entry.chat_id)
        lane = self._lanes.get(lane_id)
        if lane is not None:
            lane.append(entry)
            return
        lane = self._lanes[lane_id] = deque([entry])
        self._tg.start_soon(self._run_lane, lane_id, lane, name=f"inbound lane {lane_id[0]}/{entry.chat_id}")

    async def _run_lane(self, lane_id: _LaneId, lane: deque[InboxEntry]) -> None:
        try:
            while lane and self._dispatching:
                try:
                    await self._process(lane_id[0], lane[0])
                except Exception:  # noqa: BLE001 - e.g. a storage error: never take the pipeline down
                    # The message stays pending; this chat resumes at the next start.
                    log.exception("inbound.lane_failed", provider=lane_id[0].provider, account=lane_id[0].account,
                                  chat_id=lane_id[1], inbox_id=lane[0].seq)
                    return
                lane.popleft()
        finally:
            if self._lanes.get(lane_id) is lane:
                del self._lanes[lane_id]

    def _limiter(self, key: AccountKey, concurrency: int) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = anyio.CapacityLimiter(concurrency)
        elif limiter.total_tokens != concurrency:
            limiter.total_tokens = concurrency  # handler.concurrency changed on reload
        return limiter

    async def _process(self, key: AccountKey, entry: InboxEntry) -> None:
        seq = entry.seq
        attempts = entry.attempts
        while True:
            config = self.gateway.config.handler
            async with self._limiter(key, config.concurrency):
                if not self._dispatching:
                    return
                self._in_flight += 1
                try:
                    error = await self._attempt(entry, attempts + 1, config)
                finally:
                    self._in_flight -= 1
                    if not self._in_flight and self._idle is not None:
                        self._idle.set()
                        self._idle = None
            attempts += 1
            if error is None:
                self.inbox.mark_done(seq, attempts)
                self.gateway.status.set_global_issues("handler", [])
                self._progressed()
                return
            park = error.permanent or attempts >= config.max_attempts
            self._record_failure(entry, config, attempts, error, park)
            if park:
                self._progressed()
                return
            backoff = Backoff(config.retry_initial_ms / 1000, config.retry_max_ms / 1000)
            delay = max(backoff.delay(attempts), error.retry_after or 0.0)
            await anyio.sleep(delay)
            if not self._dispatching:
                return

    async def _attempt(self, entry: InboxEntry, attempt: int, config: HandlerConfig) -> HandlerError | None:
        handler = self._handler_for(config)
        if handler is None:
            return None
        try:
            replies = await handler.handle(entry.envelope, attempt=attempt)
        except HandlerError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a handler bug must never crash the pipeline
            log.exception("handler.crashed", kind=config.kind)
            return HandlerError(f"{type(exc).__name__}: {exc}")
        try:
            await self._send_replies(entry, replies)
        except (UnknownProvider, UnknownAccount) as exc:
            return HandlerError(f"reply cannot be sent: {exc}", permanent=True)
        except NoOutbox as exc:
            return HandlerError(str(exc))
        except Exception as exc:  # noqa: BLE001 - the outbox refused: permanent (bad target...) or retried
            return HandlerError(f"reply could not be queued: {type(exc).__name__}: {exc}", permanent=is_permanent(exc))
        return None

    async def _send_replies(self, entry: InboxEntry, replies: list[Reply]) -> None:
        if not replies:
            return
        message = from_envelope(entry.envelope)
        plugin = self.gateway.registry.get_plugin(message.provider)
        if plugin.outbound is None:
            log.warning("inbound.reply_dropped", provider=message.provider, account=message.account,
                        reason="the provider cannot send messages")
            return
        target = reply_target(plugin, message)
        # A poll vote is not a message one can reply to; answer the poll instead.
        reply_to = message.reply_to if message.type == "poll_vote" else message.id
        for n, reply in enumerate(replies):
            await self.replies.send(provider=message.provider, account=message.account, to=target, text=reply.text,
                                    media=reply.media, reply_to=reply_to, thread=message.thread,
                                    idempotency_key=reply_key(message, n))

    def _handler_for(self, config: HandlerConfig) -> Handler | None:
        if self._handler is None or self._handler[0] != config:
            gw = self.gateway
            env = HandlerEnv(http=self._http, base_dir=gw.config.path.parent if gw.config.path else None,
                             on_secret=lambda secret: gw.redactor.register([secret]))
            self._handler = (config, build_handler(config, env))
        return self._handler[1]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise HandlerError("the inbound pipeline is not running")
        return self._session

    def _record_failure(self, entry: InboxEntry, config: HandlerConfig, attempts: int, error: HandlerError,
                        park: bool) -> None:
        message = self.gateway.redactor(None, "", {"error": str(error)})["error"]
        self.inbox.record_failure(entry.seq, attempts, message, park=park)
        self.gateway.metrics.handler_failures.labels(config.kind).inc()
        self.gateway.status.set_global_issues("handler", [StatusIssue(
            "gateway", None, "runtime", f"handler failing: {message}",
            "check the handler (see the log); failed messages are kept in the inbox and can be retried")])
        fields = dict(provider=entry.provider, account=entry.account, message_id=entry.message_id,
                      kind=config.kind, attempt=attempts, error=message)
        if park:
            log.error("inbound.parked", **fields, max_attempts=config.max_attempts, permanent=error.permanent)
        else:
            log.warning("handler.failed", **fields)

    # --- operator actions ---------------------------------------------------------------------------

    def retry(self, seq: int) -> InboxEntry | None:
        """Put a ``failed`` message back in line (at the end of its chat's queue)."""
        entry = self.inbox.retry(seq)
        if entry is not None and self._tg is not None and self._dispatching:
            self._enqueue(entry)
        return entry

    async def _housekeeping(self) -> None:
        while True:
            pruned = self.inbox.prune()
            if pruned:
                log.info("inbound.pruned", rows=pruned)
            await anyio.sleep(PRUNE_EVERY_S)


def _event(message: InboundMessage, result: str, reason: str, seq: int | None) -> dict[str, Any]:
    return {"provider": message.provider, "account": message.account, "message_id": message.id,
            "chat_id": message.chat.id, "sender_id": message.sender.id, "type": message.type,
            "result": result, "reason": reason, "inbox_id": seq}
