"""The outbox table: one row per accepted message, and the in-memory :class:`Job` mirror.

``seq`` (the rowid, handed out here in acceptance order) is the FIFO order on resume and
the key of every update; a message id ends with its ``seq`` so no index on ids is needed.
Parts (text chunks, media references, polls) are stored with the row when it is accepted;
``results`` grows by one entry per delivered part, so a restart resumes at the first part
not yet delivered.

The hot path touches few B-trees: the insert appends to the table, the "delivered" update
rewrites the row found by rowid; no index covers pending or delivered rows. Resuming
after a restart scans from a *low-water mark* -- a ``seq`` at or below every unfinished
row, persisted in ``outbox_meta`` every few minutes, at shutdown and whenever an old
message is revived -- instead of the whole table. Writes go through
:class:`~gateway.outbound.journal.GroupCommit`.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.outbound.journal import CommitBatch, GroupCommit, Statement
from gateway.outbound.model import DEAD, DELIVERED, PENDING, SENDING, DeliveryRecord
from gateway.plugin import AccountKey, MediaPayload, SendResult, Target
from gateway.store import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    provider        TEXT NOT NULL,
    account         TEXT NOT NULL,
    target          TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    last_error      TEXT,
    error_code      TEXT,
    results         TEXT NOT NULL DEFAULT '[]',
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (seq) WHERE state = 'dead';
CREATE UNIQUE INDEX IF NOT EXISTS outbox_idempotency ON outbox (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox_meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

_INSERT = ("INSERT INTO outbox (seq, id, provider, account, target, body, state, attempts, created_at, "
           "updated_at, last_error, error_code, results, idempotency_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_SAVE = ("UPDATE outbox SET state=?, attempts=?, updated_at=?, last_error=?, error_code=?, results=? "
         "WHERE seq=? AND id=?")
# The hot path's two writes name only the columns that carry something: every bound
# parameter costs (half the cost of a 14-column insert is binding NULLs and defaults).
_INSERT_NEW = ("INSERT INTO outbox (seq, id, provider, account, target, body, state, created_at, updated_at) "
               "VALUES (?,?,?,?,?,?,'pending',?,?)")
_INSERT_NEW_KEYED = ("INSERT INTO outbox (seq, id, provider, account, target, body, state, created_at, updated_at, "
                     "idempotency_key) VALUES (?,?,?,?,?,?,'pending',?,?,?)")
_DELIVERED = "UPDATE outbox SET state='delivered', attempts=?, updated_at=?, results=? WHERE seq=? AND id=?"
_SET_LOW_WATER = ("INSERT INTO outbox_meta (name, value) VALUES ('low_water', ?) "
                  "ON CONFLICT (name) DO UPDATE SET value=excluded.value")
_ACTIVE = (PENDING, SENDING)

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_C_ENCODER = (json.encoder.c_make_encoder(None, _JSON.default, json.encoder.encode_basestring, None, ":", ",",
                                          False, False, True)
              if json.encoder.c_make_encoder is not None else None)
_quote = json.encoder.encode_basestring


def _encode(value: Any) -> str:
    """Compact JSON; the C encoder called directly (half the cost of ``json.dumps``)."""
    return "".join(_C_ENCODER(value, 0)) if _C_ENCODER is not None else _JSON.encode(value)


_JSON_SCALARS = (str, int, float, bool, type(None))


def result_entry(result: SendResult) -> tuple[dict[str, Any], str]:
    """One entry of ``results`` (provider ids as strings, plus the JSON scalars of
    ``extra``) and its JSON; the usual entry, two strings, is written by hand."""
    message_id = str(result.message_id)
    chat_id = None if result.chat_id is None else str(result.chat_id)
    entry: dict[str, Any] = {"message_id": message_id, "chat_id": chat_id}
    if result.extra:
        entry.update({k: v for k, v in result.extra.items() if isinstance(v, _JSON_SCALARS)})
        return entry, _encode(entry)
    chat = "null" if chat_id is None else _quote(chat_id)
    return entry, f'{{"message_id":{_quote(message_id)},"chat_id":{chat}}}'


def id_prefix() -> str:
    """Per process: start time (so ids sort by time across restarts) and 40 random bits."""
    return f"{time.time_ns() // 1_000_000:011x}{random.getrandbits(40):010x}"


def make_id(prefix: str, seq: int) -> str:
    """``<prefix><seq as 10 hex digits>``: the row is found by its ``seq`` (no index on ids)."""
    return f"{prefix}{seq:010x}"


def seq_of(id: str) -> int | None:
    try:
        return int(id[-10:], 16) if len(id) > 10 else None
    except ValueError:
        return None


@dataclass(eq=False, slots=True)
class Job:
    """The in-memory mirror of one pending (or just finished) outbox row."""

    seq: int
    id: str
    key: AccountKey
    target: Target
    target_str: str
    parts: list[dict[str, Any]]
    reply_to: str | None
    thread: str | None
    created: float
    updated: float
    state: str = PENDING
    attempts: int = 0
    last_error: str | None = None
    error_code: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None
    results_json: str = "[]"
    #: Media loaded at acceptance (part index -> payload); ``None`` when there is none
    #: (most messages), and after a restart until a lane loads it again.
    media: dict[int, MediaPayload] | None = None
    #: Set once the job reaches ``delivered``/``dead`` or is dropped (``deliver(wait=True)``).
    finished: anyio.Event | None = None
    in_lane: bool = False
    dropped: bool = False
    #: The group-commit batch holding this job's INSERT until it is committed: a lane
    #: never sends before the row is durable.
    accepted: tuple[CommitBatch, int] | None = None

    def record(self) -> DeliveryRecord:
        return DeliveryRecord(self.id, self.key.provider, self.key.account, self.target_str, self.state,
                              self.attempts, self.created, self.updated, self.last_error, self.error_code,
                              list(self.results), self.idempotency_key)

    def add_result(self, result: SendResult) -> None:
        """Record a delivered part's result (in memory; the caller writes the row)."""
        entry, entry_json = result_entry(result)
        self.results_json = (f"{self.results_json[:-1]},{entry_json}]" if self.results else f"[{entry_json}]")
        self.results.append(entry)

    def insert_statement(self) -> Statement:
        if (self.state == PENDING and not self.attempts and self.last_error is None and self.error_code is None
                and not self.results):  # a new message: the columns' defaults are right
            if self.idempotency_key is None:
                return _INSERT_NEW, (self.seq, self.id, self.key.provider, self.key.account, self.target_str,
                                     self.body_json(), self.created, self.updated)
            return _INSERT_NEW_KEYED, (self.seq, self.id, self.key.provider, self.key.account, self.target_str,
                                       self.body_json(), self.created, self.updated, self.idempotency_key)
        return _INSERT, (self.seq, self.id, self.key.provider, self.key.account, self.target_str, self.body_json(),
                         self.state, self.attempts, self.created, self.updated, self.last_error, self.error_code,
                         self.results_json, self.idempotency_key)

    def body_json(self) -> str:
        """What ``from_row`` reads back: target, reply_to, thread and the parts."""
        target, parts = self.target, self.parts
        if self.reply_to is None and self.thread is None and target.thread is None:
            # The common message, written by hand: a third of the encoder's cost.
            texts: str | None
            if len(parts) == 1 and len(parts[0]) == 1 and "text" in parts[0]:  # one short text
                texts = f'{{"text":{_quote(parts[0]["text"])}}}'
            elif all(len(part) == 1 and "text" in part for part in parts):
                texts = ",".join(f'{{"text":{_quote(part["text"])}}}' for part in parts)
            else:
                texts = None
            if texts is not None:
                return (f'{{"target":[{_quote(target.kind)},{_quote(target.id)},null],"reply_to":null,'
                        f'"thread":null,"parts":[{texts}]}}')
        return _encode({"target": [target.kind, target.id, target.thread], "reply_to": self.reply_to,
                        "thread": self.thread, "parts": self.parts})

    def save_statement(self) -> Statement:
        return _SAVE, (self.state, self.attempts, self.updated, self.last_error, self.error_code,
                       self.results_json, self.seq, self.id)

    def final_statement(self, state: str, last_error: str | None, error_code: str | None) -> Statement:
        """The write that ends the job; the job itself changes once it is committed."""
        if state == DELIVERED and self.last_error is None and self.error_code is None:  # nothing to clear
            return _DELIVERED, (self.attempts, self.updated, self.results_json, self.seq, self.id)
        return _SAVE, (state, self.attempts, self.updated, last_error, error_code, self.results_json, self.seq,
                       self.id)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        body = json.loads(row["body"])
        kind, ident, thread = body["target"]
        return cls(seq=row["seq"], id=row["id"], key=AccountKey(row["provider"], row["account"]),
                   target=Target(kind, ident, thread), target_str=row["target"], parts=body["parts"], reply_to=body.get("reply_to"),
                   thread=body.get("thread"), created=row["created_at"], updated=row["updated_at"],
                   state=row["state"], attempts=row["attempts"], last_error=row["last_error"],
                   error_code=row["error_code"], results=json.loads(row["results"]),
                   idempotency_key=row["idempotency_key"], results_json=row["results"])


