"""Group commit: every write queued during one event-loop tick goes into one transaction.

A commit in WAL mode costs far more than the statements in it (the WAL frames are written
at commit), so batching commits is what keeps the durable outbox near the speed of a bare
HTTP loop. Callers that need durability await their commit (``deliver()`` before it
returns, a part's result before the next part is sent); bookkeeping writes only queue.
See ``docs/decisions/0001-sqlite-on-the-loop.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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

    async def wait(self) -> None:
        if self.committed:
            return
        if self.waiters is None:
            self.waiters = []
        try:
            waiter: Any = asyncio.get_running_loop().create_future()
        except RuntimeError:  # not on asyncio (anyio on trio): the portable primitive
            event = anyio.Event()
            self.waiters.append(event)
            await event.wait()
            return
        self.waiters.append(waiter)
        await waiter

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
        self._wake: Any = None  # an asyncio future (or an anyio event) the idle flusher waits on
        self.running = False

    def queue(self, *statements: Statement) -> tuple[CommitBatch, int]:
        """Queue one op (committed with the current batch); returns the batch and its index."""
        batch = self._batch
        batch.ops.append(statements)
        index = len(batch.ops) - 1
        if index == 0 and self._wake is not None:
            wake, self._wake = self._wake, None
            if isinstance(wake, anyio.Event):
                wake.set()
            elif not wake.done():
                wake.set_result(None)
        return batch, index

    async def commit(self, *statements: Statement) -> None:
        """Queue ``statements`` and return once they are committed (raise if they failed)."""
        batch, index = self.queue(*statements)
        if self.running:  # self.wait(batch), one coroutine frame fewer (a lane's every message)
            await batch.wait()
        else:
            self.flush()
        error = batch.errors.get(index)
        if error is not None:
            raise error

    async def wait(self, batch: CommitBatch) -> None:
        """Return once ``batch`` is committed (flushing now if no flusher runs)."""
        if batch.committed:
            return
        if self.running:
            await batch.wait()
        else:
            self.flush()

    async def run(self) -> None:
        """The flusher task. Commits once per tick while there is anything to commit."""
        self.running = True
        try:
            while True:
                if not self._batch.ops:
                    try:
                        wake: Any = asyncio.get_running_loop().create_future()
                    except RuntimeError:  # not on asyncio
                        wake = anyio.Event()
                    self._wake = wake
                    await (wake.wait() if isinstance(wake, anyio.Event) else wake)
                # Let every task made ready in this tick queue its write first.
                await anyio.lowlevel.checkpoint()
                self.flush()
        finally:
            self.running = False
            self._wake = None
            self.flush()

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
