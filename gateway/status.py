"""The live status of every account, and the change feed that SSE, metrics and the UI read.

Snapshots are kept as JSON-ready dicts (timestamps already ISO-8601 strings) so that a full
status snapshot of ten thousand accounts is a cheap shallow copy. Subscribers get a bounded
stream of :class:`StatusChange`; a subscriber that falls behind gets a ``resync`` marker
instead of blocking the supervisor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gateway.plugin import AccountKey, AccountState, StatusIssue

#: Snapshot fields every account has, in display order.
SNAPSHOT_FIELDS = (
    "provider", "account", "name", "state", "enabled", "configured", "connected", "token_source",
    "last_start_at", "last_stop_at", "last_connected_at", "last_error", "last_error_kind", "restarts",
    "starts", "next_retry_at", "last_inbound_at", "last_outbound_at", "probe",
)


def utcnow_iso(ts: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StatusChange:
    """One change: an account's fields, an account removed, issues changed, or ``resync``."""

    kind: str  # "account" | "removed" | "issues" | "gateway" | "resync"
    key: AccountKey | None = None
    fields: Mapping[str, Any] | None = None


class StatusStore:
    """Account snapshots + status issues, with change notification."""

    def __init__(self, *, subscriber_buffer: int = 1024):
        self._accounts: dict[AccountKey, dict[str, Any]] = {}
        self._account_issues: dict[AccountKey, list[StatusIssue]] = {}
        self._global_issues: dict[str, list[StatusIssue]] = {}
        self._subscribers: set[MemoryObjectSendStream[StatusChange]] = set()
        self._buffer = subscriber_buffer
        self._state_counts: dict[str, int] = {s.value: 0 for s in AccountState}
        self.gateway: dict[str, Any] = {"pid": os.getpid(), "started_at": utcnow_iso()}

    # --- accounts ---------------------------------------------------------------------------

    def ensure(self, key: AccountKey, **initial: Any) -> dict[str, Any]:
        snap = self._accounts.get(key)
        if snap is None:
            snap = {name: None for name in SNAPSHOT_FIELDS}
            snap.update(provider=key.provider, account=key.account, state=AccountState.STOPPED.value,
                        enabled=True, configured=True, connected=False, restarts=0, starts=0)
            self._accounts[key] = snap
            self._state_counts[AccountState.STOPPED.value] += 1
        if initial:
            self.update(key, **initial)
        return snap

    def update(self, key: AccountKey, **fields: Any) -> None:
        snap = self._accounts.get(key)
        if snap is None:
            snap = self.ensure(key)
        state = fields.get("state")
        if state is not None:
            state = fields["state"] = AccountState(state).value
            self._state_counts[snap["state"]] -= 1
            self._state_counts[state] += 1
        snap.update(fields)
        if self._subscribers:
            self._publish(StatusChange("account", key, dict(fields)))

    def increment(self, key: AccountKey, name: str, by: int = 1) -> int:
        snap = self.ensure(key)
        snap[name] = (snap.get(name) or 0) + by
        if self._subscribers:
            self._publish(StatusChange("account", key, {name: snap[name]}))
        return snap[name]

    def touch(self, key: AccountKey, name: str) -> None:
        """Stamp ``name`` (e.g. ``last_inbound_at``) with now, if the account is known."""
        if key in self._accounts:
            self.update(key, **{name: utcnow_iso()})

    def remove(self, key: AccountKey) -> None:
        snap = self._accounts.pop(key, None)
        if snap is not None:
            self._state_counts[snap["state"]] -= 1
            self._account_issues.pop(key, None)
            if self._subscribers:
                self._publish(StatusChange("removed", key))

    def get_field(self, key: AccountKey, name: str) -> Any:
        snap = self._accounts.get(key)
        return snap.get(name) if snap is not None else None

    def get(self, key: AccountKey) -> dict[str, Any] | None:
        snap = self._accounts.get(key)
        return dict(snap) if snap is not None else None

    def state(self, key: AccountKey) -> AccountState | None:
        snap = self._accounts.get(key)
        return AccountState(snap["state"]) if snap is not None else None

    def keys(self) -> list[AccountKey]:
        return list(self._accounts)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every account snapshot (shallow copies), in insertion order."""
        return [dict(s) for s in self._accounts.values()]

    def counts_by_state(self) -> dict[str, int]:
        return dict(self._state_counts)

    # --- issues -------------------------------------------------------------------------------

    def set_account_issues(self, key: AccountKey, issues: Iterable[StatusIssue]) -> None:
        new = list(issues)
        if self._account_issues.get(key, []) == new:
            return
        if new:
            self._account_issues[key] = new
        else:
            self._account_issues.pop(key, None)
        self._publish_issues()

    def add_account_issue(self, key: AccountKey, issue: StatusIssue) -> None:
        current = self._account_issues.get(key, [])
        if issue not in current:
            self.set_account_issues(key, [*current, issue])

    def set_global_issues(self, source: str, issues: Iterable[StatusIssue]) -> None:
        new = list(issues)
        if self._global_issues.get(source, []) == new:
            return
        if new:
            self._global_issues[source] = new
        else:
            self._global_issues.pop(source, None)
        self._publish_issues()

    def issues(self) -> list[StatusIssue]:
        out = [i for group in self._global_issues.values() for i in group]
        out.extend(i for group in self._account_issues.values() for i in group)
        return out

    def account_issues(self, key: AccountKey) -> list[StatusIssue]:
        return list(self._account_issues.get(key, []))

    def _publish_issues(self) -> None:
        if self._subscribers:
            self._publish(StatusChange("issues"))

    # --- gateway-level fields --------------------------------------------------------------------

    def update_gateway(self, **fields: Any) -> None:
        self.gateway.update(fields)
        if self._subscribers:
            self._publish(StatusChange("gateway", None, dict(fields)))

    # --- change feed ---------------------------------------------------------------------------

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[StatusChange]]:
        """A bounded stream of changes; closed when the ``with`` block ends."""
        send, receive = anyio.create_memory_object_stream[StatusChange](self._buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

    def _publish(self, change: StatusChange) -> None:
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(change)
            except anyio.WouldBlock:
                # A slow reader: drop what it missed and tell it to re-read the snapshot.
                _drain(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)


def _drain(stream: MemoryObjectSendStream[StatusChange]) -> None:
    state = stream._state  # noqa: SLF001 - anyio exposes no "clear buffer" API
    state.buffer.clear()
    try:
        stream.send_nowait(StatusChange("resync"))
    except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass

