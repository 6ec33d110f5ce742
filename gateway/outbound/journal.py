"""Group commit: every write queued during one event-loop tick goes into one transaction.

A commit in WAL mode costs far more than the statements in it (the WAL frames are written
at commit), so batching commits is what keeps the durable outbox near the speed of a bare
HTTP loop. Callers that need durability await their commit (``deliver()`` before it
returns, a part's result before the next part is sent); bookkeeping writes only queue.
See ``docs/decisions/0001-sqlite-on-the-loop.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import structlog

from gateway.store import Database

log = structlog.get_logger("gateway.outbound")

Statement = tuple[str, Sequence[Any]]


class CommitBatch:
    """The writes of one transaction; ``errors`` maps an op's index to why it failed."""

    __slots__ = ("committed", "done", "errors", "ops")

    def __init__(self) -> None:
        self.ops: list[tuple[Statement, ...]] = []
        self.committed = False
        self.done: anyio.Event | None = None  # created only when someone waits
        self.errors: dict[int, BaseException] = {}

    async def wait(self) -> None:
        if not self.committed:
            if self.done is None:
                self.done = anyio.Event()
            await self.done.wait()

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
        self._wake: anyio.Event | None = None
        self.running = False

    def queue(self, *statements: Statement) -> tuple[CommitBatch, int]:
        """Queue one op (committed with the current batch); returns the batch and its index."""
        batch = self._batch
        batch.ops.append(statements)
        index = len(batch.ops) - 1
        if index == 0 and self._wake is not None:
            self._wake.set()
        return batch, index

    async def commit(self, *statements: Statement) -> None:
        """Queue ``statements`` and return once they are committed (raise if they failed)."""
        batch, index = self.queue(*statements)
        await self.wait(batch)
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
                    self._wake = anyio.Event()
                    await self._wake.wait()
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
        batch.committed = True
        if batch.done is not None:
            batch.done.set()

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