def record_from_row(row: sqlite3.Row) -> DeliveryRecord:
    return DeliveryRecord(row["id"], row["provider"], row["account"], row["target"], row["state"], row["attempts"],
                          row["created_at"], row["updated_at"], row["last_error"],
                          row["error_code"], json.loads(row["results"]), row["idempotency_key"])


class OutboxStore:
    """Queries over the outbox table (reads are synchronous; writes go through ``journal``).

    ``seq`` values are handed out here, so one store (one process) writes a table at a time:
    ``Outbox.enqueue_offline`` is for when the daemon is stopped.
    """

    def __init__(self, db: Database):
        self.db = db
        db.migrate(SCHEMA)
        self.journal = GroupCommit(db)
        self._next_seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]) + 1
        row = db.execute("SELECT value FROM outbox_meta WHERE name='low_water'").fetchone()
        self.low_water = int(row[0]) if row is not None else 0

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    @property
    def end_seq(self) -> int:
        """The ``seq`` the next message will get."""
        return self._next_seq

    def set_low_water(self, seq: int) -> Statement:
        self.low_water = seq
        return _SET_LOW_WATER, (seq,)

    def get(self, id: str) -> sqlite3.Row | None:
        seq = seq_of(id)
        if seq is None:
            return None
        return self.db.execute("SELECT * FROM outbox WHERE seq=? AND id=?", (seq, id)).fetchone()

    def by_key(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM outbox WHERE idempotency_key=?", (key,)).fetchone()

    def rows(self, state: str | None, limit: int) -> list[sqlite3.Row]:
        """Rows in ``state``: queue order for pending/sending, most recent first otherwise."""
        if state is None:
            sql, params = "SELECT * FROM outbox ORDER BY seq DESC LIMIT ?", (limit,)
        elif state in _ACTIVE:
            sql, params = "SELECT * FROM outbox WHERE seq >= ? AND state=? ORDER BY seq LIMIT ?", (
                self.low_water, state, limit)
        elif state == DEAD:
            sql, params = "SELECT * FROM outbox WHERE state = 'dead' ORDER BY seq DESC LIMIT ?", (limit,)
        else:
            sql, params = "SELECT * FROM outbox WHERE state=? ORDER BY seq DESC LIMIT ?", (state, limit)
        return self.db.execute(sql, params).fetchall()

    def resume(self) -> list[sqlite3.Row]:
        """Every unfinished row in acceptance order; ``sending`` rows go back to ``pending``."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE outbox SET state=? WHERE seq >= ? AND state=?", (PENDING, self.low_water, SENDING))
            return conn.execute("SELECT * FROM outbox WHERE seq >= ? AND state=? ORDER BY seq",
                                (self.low_water, PENDING)).fetchall()

    def count_unfinished(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM outbox WHERE seq >= ? AND state IN (?, ?)",
                                   (self.low_water, PENDING, SENDING)).fetchone()[0])

    def count_dead(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0])

    def prune_delivered(self, older_than: float, batch: int = 5000) -> int:
        """Forget up to ``batch`` delivered rows (and their idempotency keys) accepted before ``older_than``.

        No index on time: ``created_at`` grows with ``seq``, so a binary search over the
        rowid finds the boundary, and only rows below it are visited.
        """
        first, last = self.db.execute("SELECT min(seq), max(seq) FROM outbox").fetchone()
        if first is None:
            return 0
        lo, hi = first, last + 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = self.db.execute("SELECT seq, created_at FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1",
                                  (mid,)).fetchone()
            if row is None or row[1] >= older_than:
                hi = mid
            else:
                lo = row[0] + 1
        cur = self.db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq < ? "
                              "AND state=? ORDER BY seq LIMIT ?)", (lo, DELIVERED, batch))
        return cur.rowcount

    @staticmethod
    def detach_key(key: str) -> Statement:
        return "UPDATE outbox SET idempotency_key=NULL WHERE idempotency_key=?", (key,)

    @staticmethod
    def delete(id: str) -> Statement:
        return "DELETE FROM outbox WHERE seq=? AND id=?", (seq_of(id), id)


def is_active(state: str) -> bool:
    return state in _ACTIVE


def is_final(state: str) -> bool:
    return state in (DELIVERED, DEAD)


def insert_many(db: Database, jobs: Iterable[Job]) -> None:
    """One transaction for many new rows (offline enqueueing)."""
    with db.transaction() as conn:
        for job in jobs:
            sql, params = job.insert_statement()
            conn.execute(sql, params)
