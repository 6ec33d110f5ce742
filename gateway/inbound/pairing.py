"""Pairing: how an unknown direct sender asks to be let in under ``dm_policy = "pairing"``.

The sender gets one short code (8 characters from an alphabet without look-alikes); the
operator approves it with ``switchboard pairing approve <provider> <code>``. Approvals are
stored here and checked by the policy beside ``allow_from``, so they apply at once.

Limits: one code per sender per hour (a denied request also holds its sender back until it
expires), a code expires after an hour, at most :data:`MAX_PENDING` open requests per
account (strangers cannot fill the table).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from gateway.plugin import AccountKey, InboundMessage
from gateway.status import utcnow_iso
from gateway.store import Database

#: No 0/O, 1/I: codes are read aloud and typed by hand.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL_S = 3600.0
MAX_PENDING = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS pairing_requests (
    provider        TEXT NOT NULL,
    account         TEXT NOT NULL,
    sender_id       TEXT NOT NULL,
    code            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    sender_name     TEXT,
    sender_username TEXT,
    reply_target    TEXT NOT NULL,
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL,
    PRIMARY KEY (provider, account, sender_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS pairing_code ON pairing_requests (provider, code);
CREATE TABLE IF NOT EXISTS pairing_approved (
    provider        TEXT NOT NULL,
    account         TEXT NOT NULL,
    sender_id       TEXT NOT NULL,
    sender_name     TEXT,
    sender_username TEXT,
    approved_at     REAL NOT NULL,
    PRIMARY KEY (provider, account, sender_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class PairingRequest:
    provider: str
    account: str
    sender_id: str
    code: str
    state: Literal["pending", "denied"]
    sender_name: str | None
    sender_username: str | None
    reply_target: str
    created_at: float
    expires_at: float

    @property
    def key(self) -> AccountKey:
        return AccountKey(self.provider, self.account)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "account": self.account, "code": self.code, "state": self.state,
                "sender": {"id": self.sender_id, "name": self.sender_name, "username": self.sender_username},
                "created_at": utcnow_iso(self.created_at), "expires_at": utcnow_iso(self.expires_at)}


#: Why no code was issued: the sender already had one this hour, or the account is full.
Refusal = Literal["rate_limited", "full"]


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class PairingStore:
    def __init__(self, db: Database, *, ttl_s: float = CODE_TTL_S, max_pending: int = MAX_PENDING):
        self.db = db
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        db.migrate(SCHEMA)

    def is_approved(self, key: AccountKey, sender_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM pairing_approved WHERE provider=? AND account=? AND sender_id=?",
                               (key.provider, key.account, sender_id)).fetchone() is not None

    def offer(self, message: InboundMessage, reply_target: str, *,
              now: float | None = None) -> PairingRequest | Refusal:
        """A new code for ``message``'s sender, or why none is issued."""
        now = time.time() if now is None else now
        self._expire(now)
        key = AccountKey(message.provider, message.account)
        held = self.db.execute("SELECT 1 FROM pairing_requests WHERE provider=? AND account=? AND sender_id=?",
                               (key.provider, key.account, message.sender.id)).fetchone()
        if held is not None:
            return "rate_limited"
        (pending,) = self.db.execute("SELECT COUNT(*) FROM pairing_requests WHERE provider=? AND account=? "
                                     "AND state='pending'", (key.provider, key.account)).fetchone()
        if pending >= self.max_pending:
            return "full"
        while True:
            code = new_code()
            cursor = self.db.execute(
                "INSERT INTO pairing_requests (provider, account, sender_id, code, sender_name, sender_username, "
                "reply_target, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (key.provider, key.account, message.sender.id, code, message.sender.name, message.sender.username,
                 reply_target, now, now + self.ttl_s))
            if cursor.rowcount == 1:
                break  # else the code collided with another one of this provider: draw again
        request = self._find(key.provider, code)
        assert request is not None
        return request

    def pending(self, provider: str | None = None, *, now: float | None = None) -> list[PairingRequest]:
        self._expire(time.time() if now is None else now)
        sql = "SELECT * FROM pairing_requests WHERE state='pending'"
        params: tuple[str, ...] = ()
        if provider is not None:
            sql, params = sql + " AND provider=?", (provider,)
        return [_request(r) for r in self.db.execute(sql + " ORDER BY created_at", params)]

    def approve(self, provider: str, code: str, *, now: float | None = None) -> PairingRequest | None:
        """Let the sender of a pending ``code`` in; ``None`` when no such code is pending."""
        now = time.time() if now is None else now
        self._expire(now)
        request = self._find(provider, code)
        if request is None or request.state != "pending":
            return None
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO pairing_approved (provider, account, sender_id, sender_name, sender_username, "
                         "approved_at) VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                         (request.provider, request.account, request.sender_id, request.sender_name,
                          request.sender_username, now))
            conn.execute("DELETE FROM pairing_requests WHERE provider=? AND code=?", (provider, request.code))
        return request

    def deny(self, provider: str, code: str, *, now: float | None = None) -> PairingRequest | None:
        """Refuse a pending ``code``. The row stays until it expires so the sender gets no new code."""
        self._expire(time.time() if now is None else now)
        request = self._find(provider, code)
        if request is None or request.state != "pending":
            return None
        self.db.execute("UPDATE pairing_requests SET state='denied' WHERE provider=? AND code=?",
                        (provider, request.code))
        return request

    def approved(self, provider: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM pairing_approved"
        params: tuple[str, ...] = ()
        if provider is not None:
            sql, params = sql + " WHERE provider=?", (provider,)
        return [{"provider": r["provider"], "account": r["account"],
                 "sender": {"id": r["sender_id"], "name": r["sender_name"], "username": r["sender_username"]},
                 "approved_at": utcnow_iso(r["approved_at"])}
                for r in self.db.execute(sql + " ORDER BY approved_at", params)]

    def revoke(self, key: AccountKey, sender_id: str) -> bool:
        return self.db.execute("DELETE FROM pairing_approved WHERE provider=? AND account=? AND sender_id=?",
                               (key.provider, key.account, sender_id)).rowcount == 1

    def _find(self, provider: str, code: str) -> PairingRequest | None:
        row = self.db.execute("SELECT * FROM pairing_requests WHERE provider=? AND code=?",
                              (provider, code.strip().upper())).fetchone()
        return _request(row) if row is not None else None

    def _expire(self, now: float) -> None:
        self.db.execute("DELETE FROM pairing_requests WHERE expires_at <= ?", (now,))


def _request(row: Any) -> PairingRequest:
    return PairingRequest(provider=row["provider"], account=row["account"], sender_id=row["sender_id"],
                          code=row["code"], state=row["state"], sender_name=row["sender_name"],
                          sender_username=row["sender_username"], reply_target=row["reply_target"],
                          created_at=row["created_at"], expires_at=row["expires_at"])
