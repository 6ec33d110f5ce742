"""Group commit (gateway/outbound/journal.py): batching, failure isolation, memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from gateway.outbound.journal import GroupCommit
from gateway.store import Database

INSERT = "INSERT INTO t (k, v) VALUES (?, ?)"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "j.db")
    db.migrate("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return db


def commits_of(db: Database) -> list[str]:
    seen: list[str] = []
    db.conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


async def test_writes_of_one_loop_turn_share_one_transaction(db: Database) -> None:
    journal = GroupCommit(db)
    commits = commits_of(db)
    async with anyio.create_task_group() as tg:
        tg.start_soon(journal.run)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as writers:
            for k in range(50):
                writers.start_soon(journal.commit, (INSERT, (k, f"v{k}")))
        tg.cancel_scope.cancel()
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 50
    assert len(commits) == 1


async def test_a_failing_write_fails_alone_and_its_committer_sees_why(db: Database) -> None:
    journal = GroupCommit(db)
    outcomes: dict[int, BaseException | None] = {}

    async def write(k: int, v: str | None) -> None:
        try:
            await journal.commit((INSERT, (k, v)))
            outcomes[k] = None
        except sqlite3.IntegrityError as exc:
            outcomes[k] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(journal.run)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as writers:
            writers.start_soon(write, 1, "a")
            writers.start_soon(write, 2, None)  # NOT NULL violated: rolls back the batch
            writers.start_soon(write, 3, "c")
        tg.cancel_scope.cancel()
    assert outcomes[1] is None and outcomes[3] is None
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert [r[0] for r in db.execute("SELECT k FROM t ORDER BY k")] == [1, 3]


async def test_a_committed_batch_lets_go_of_its_statements(db: Database) -> None:
    journal = GroupCommit(db)
    async with anyio.create_task_group() as tg:
        tg.start_soon(journal.run)
        await anyio.wait_all_tasks_blocked()
        batch, index = journal.queue((INSERT, (1, "x" * 10_000)))
        assert batch.ops  # held until committed
        await journal.wait(batch)
        tg.cancel_scope.cancel()
    assert batch.committed and batch.error(index) is None
    assert batch.ops == []  # a pending message keeps its batch; not the statements


async def test_without_a_flusher_commit_and_wait_write_at_once(db: Database) -> None:
    journal = GroupCommit(db)
    await journal.commit((INSERT, (1, "a")))
    batch, _ = journal.queue((INSERT, (2, "b")))
    await journal.wait(batch)
    assert batch.committed
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 2


async def test_writes_queued_before_the_flusher_starts_are_committed_by_it(db: Database) -> None:
    journal = GroupCommit(db)
    batch, _ = journal.queue((INSERT, (1, "early")))
    async with anyio.create_task_group() as tg:
        tg.start_soon(journal.run)
        await anyio.wait_all_tasks_blocked()
        assert journal.running
        with anyio.fail_after(5):  # the flusher must pick up what was queued before it ran
            await journal.wait(batch)
        tg.cancel_scope.cancel()
    assert db.execute("SELECT v FROM t").fetchone()[0] == "early"
