"""Delivery: per-account lanes that send queued messages, FIFO per target, with retries.

Each account has a FIFO queue per target, and up to ``max_in_flight`` *lanes* (tasks) that
serve the targets with work, one message of one target at a time: targets interleave, a
target's messages never overtake each other. Lanes exist only while there is work.

Per attempt: wait until the account is connected (``supervisor.wait_running``; a message
whose account left the configuration is dead-lettered), honour the account's rate-limit
pause, then send the parts not yet delivered, committing each part's result before the
next part goes out. Outcomes are classified by :mod:`gateway.errors`:

* :class:`RateLimited` -- the whole account pauses for ``retry_after``; no attempt is used;
* permanent errors (``is_permanent``) -- dead letters, with the reason and error code;
* anything else -- retried with backoff (``gateway.outbox.retry_*``) up to ``max_attempts``;
  :class:`AccountUnavailable` waits the same way without using an attempt.

At-least-once: a lane never starts a send before the previous part's result is committed,
so a crash can repeat at most one part per lane (the one in flight).
"""

from __future__ import annotations

import builtins
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskGroup

from gateway.backoff import Backoff
from gateway.errors import (
    AccountUnavailable,
    DeliveryError,
    InvalidRequest,
    RateLimited,
    SwitchboardError,
    UnknownAccount,
    is_permanent,
)
from gateway.outbound.media import MediaSource, SessionFactory, load_media
from gateway.outbound.model import DEAD, DELIVERED, PENDING, SENDING, AccountRemoved
from gateway.outbound.plan import account_media_limits, poll_from_json
from gateway.outbound.store import Job, OutboxStore
from gateway.plugin import (
    AccountContext,
    AccountKey,
    MediaPayload,
    OutboundAdapter,
    ProviderPlugin,
    ResolvedAccount,
    SendOptions,
    SendResult,
)
from gateway.secrets import redact_account

if TYPE_CHECKING:
    from gateway.app import Gateway

log = structlog.get_logger("gateway.outbound")

#: Lanes per account unless the plugin's outbound adapter sets ``max_in_flight``.
DEFAULT_MAX_IN_FLIGHT = 32
#: How often a lane waiting for a stopped account checks that the account still exists.
ACCOUNT_RECHECK_S = 2.0
#: ``last_outbound_at`` in the account's status is refreshed at most this often.
STATUS_TOUCH_EVERY_S = 1.0
#: Shortest pause after a rate limit that gave no (or a zero) ``retry_after``.
MIN_RATE_LIMIT_PAUSE_S = 0.05

_DONE, _AGAIN, _STOPPED = "done", "again", "stopped"


class AccountLanes:
    """One account's queues: per-target FIFO, served by up to ``max_lanes`` lanes.

    Invariant: a target has an entry in ``queues`` exactly while it is scheduled -- in
    ``ready``, held by a lane, or waiting for a retry timer.
    """

    __slots__ = ("dead", "delivered", "key", "lanes", "latency", "max_lanes", "outbound", "paused_until", "plugin",
                 "queues", "rate_limited", "ready", "retried", "touched_at", "unreported", "waiting")

    def __init__(self, key: AccountKey, plugin: ProviderPlugin, metrics: Any):
        assert plugin.outbound is not None
        self.key = key
        self.plugin = plugin
        self.outbound: OutboundAdapter = plugin.outbound
        self.queues: dict[str, deque[Job]] = {}
        self.ready: deque[str] = deque()
        self.lanes = 0
        self.max_lanes = max(1, int(getattr(plugin.outbound, "max_in_flight", DEFAULT_MAX_IN_FLIGHT)))
        self.paused_until = 0.0
        self.waiting = False
        self.touched_at = -math.inf
        self.delivered = metrics.outbound.labels(key.provider, key.account, "delivered")
        self.dead = metrics.outbound.labels(key.provider, key.account, "dead")
        self.retried = metrics.outbound.labels(key.provider, key.account, "retried")
        self.rate_limited = metrics.rate_limit_waits.labels(key.provider, key.account)
        self.latency = metrics.delivery_latency
        #: Deliveries not yet added to ``delivered``: while other lanes of the account are
        #: sending, the counter is bumped once a second or when a lane stops, not per message.
        self.unreported = 0

    def report(self) -> None:
        if self.unreported:
            self.delivered.inc(self.unreported)
            self.unreported = 0


