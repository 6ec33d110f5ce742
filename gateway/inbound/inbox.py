"""The durable inbox: one SQLite row per accepted message, keyed by (provider, account, id).

The UNIQUE key is the dedupe record: a provider that redelivers a message (a Telegram
offset not yet committed, a Slack retry) inserts nothing. Rows move
``pending -> done`` or, after ``handler.max_attempts`` failures, ``pending -> failed``
(kept with the error; an operator can retry them). ``done`` rows are kept for the dedupe
window (:data:`RETENTION_S`), then pruned.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from gateway.store import Database
from gateway.status import utcnow_iso

#: How long handled messages (and so their dedupe keys) are kept.
RETENTION_S = 7 * 86_400

InboxState = Literal["pending", "done", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT NOT NULL,
    account      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    envelope     TEXT NOT NULL,
    received_at  REAL NOT NULL,
    updated_at   REAL NOT NULL,
    UNIQUE (provider, account, message_id)
);
-- Only unfinished rows are indexed: an insert and its "done" update stay cheap, and a
-- restart finds the pending rows without scanning the dedupe window.
CREATE INDEX IF NOT EXISTS inbox_open ON inbox (seq) WHERE state != 'done';
"""


@dataclass(frozen=True)
class InboxEntry:
    seq: int
    provider: str
    account: str
    message_id: str
    chat_id: str
    state: InboxState
    attempts: int
    last_error: str | None
    envelope: dict[str, Any]
    received_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        """The control API's view (the message itself is under ``envelope``)."""
        return {"id": self.seq, "provider": self.provider, "account": self.account,
                "message_id": self.message_id, "chat_id": self.chat_id, "state": self.state,
                "attempts": self.attempts, "last_error": self.last_error,
                "received_at": utcnow_iso(self.received_at), "updated_at": utcnow_iso(self.updated_at),
                "envelope": self.envelope}


class Inbox:
    """Inbox rows in the gateway's database (synchronous: SQLite runs on the loop thread)."""

    def __init__(self, db: Database):
        self.db = db
        db.migrate(SCHEMA)

    def insert(self, envelope: dict[str, Any]) -> InboxEntry | None:
        """Store a new message; ``None`` when (provider, account, id) is already known."""
        body = envelope["message"]
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO inbox (provider, account, message_id, chat_id, envelope, received_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT (provider, account, message_id) DO NOTHING",
            (envelope["provider"], envelope["account"], body["id"], body["chat"]["id"],
             json.dumps(envelope, ensure_ascii=False, separators=(",", ":")), now, now))
        if cursor.rowcount != 1 or cursor.lastrowid is None:
            return None
        return InboxEntry(seq=cursor.lastrowid, provider=envelope["provider"], account=envelope["account"],
                          message_id=body["id"], chat_id=body["chat"]["id"], state="pending", attempts=0,
                          last_error=None, envelope=envelope, received_at=now, updated_at=now)

    def seen(self, provider: str, account: str, message_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM inbox WHERE provider=? AND account=? AND message_id=?",
                               (provider, account, message_id)).fetchone() is not None

    def get(self, seq: int) -> InboxEntry | None:
        row = self.db.execute("SELECT * FROM inbox WHERE seq=?", (seq,)).fetchone()
        return _entry(row) if row is not None else None

    def pending(self) -> list[InboxEntry]:
        """Every message not yet handled, oldest first (what a restart dispatches again)."""
        rows = self.db.execute("SELECT * FROM inbox WHERE state != 'done' AND state='pending' ORDER BY seq")
        return [_entry(r) for r in rows]

    def list(self, state: InboxState | None = None, limit: int = 100) -> list[InboxEntry]:
        if state is None:
            rows = self.db.execute("SELECT * FROM inbox ORDER BY seq DESC LIMIT ?", (limit,))
        elif state != "done":
            rows = self.db.execute("SELECT * FROM inbox WHERE state != 'done' AND state=? ORDER BY seq DESC "
                                   "LIMIT ?", (state, limit))
        else:
            rows = self.db.execute("SELECT * FROM inbox WHERE state=? ORDER BY seq DESC LIMIT ?", (state, limit))
        return [_entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "done": 0, "failed": 0}
        for state, count in self.db.execute("SELECT state, COUNT(*) FROM inbox GROUP BY state"):
            counts[state] = count
        return counts

    def mark_done(self, seq: int, attempts: int) -> None:
        self.db.execute("UPDATE inbox SET state='done', attempts=?, last_error=NULL, updated_at=? WHERE seq=?",
                        (attempts, time.time(), seq))

    def record_failure(self, seq: int, attempts: int, error: str, *, park: bool) -> None:
        """Count a failed attempt; ``park`` moves the message to ``failed``."""
        self.db.execute("UPDATE inbox SET state=?, attempts=?, last_error=?, updated_at=? WHERE seq=?",
                        ("failed" if park else "pending", attempts, error, time.time(), seq))

    def retry(self, seq: int) -> InboxEntry | None:
        """Move a ``failed`` message back to ``pending`` with a fresh attempt budget."""
        cursor = self.db.execute("UPDATE inbox SET state='pending', attempts=0, updated_at=? "
                                 "WHERE seq=? AND state='failed'", (time.time(), seq))
        return self.get(seq) if cursor.rowcount == 1 else None

    def delete(self, seq: int) -> bool:
        """Drop a ``failed`` message (its dedupe key goes with it)."""
        return self.db.execute("DELETE FROM inbox WHERE seq=? AND state='failed'", (seq,)).rowcount == 1

    def prune(self, now: float | None = None, retention_s: float = RETENTION_S) -> int:
        cutoff = (time.time() if now is None else now) - retention_s
        return self.db.execute("DELETE FROM inbox WHERE state='done' AND updated_at < ?", (cutoff,)).rowcount


def _entry(row: Any) -> InboxEntry:
    return InboxEntry(seq=row["seq"], provider=row["provider"], account=row["account"],
                      message_id=row["message_id"], chat_id=row["chat_id"], state=row["state"],
                      attempts=row["attempts"], last_error=row["last_error"], envelope=json.loads(row["envelope"]),
                      received_at=row["received_at"], updated_at=row["updated_at"])
