"""The SQLite state store (``<state_dir>/switchboard.db``, WAL).

One connection, used from the event loop thread. In WAL mode with ``synchronous=NORMAL`` a
commit costs no fsync, so a write is tens of microseconds and does not need a thread hop;
a committed transaction survives a process crash or ``kill -9`` (only a power loss can
lose the last transactions). See ``docs/decisions/0001-sqlite-on-the-loop.md``.

Each owner (outbox, inbox, pairing, account stores) creates its own tables through
:meth:`Database.migrate`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from gateway.plugin import AccountKey

DB_NAME = "switchboard.db"
CHECKPOINT_INTERVAL_S = 1.0
AUTOCHECKPOINT_PAGES = 20_000  # ~80 MB of WAL

_KV_SCHEMA = """
CREATE TABLE IF NOT EXISTS account_kv (
    provider TEXT NOT NULL,
    account  TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (provider, account, key)
) WITHOUT ROWID;
"""


class Database:
    """A thin owner of the SQLite connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run off the event loop (see run_checkpoints); the automatic one, which
        # would run inside a commit on the loop, is only a safety net for a stalled checkpointer.
        self.conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        self.migrate(_KV_SCHEMA)

    @classmethod
    def open_in(cls, state_dir: Path) -> Database:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = cls(state_dir / DB_NAME)
        try:
            (state_dir / DB_NAME).chmod(0o600)
        except OSError:
            pass
        return db

    async def run_checkpoints(self, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        """Fold the WAL back into the database from a worker thread, until cancelled.

        A checkpoint inside a commit on the loop stalled it for tens of milliseconds; a
        PASSIVE checkpoint on its own connection never blocks the writer.
        """
        if str(self.path) == ":memory:":
            return
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            while True:
                await anyio.sleep(interval)
                await anyio.to_thread.run_sync(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def migrate(self, script: str) -> None:
        self.conn.executescript(script)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class AccountStore:
    """The per-account key/value store handed to plugins (:class:`gateway.plugin.KeyValueStore`)."""

    def __init__(self, db: Database, key: AccountKey):
        self._db = db
        self._key = key

    async def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM account_kv WHERE provider=? AND account=? AND key=?",
                               (self._key.provider, self._key.account, key)).fetchone()
        return json.loads(row[0]) if row is not None else default

    async def set(self, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO account_kv(provider, account, key, value) VALUES (?,?,?,?) "
                         "ON CONFLICT(provider, account, key) DO UPDATE SET value=excluded.value",
                         (self._key.provider, self._key.account, key, json.dumps(value)))

    async def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM account_kv WHERE provider=? AND account=? AND key=?",
                         (self._key.provider, self._key.account, key))
