"""Group commit: every write queued during one event-loop tick goes into one transaction.

A commit in WAL mode costs far more than the statements in it (the WAL frames are written
at commit), so batching commits is what keeps the durable outbox near the speed of a bare
HTTP loop. Callers that need durability await their commit (``deliver()`` before it
returns, a part's result before the next part is sent); bookkeeping writes only queue.
See ``docs/decisions/0001-sqlite-on-the-loop.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

import anyio
import structlog

from gateway.store import Database

log = structlog.get_logger("gateway.outbound")

Statement = tuple[str, Sequence[Any]]


class CommitBatch:
    """The writes of one transaction; ``errors`` maps an op's index to why it failed.

    Waiters get a plain asyncio future each (an ``anyio.Event`` per batch costs a wrapper,
    a loop lookup under a lock and a deque; this is paid twice per message). One future per
    waiter, not one shared: cancelling a waiter cancels its own future only.
    """

    __slots__ = ("committed", "errors", "ops", "waiters")

    def __init__(self) -> None:
        self.ops: list[tuple[Statement, ...]] = []
        self.committed = False
        self.waiters: list[Any] | None = None  # futures (or anyio events), created only when someone waits
        self.errors: dict[int, BaseException] = {}

    def waiter(self, loop: asyncio.AbstractEventLoop | None) -> Awaitable[Any]:
        """Something to await until the batch is committed (the caller checked ``committed``).

        On asyncio (``loop`` is the running loop, which the journal keeps: looking it up
        costs as much as the future) a future awaited straight from the caller's frame, so
        neither the wait nor the wake-up passes through a coroutine of ours.
        """
        if self.waiters is None:
            self.waiters = []
        if loop is None:  # not on asyncio (anyio on trio): the portable primitive
            event = anyio.Event()
            self.waiters.append(event)
            return event.wait()
        waiter = loop.create_future()
        self.waiters.append(waiter)
        return waiter

    def wake(self) -> None:
        """Called once the batch is committed (or has failed op by op)."""
        self.committed = True
        waiters, self.waiters = self.waiters, None
        if waiters:
            for waiter in waiters:
                if isinstance(waiter, anyio.Event):
                    waiter.set()
                elif not waiter.done():  # a cancelled waiter's future is done already
                    waiter.set_result(None)

    def error(self, index: int) -> BaseException | None:
        return self.errors.get(index)


class GroupCommit:
    """Queue writes; one transaction per event-loop tick commits everything queued.

    An *op* is a tuple of statements applied atomically. If a batch fails, it is rolled
    back and every op is retried in its own transaction, so one bad op fails alone.
    No anyio primitive is created until the flusher runs (a gateway may be built outside
    an event loop).
    """

    def __init__(self, db: Database):
        self._db = db
        self._batch = CommitBatch()
        self._loop: asyncio.AbstractEventLoop | None = None  # set while run() runs on asyncio
        self._wake: anyio.Event | None = None  # what run() waits on elsewhere
        self.running = False

    def queue(self, *statements: Statement) -> tuple[CommitBatch, int]:
        """Queue one op (committed with the current batch); returns the batch and its index."""
        batch = self._batch
        batch.ops.append(statements)
        index = len(batch.ops) - 1
        if index == 0:
            if self._loop is not None:
                self._loop.call_soon(self._flush_soon)
            elif self._wake is not None:
                wake, self._wake = self._wake, None
                wake.set()
        return batch, index

    async def commit(self, *statements: Statement) -> None:
        """Queue ``statements`` and return once they are committed (raise if they failed)."""
        batch, index = self.queue(*statements)
        if self.running:
            await batch.waiter(self._loop)
        else:
            self.flush()
        error = batch.errors.get(index)
        if error is not None:
            raise error

    def wait(self, batch: CommitBatch) -> Awaitable[Any]:
        """``await journal.wait(batch)`` returns once ``batch`` is committed (flushing now if
        no flusher runs)."""
        if not batch.committed:
            if self.running:
                return batch.waiter(self._loop)
            self.flush()
        return _DONE


    async def run(self) -> None:
        """The flusher. Commits once per loop turn while there is anything to commit.

        On asyncio the first write of a batch schedules the commit with ``call_soon``, twice
        removed: every task made ready in this turn queues its write first, and a commit
        costs no task wake-up. On other event loops a task waits for writes instead.
        """
        self.running = True
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio
            self._loop = None
        try:
            if self._loop is not None:
                if self._batch.ops:
                    self._loop.call_soon(self._flush_soon)
                await anyio.sleep_forever()
            while True:
                if not self._batch.ops:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                await anyio.lowlevel.checkpoint()
                self.flush()
        finally:
            self.running = False
            self._loop = None
            self._wake = None
            self.flush()

    def _flush_soon(self) -> None:
        if self._loop is not None:
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        if not self.running:
            return  # stopped meanwhile: run() flushed on its way out
        try:
            self.flush()
        except BaseException as exc:  # a bug, not an SQLite error (flush handles those): fail loudly
            log.exception("outbox.flush_failed", error=f"{type(exc).__name__}: {exc}")
            raise

    def flush(self) -> None:
        """Commit everything queued now (synchronous; also used at shutdown)."""
        batch = self._batch
        if not batch.ops:
            return
        self._batch = CommitBatch()
        conn = self._db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Runs of the same statement go through executemany (order is kept).
                run_sql: str | None = None
                run: list[Sequence[Any]] = []
                for op in batch.ops:
                    for sql, params in op:
                        if sql is not run_sql:
                            if run:
                                conn.executemany(run_sql, run)  # type: ignore[arg-type]
                            run_sql, run = sql, []
                        run.append(params)
                if run:
                    conn.executemany(run_sql, run)  # type: ignore[arg-type]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except Exception:  # noqa: BLE001 - sqlite3.Error, or a value sqlite cannot bind
            self._retry_one_by_one(batch)
        # Pending jobs keep their batch until a lane takes them; the statements (each
        # message's body among them) are not needed once committed.
        batch.ops.clear()
        batch.wake()

    def _retry_one_by_one(self, batch: CommitBatch) -> None:
        conn = self._db.conn
        for index, op in enumerate(batch.ops):
            try:
                with self._db.transaction():
                    for sql, params in op:
                        conn.execute(sql, params)
            except Exception as exc:  # noqa: BLE001 - reported to whoever waits for this op
                batch.errors[index] = exc
                log.error("outbox.write_failed", error=f"{type(exc).__name__}: {exc}", statement=op[0][0][:60])


class _Done:
    """An awaitable that is already done."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())


_DONE = _Done()
