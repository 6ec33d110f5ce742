"""The :class:`Outbox` service: ``deliver()`` accepts, persists and queues; lanes send.

``deliver()`` validates a request completely (:mod:`gateway.outbound.plan`), writes its
row (:mod:`gateway.outbound.store`, committed by :mod:`gateway.outbound.journal`) and
returns; :mod:`gateway.outbound.lanes` delivers it. Every unfinished message is also kept
in memory (``_jobs``), so reads of pending messages, idempotency checks and counts never
wait for the table. At startup the unfinished rows are loaded back, in acceptance order.
See ``docs/outbound.md``.
"""

from __future__ import annotations

import builtins
import itertools
import time
from collections.abc import Iterable
from contextlib import nullcontext
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import anyio
import structlog

from gateway.config import Config, load_config
from gateway.errors import DeliveryError, InvalidRequest
from gateway.outbound.lanes import Dispatcher
from gateway.outbound.model import (
    DEAD,
    DELIVERED,
    PENDING,
    STATES,
    DeliveryRecord,
    DeliveryRequest,
    OutboxClosed,
    error_for,
)
from gateway.outbound.plan import Part, Resolved, plan_delivery, plan_media_delivery, resolve
from gateway.outbound.store import (
    Job,
    OutboxStore,
    id_prefix,
    insert_many,
    is_active,
    is_final,
    make_id,
    record_from_row,
)
from gateway.registry import Registry
from gateway.store import Database

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.plugin import MediaPayload

log = structlog.get_logger("gateway.outbound")

PRUNE_EVERY_S = 300.0
RESOLVE_CACHE_SIZE = 10_000