class Dispatcher:
    """Runs the lanes of every account. ``on_finished(job)`` is told of every delivered or
    dead job and returns ``False`` if the job was dropped meanwhile."""

    def __init__(self, gateway: Gateway, store: OutboxStore, *, session: SessionFactory,
                 on_finished: Callable[[Job], bool]):
        self.gateway = gateway
        self.store = store
        self._session = session
        self._on_finished = on_finished
        self._accounts: dict[AccountKey, AccountLanes] = {}
        self._tg: TaskGroup | None = None
        self.dispatching = False
        self._lanes = 0
        self._lanes_idle: anyio.Event | None = None
        self._interruptible: set[anyio.CancelScope] = set()

    def start(self, tg: TaskGroup) -> None:
        """Begin sending (the gateway runs: every configured account has a runner)."""
        self._tg = tg
        self.dispatching = True
        for account in builtins.list(self._accounts.values()):
            self._kick(account)

    async def stop(self) -> None:
        """Start no new send; wait for the sends in flight to finish."""
        self.dispatching = False
        for scope in builtins.list(self._interruptible):
            scope.cancel()
        while self._lanes:
            self._lanes_idle = anyio.Event()
            await self._lanes_idle.wait()

    def enqueue(self, job: Job) -> bool:
        """Queue ``job`` behind its target's earlier messages; ``False`` if nothing can send it."""
        account = self._account(job.key)
        if account is None:
            return False
        queue = account.queues.get(job.target_str)
        if queue is None:
            queue = account.queues[job.target_str] = deque()
            account.ready.append(job.target_str)
        queue.append(job)
        self._kick(account)
        return True

    def remove(self, job: Job) -> None:
        """Take a dropped job out of its queue (a lane holding it lets go after its part)."""
        account = self._accounts.get(job.key)
        queue = account.queues.get(job.target_str) if account is not None else None
        if queue is not None and not job.in_lane and job in queue:
            queue.remove(job)

    # --- lanes ---------------------------------------------------------------------------------

    def _account(self, key: AccountKey) -> AccountLanes | None:
        account = self._accounts.get(key)
        if account is None:
            try:
                plugin = self.gateway.registry.get_plugin(key.provider)
            except SwitchboardError:
                return None
            if plugin.outbound is None:
                return None
            account = self._accounts[key] = AccountLanes(key, plugin, self.gateway.metrics)
        return account

    def _kick(self, account: AccountLanes) -> None:
        if not self.dispatching or self._tg is None:
            return
        wanted = min(account.max_lanes, len(account.queues))
        while account.ready and account.lanes < wanted and not account.waiting:
            account.lanes += 1
            self._lanes += 1
            self._tg.start_soon(self._lane, account)

    async def _lane(self, account: AccountLanes) -> None:
        supervisor = self.gateway.supervisor
        try:
            while self.dispatching and account.ready:
                ctx = supervisor.context(account.key)
                if ctx is None:
                    if account.waiting:
                        return  # another lane waits for the account and kicks us again
                    ctx = await self._wait_for_account(account)
                    if ctx is None and self.dispatching and account.ready:
                        await self._dead_letter_head(account, AccountRemoved(
                            f"account {account.key} was removed from the configuration"))
                    self._kick(account)
                    continue
                pause = account.paused_until - time.monotonic()
                if pause > 0:
                    with _Interruptible(self._interruptible):
                        await anyio.sleep(pause)
                    continue
                target = account.ready.popleft()
                queue = account.queues.get(target)
                if not queue:
                    account.queues.pop(target, None)
                    continue
                job = queue[0]
                job.in_lane = True
                try:
                    if self._sends_last_text(job):
                        # The common attempt (the last part, a text, the row durable), inlined:
                        # the same steps as _attempt, one coroutine frame fewer on each of the
                        # HTTP call's resumptions.
                        job.attempts += 1
                        job.state = SENDING
                        index = len(job.results)
                        opts = SendOptions(reply_to=job.reply_to if index == 0 else None, thread=job.thread,
                                           delivery_id=f"{job.id}:{index}")
                        try:
                            result = await account.outbound.send_text(ctx, job.target, job.parts[index]["text"],
                                                                      opts)
                            job.add_result(result)
                        except RateLimited as exc:
                            outcome = self._rate_limited(account, job, exc)
                        except Exception as exc:  # noqa: BLE001 - every failure is classified
                            outcome = await self._failed(account, job, exc)
                        else:
                            outcome = await self._delivered(account, job)
                    else:
                        outcome = await self._attempt(account, job, ctx)
                finally:
                    job.in_lane = False
                self._reschedule(account, target, queue, job, outcome)
        finally:
            account.report()
            account.lanes -= 1
            self._lanes -= 1
            if self._lanes == 0 and self._lanes_idle is not None:
                self._lanes_idle.set()

    def _reschedule(self, account: AccountLanes, target: str, queue: deque[Job], job: Job,
                    outcome: str | float) -> None:
        if outcome == _DONE:
            if queue and queue[0] is job:
                queue.popleft()
            if queue:
                account.ready.append(target)  # to the back: targets take turns
            elif account.queues.get(target) is queue:
                del account.queues[target]
        elif outcome in (_AGAIN, _STOPPED):
            account.ready.appendleft(target)
        else:
            assert self._tg is not None and isinstance(outcome, float)
            self._tg.start_soon(self._resume_target, account, target, outcome)

    async def _resume_target(self, account: AccountLanes, target: str, delay: float) -> None:
        await anyio.sleep(delay)
        account.ready.append(target)
        self._kick(account)

    async def _wait_for_account(self, account: AccountLanes) -> AccountContext | None:
        """The account's context once it is connected; ``None`` if it left the configuration."""
        supervisor = self.gateway.supervisor
        account.waiting = True
        logged = False
        try:
            with _Interruptible(self._interruptible):
                while True:
                    ctx = supervisor.context(account.key)
                    if ctx is not None:
                        return ctx
                    if account.key not in self.gateway.config.accounts:
                        return None
                    if not logged:
                        log.info("outbox.waiting_for_account", provider=account.key.provider,
                                 account=account.key.account, queued=sum(len(q) for q in account.queues.values()))
                        logged = True
                    with anyio.move_on_after(ACCOUNT_RECHECK_S):
                        try:
                            return await supervisor.wait_running(account.key)
                        except UnknownAccount:  # removed from the configuration meanwhile
                            if account.key not in self.gateway.config.accounts:
                                return None
                            await anyio.sleep(ACCOUNT_RECHECK_S)  # removed, then added back
                        except KeyError:  # no runner yet (added by a reload a moment ago)
                            await anyio.sleep(ACCOUNT_RECHECK_S)
            return None
        finally:
            account.waiting = False

    # --- one attempt -------------------------------------------------------------------------------

    async def _attempt(self, account: AccountLanes, job: Job, ctx: AccountContext) -> str | float:
        journal = self.store.journal
        if job.accepted is not None:  # never send before the row is durable
            batch, index = job.accepted
            await journal.wait(batch)
            job.accepted = None
            if batch.error(index) is not None:
                job.dropped = True  # deliver() reports the failure to its caller
        if job.dropped:
            return _DONE
        # "sending" and the attempt count reach the table with the first part's result (or
        # the failure): one write per part, not two. Until then the row says "pending",
        # which is what a restart would make of it anyway.
        job.attempts += 1
        job.state = SENDING
        last = len(job.parts) - 1
        try:
            for index in range(len(job.results), len(job.parts)):
                if job.dropped:
                    return _DONE
                if not self.dispatching:
                    return self._interrupted(job)
                part = job.parts[index]
                opts = SendOptions(reply_to=job.reply_to if index == 0 else None, thread=job.thread,
                                   delivery_id=f"{job.id}:{index}")
                text = part.get("text")
                # Text inline: every extra coroutine frame is paid again on each resumption.
                if text is not None:
                    result = await account.outbound.send_text(ctx, job.target, text, opts)
                else:
                    result = await self._send_other(account, job, index, part, ctx, opts)
                job.add_result(result)
                if index < last:
                    job.updated = time.time()
                    # Durable before the next part goes out: a restart resumes after it.
                    await journal.commit(job.save_statement())
        except RateLimited as exc:
            return self._rate_limited(account, job, exc)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            return await self._failed(account, job, exc)
        return await self._delivered(account, job)

    def _sends_last_text(self, job: Job) -> bool:
        """Whether ``_attempt`` would go straight to sending one text part, the job's last
        (its row committed, nothing dropped, still dispatching): what ``_lane`` inlines."""
        if job.accepted is not None:
            batch, index = job.accepted
            if not batch.committed:
                return False  # _attempt waits for the commit
            job.accepted = None
            if batch.error(index) is not None:
                job.dropped = True  # deliver() reports the failure to its caller
        return (not job.dropped and self.dispatching and len(job.results) == len(job.parts) - 1
                and job.parts[-1].get("text") is not None)

    async def _delivered(self, account: AccountLanes, job: Job) -> str:
        """Every part was sent: commit "delivered", then report it."""
        if job.dropped:
            return _DONE
        job.updated = time.time()
        # The job says "delivered" only once the table does (get() never runs ahead of it),
        # and this lane sends nothing more until then.
        await self.store.journal.commit(job.final_statement(DELIVERED, None, None))
        job.state, job.last_error, job.error_code = DELIVERED, None, None
        self._finished(account, job)
        return _DONE

    async def _send_other(self, account: AccountLanes, job: Job, index: int, part: dict[str, Any],
                          ctx: AccountContext, opts: SendOptions) -> SendResult:
        """A media or poll part (text is sent inline by ``_attempt``)."""
        outbound = account.outbound
        if "media" in part:
            payload = await self._media(account, job, index, part["media"])
            result = await outbound.send_media(ctx, job.target, payload, part.get("caption"), opts)
            if job.media:
                job.media.pop(index, None)
            return result
        return await outbound.send_poll(ctx, job.target, poll_from_json(part["poll"]), opts)

    async def _media(self, account: AccountLanes, job: Job, index: int, data: dict[str, Any]) -> MediaPayload:
        """The bytes loaded at acceptance, or the reference loaded again (after a restart)."""
        payload = job.media.get(index) if job.media else None
        if payload is not None:
            return payload
        resolved = self.gateway.config.accounts.get(job.key)
        if resolved is None:
            raise AccountRemoved(f"account {job.key} was removed from the configuration")
        source = MediaSource.from_json(data)
        try:
            payload = await load_media(source, account_media_limits(account.plugin, resolved), self._session)
        except InvalidRequest as exc:
            if source.scheme == "path":
                raise InvalidRequest(f"{exc} (it was readable when the message was accepted)") from None
            raise
        if job.media is None:
            job.media = {}
        job.media[index] = payload
        return payload

    def _rate_limited(self, account: AccountLanes, job: Job, exc: RateLimited) -> str:
        pause = max(exc.retry_after, MIN_RATE_LIMIT_PAUSE_S)
        account.paused_until = max(account.paused_until, time.monotonic() + pause)
        account.rate_limited.inc()
        job.attempts -= 1  # the provider asked us to wait: not a failed attempt
        job.state, job.last_error, job.error_code = PENDING, str(exc), RateLimited.code
        job.updated = time.time()
        self.store.journal.queue(job.save_statement())
        log.info("outbox.rate_limited", provider=job.key.provider, account=job.key.account,
                 retry_after_s=round(pause, 3))
        return _AGAIN

    def _interrupted(self, job: Job) -> str:
        job.attempts -= 1
        job.state = PENDING
        job.updated = time.time()
        self.store.journal.queue(job.save_statement())
        return _STOPPED

    async def _failed(self, account: AccountLanes, job: Job, exc: Exception) -> str | float:
        reason = _reason(exc, self.gateway.config.accounts.get(job.key))
        code = getattr(exc, "code", None) if isinstance(exc, SwitchboardError) else "transient"
        if not self.dispatching and not is_permanent(exc):
            return self._interrupted(job)  # cut off by the shutdown
        if is_permanent(exc):
            await self._dead_letter(account, job, reason, code or "permanent")
            return _DONE
        config = self.gateway.config.gateway.outbox
        if isinstance(exc, AccountUnavailable):
            job.attempts -= 1  # the message waits for the account; it has not failed
        elif job.attempts >= config.max_attempts:
            await self._dead_letter(account, job, f"gave up after {job.attempts} attempts: {reason}",
                                    code or "transient")
            return _DONE
        job.state, job.last_error, job.error_code = PENDING, reason, code
        job.updated = time.time()
        self.store.journal.queue(job.save_statement())
        account.retried.inc()
        delay = Backoff(config.retry_initial_ms / 1000, config.retry_max_ms / 1000).delay(max(1, job.attempts))
        log.warning("outbox.retry", id=job.id, provider=job.key.provider, account=job.key.account,
                    attempt=job.attempts, retry_in_s=round(delay, 3), error=reason)
        return delay

    async def _dead_letter(self, account: AccountLanes, job: Job, reason: str, code: str) -> None:
        job.updated = time.time()
        await self.store.journal.commit(job.final_statement(DEAD, reason, code))
        job.state, job.last_error, job.error_code = DEAD, reason, code
        self._finished(account, job)

    async def _dead_letter_head(self, account: AccountLanes, error: DeliveryError) -> None:
        target = account.ready.popleft()
        queue = account.queues.get(target)
        if not queue:
            account.queues.pop(target, None)
            return
        job = queue[0]
        await self._dead_letter(account, job, str(error), error.code)
        self._reschedule(account, target, queue, job, _DONE)

    def _finished(self, account: AccountLanes, job: Job) -> None:
        if not self._on_finished(job):
            return  # dropped meanwhile
        if job.state == DELIVERED:
            account.unreported += 1
            account.latency.observe(max(0.0, job.updated - job.created))
            now = time.monotonic()
            if now - account.touched_at >= STATUS_TOUCH_EVERY_S:  # a status update per message is costly
                account.touched_at = now
                account.report()
                self.gateway.status.touch(job.key, "last_outbound_at")
            elif account.lanes <= 1:  # nothing else in flight: the counter is exact at once
                account.report()
        else:
            account.dead.inc()


class _Interruptible:
    """A cancel scope that :meth:`Dispatcher.stop` cancels: waits that must not delay shutdown."""

    def __init__(self, scopes: set[anyio.CancelScope]):
        self._scopes = scopes
        self._scope = anyio.CancelScope()

    def __enter__(self) -> anyio.CancelScope:
        self._scopes.add(self._scope)
        return self._scope.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        self._scopes.discard(self._scope)
        return bool(self._scope.__exit__(*exc))


def _reason(exc: BaseException, resolved: ResolvedAccount | None) -> str:
    text = str(exc) if isinstance(exc, SwitchboardError) else f"{type(exc).__name__}: {exc}"
    return redact_account(text, resolved) if resolved is not None else text