class Outbox:
    """The outbound :class:`~gateway.app.Service`: ``deliver()`` and the dead-letter API."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.store = OutboxStore(gateway.db)
        self.lanes = Dispatcher(gateway, self.store, session=self._session, on_finished=self._finished)
        self._id_prefix = id_prefix()
        self._jobs: dict[str, Job] = {}  # pending/sending, plus jobs until their final commit
        self._claimed_keys: dict[str, Job] = {}  # idempotency keys whose insert is not committed yet
        self._http: aiohttp.ClientSession | None = None
        self._loaded = False
        self._stopping = False
        self._draining = False
        self._closed = False
        self._idle: anyio.Event | None = None
        self._unloaded = self.store.count_unfinished()
        self._dead = self.store.count_dead()
        self._defaults: tuple[Config, dict[str, str | None]] | None = None
        self._resolved_for: Config | None = None
        self._resolved: dict[tuple[str, str | None, str], Resolved] = {}
        gateway.metrics.set_outbox_source(self.counts)

    # --- the service ---------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Resume unfinished messages, then deliver until cancelled."""
        self._load()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.store.journal.run)
                tg.start_soon(self._prune_forever)
                task_status.started()
                await self.gateway.wait_running()  # accounts have runners: lanes can wait on them
                if not self._draining:
                    self.lanes.start(tg)
        finally:
            self.lanes.dispatching = False
            self._closed = True
            self._advance_low_water()
            self.store.journal.flush()
            if self._http is not None:
                with anyio.CancelScope(shield=True):
                    await self._http.close()

    def stop_accepting(self) -> None:
        """Shutdown, step 1: refuse ``deliver(wait=True)``; keep sending until :meth:`drain`.

        Requests without ``wait`` are still stored until :meth:`drain` ends: the replies of
        handler calls that finish during shutdown are kept (and sent if there is time).
        """
        self._stopping = True

    async def drain(self) -> None:
        """Shutdown, step 2 (accounts still connected): start no new send, let the sends in
        flight finish and commit every write. What is left is sent after the next start."""
        self._stopping = self._draining = True
        await self.lanes.stop()
        self.store.journal.flush()
        self._closed = True

    # --- the API -------------------------------------------------------------------------------

    async def deliver(self, request: DeliveryRequest, *, wait: bool = False,
                      timeout: float | None = None) -> DeliveryRecord:
        """Validate, persist and queue ``request``; return its record at once.

        Errors before anything is stored: :class:`~gateway.errors.UnknownProvider`,
        :class:`~gateway.errors.UnknownAccount`, :class:`~gateway.errors.TargetError`,
        :class:`~gateway.errors.InvalidRequest`, :class:`~gateway.errors.PayloadTooLarge`
        (media), :class:`OutboxClosed`. A repeated ``idempotency_key`` returns the first
        message's record and stores nothing. ``wait=True`` returns once the message is
        delivered, raises the classified error (with a ``record`` attribute) once it is
        dead, and raises ``TimeoutError`` after ``timeout`` seconds (it stays queued).
        """
        if self._closed or (wait and self._stopping):
            raise OutboxClosed("the gateway is shutting down; the message was not queued")
        resolved = self._resolve(request)
        key = request.idempotency_key
        stale = False
        if key is not None:
            found, stale = self._find_key(key)
            if found is not None:
                return await self._answer(found, wait, timeout)
        media = None
        if request.media:
            parts, media = await plan_media_delivery(resolved, request, self._session)
            if key is not None:  # a concurrent request with this key may have won while media loaded
                found, stale = self._find_key(key)
                if found is not None:
                    return await self._answer(found, wait, timeout)
        else:
            parts = plan_delivery(resolved, request)
        job = _new_job(self._id_prefix, self.store.next_seq(), resolved, request, parts, media)
        journal = self.store.journal
        # Queued, not yet durable: the job is visible at once (idempotency, counts), and a
        # lane that picks it up waits for this commit before sending anything.
        if stale and key is not None:  # an expired use of the same key lets go of it first
            job.accepted = batch, index = journal.queue(OutboxStore.detach_key(key), job.insert_statement())
        else:
            job.accepted = batch, index = journal.queue(job.insert_statement())
        self._jobs[job.id] = job
        if key is not None:
            self._claimed_keys[key] = job
        if wait:
            job.finished = anyio.Event()
        self._enqueue(job)
        await journal.wait(batch)  # if cancelled here, the row still commits
        if key is not None and self._claimed_keys.get(key) is job:
            del self._claimed_keys[key]
        error = batch.error(index)
        if error is not None:
            self._discard(job)
            raise error
        if not wait:
            return job.record()
        return await self._answer(job, wait, timeout)

    def get(self, id: str) -> DeliveryRecord | None:
        job = self._jobs.get(id)
        if job is not None:
            return job.record()
        row = self.store.get(id)
        return record_from_row(row) if row is not None else None

    def list(self, state: str | None = None, limit: int = 100) -> builtins.list[DeliveryRecord]:
        """Records in ``state`` (all states if ``None``): queue order for pending/sending,
        most recent first otherwise."""
        if state is not None and state not in STATES:
            raise InvalidRequest(f"unknown outbox state {state!r}; expected one of {', '.join(STATES)}")
        limit = max(1, min(int(limit), 10_000))
        if state is not None and is_active(state) and self._loaded:
            # Every unfinished message is in memory, and memory is ahead of the table.
            jobs = (job for job in self._jobs.values() if job.state == state and not is_final(job.state))
            return [job.record() for job in itertools.islice(jobs, limit)]
        self.store.journal.flush()
        records = []
        for row in self.store.rows(state, limit):
            job = self._jobs.get(row["id"])
            records.append(job.record() if job is not None else record_from_row(row))
        return records

    async def retry(self, id: str) -> DeliveryRecord:
        """Move a dead message back to pending (attempts reset). ``KeyError`` if unknown."""
        job = self._jobs.get(id)
        if job is not None:
            return job.record()  # already queued
        row = self.store.get(id)
        if row is None:
            raise KeyError(id)
        if row["state"] == DELIVERED:
            raise InvalidRequest(f"message {id} was already delivered; send a new message instead")
        if is_active(row["state"]):
            return record_from_row(row)  # stored before this outbox started; it resumes on start
        job = Job.from_row(row)
        job.state, job.attempts, job.last_error, job.error_code = PENDING, 0, None, None
        job.updated = time.time()
        self._jobs[id] = job
        statements = [job.save_statement()]
        if job.seq < self.store.low_water:  # a restart must find it again
            statements.append(self.store.set_low_water(job.seq))
        with anyio.CancelScope(shield=True):
            await self.store.journal.commit(*statements)
        self._dead -= 1
        log.info("outbox.retry_requested", id=id, provider=job.key.provider, account=job.key.account)
        self._enqueue(job)
        return job.record()

    async def drop(self, id: str) -> bool:
        """Delete a message (dead or pending; a send in flight finishes its current part)."""
        job = self._jobs.get(id)
        if job is not None:
            self._discard(job)
        else:
            row = self.store.get(id)
            if row is None:
                return False
            if row["state"] == DEAD:
                self._dead -= 1
            elif is_active(row["state"]):
                self._unloaded -= 1
        with anyio.CancelScope(shield=True):
            await self.store.journal.commit(OutboxStore.delete(id))
        log.info("outbox.dropped", id=id)
        return True

    def counts(self) -> tuple[int, int]:
        """``(pending + sending, dead)`` for metrics and status."""
        return len(self._jobs) + self._unloaded, self._dead

    async def join(self) -> None:
        """Wait until nothing is pending or sending (tests and benchmarks)."""
        while self._jobs or not self._loaded:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    @classmethod
    async def enqueue_offline(cls, config: Config | str | PathLike[str], requests: Iterable[DeliveryRequest], *,
                              registry: Registry | None = None) -> builtins.list[DeliveryRecord]:
        """Validate and store messages while no daemon runs; they are sent at its next start.

        Exactly what ``deliver()`` stores (same checks, chunks and rows), in one transaction.
        For tools and tests: run it while the daemon is stopped.
        """
        registry = registry if registry is not None else Registry.discover()
        if not isinstance(config, Config):
            config = load_config(Path(config), registry)
        db = Database.open_in(config.gateway.state_path)
        session: aiohttp.ClientSession | None = None

        def http() -> aiohttp.ClientSession:
            nonlocal session
            session = session or aiohttp.ClientSession()
            return session

        try:
            store = OutboxStore(db)
            prefix = id_prefix()
            jobs: dict[str, Job] = {}
            records: builtins.list[DeliveryRecord] = []
            for request in requests:
                key = request.idempotency_key
                if key is not None and key in jobs:
                    records.append(jobs[key].record())
                    continue
                row = store.by_key(key) if key is not None else None
                if row is not None:
                    records.append(record_from_row(row))
                    continue
                resolved = resolve(config, registry, request)
                parts, media = (await plan_media_delivery(resolved, request, http) if request.media
                                else (plan_delivery(resolved, request), None))
                job = _new_job(prefix, store.next_seq(), resolved, request, parts, media)
                jobs[key or job.id] = job
                records.append(job.record())
            insert_many(db, jobs.values())
            return records
        finally:
            db.close()
            if session is not None:
                await session.close()

    # --- accepting -----------------------------------------------------------------------------

    def _resolve(self, request: DeliveryRequest) -> Resolved:
        """``plan.resolve`` with a cache per (provider, account, target) string, per config."""
        config = self.gateway.config
        if self._resolved_for is not config or len(self._resolved) > RESOLVE_CACHE_SIZE:
            self._resolved_for, self._resolved = config, {}
        cache_key = (request.provider, request.account, request.to)
        resolved = self._resolved.get(cache_key)
        if resolved is None:
            resolved = resolve(config, self.gateway.registry, request, self._default_account)
            self._resolved[cache_key] = resolved
        return resolved

    def _default_account(self, provider: str) -> str | None:
        config = self.gateway.config
        if self._defaults is None or self._defaults[0] is not config:
            self._defaults = (config, {})
        cache = self._defaults[1]
        if provider not in cache:
            cache[provider] = config.default_account(provider)
        return cache[provider]

    def _find_key(self, key: str) -> tuple[Job | DeliveryRecord | None, bool]:
        """The message that first used ``key`` (and whether an expired use must be detached)."""
        claimed = self._claimed_keys.get(key)
        if claimed is not None:
            return claimed, False
        row = self.store.by_key(key)
        if row is None:
            return None, False
        job = self._jobs.get(row["id"])
        if job is not None:
            return job, False
        ttl = self.gateway.config.gateway.outbox.idempotency_ttl_s
        if not is_active(row["state"]) and row["created_at"] < time.time() - ttl:
            return None, True
        return record_from_row(row), False

    async def _answer(self, found: Job | DeliveryRecord, wait: bool, timeout: float | None) -> DeliveryRecord:
        if isinstance(found, Job):
            job = found
            if wait and not is_final(job.state) and not job.dropped:
                if job.finished is None:
                    job.finished = anyio.Event()
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    await job.finished.wait()
            record = job.record()
            if wait and job.dropped:
                error = DeliveryError(f"message {job.id} was dropped from the outbox before it was delivered")
                error.record = record  # type: ignore[attr-defined]
                raise error
        else:
            record = found
        if wait and record.state == DEAD:
            raise error_for(record)
        return record

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    # --- bookkeeping ----------------------------------------------------------------------------

    def _load(self) -> None:
        rows = self.store.resume()
        jobs = [self._jobs.get(row["id"]) or Job.from_row(row) for row in rows]
        for job in jobs:
            job.state = PENDING
            self._jobs[job.id] = job
        self._unloaded = 0
        self._loaded = True
        for job in jobs:
            self._enqueue(job)
        if jobs:
            log.info("outbox.resumed", messages=len(jobs), accounts=len({j.key for j in jobs}))

    def _enqueue(self, job: Job) -> None:
        if not self._loaded:
            return  # stored before run(): _load() picks it up in acceptance order
        if not self.lanes.enqueue(job):
            job.state, job.last_error, job.error_code = (
                DEAD, f"provider {job.key.provider!r} is not installed or cannot send", "unknown_provider")
            job.updated = time.time()
            self.store.journal.queue(job.save_statement())
            self._finished(job)

    def _finished(self, job: Job) -> bool:
        """A job reached ``delivered`` or ``dead`` (committed); ``False`` if it was dropped."""
        if self._jobs.pop(job.id, None) is None:
            return False
        if job.state == DEAD:
            self._dead += 1
            log.error("outbox.dead", id=job.id, provider=job.key.provider, account=job.key.account,
                      error=job.last_error, code=job.error_code, attempts=job.attempts)
        events = self.gateway.events
        if events.has_subscribers:
            events.publish("outbound", job.record().to_dict())
        self._after_finish(job)
        return True

    def _discard(self, job: Job) -> None:
        """Forget a job in memory (dropped, or its insert failed); a lane holding it lets go."""
        job.dropped = True
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]
        self.lanes.remove(job)
        self._after_finish(job)

    def _after_finish(self, job: Job) -> None:
        job.media = None
        if job.idempotency_key is not None and self._claimed_keys.get(job.idempotency_key) is job:
            del self._claimed_keys[job.idempotency_key]
        if job.finished is not None:
            job.finished.set()
        if not self._jobs and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def _prune_forever(self) -> None:
        while True:
            self._advance_low_water()
            cutoff = time.time() - self.gateway.config.gateway.outbox.idempotency_ttl_s
            while self.store.prune_delivered(cutoff) > 0:
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(PRUNE_EVERY_S)

    def _advance_low_water(self) -> None:
        """Persist the smallest ``seq`` still unfinished, so a restart scans only from there."""
        if not self._loaded:
            return
        mark = min((job.seq for job in self._jobs.values()), default=self.store.end_seq)
        if mark > self.store.low_water:
            self.store.journal.queue(self.store.set_low_water(mark))


def _new_job(id_prefix: str, seq: int, resolved: Resolved, request: DeliveryRequest, parts: list[Part],
             media: dict[int, MediaPayload] | None) -> Job:
    now = time.time()
    return Job(seq, make_id(id_prefix, seq), resolved.key, resolved.target, resolved.target_str, parts,
               request.reply_to, request.thread, now, now, idempotency_key=request.idempotency_key,
               media=media or None)
