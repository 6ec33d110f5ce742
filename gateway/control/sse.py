"""``GET /v1/events``: server-sent events for the dashboard, ``status --watch`` and scripts.

Event names and their ``data`` (JSON):

* ``status`` -- ``{"type": "snapshot", "gateway", "accounts", "issues"}`` first and after a
  resync; then ``{"type": "account", "provider", "account", "fields"}`` (changed fields
  only), ``{"type": "removed", "provider", "account"}``, ``{"type": "gateway", "fields"}``;
* ``issues`` -- ``{"issues": [...]}`` whenever the list of status issues changes;
* ``inbound``, ``outbound``, ``reload`` (and any other gateway event) --
  ``{"kind", "at", "data"}`` from :class:`gateway.events.EventBus`.

A comment line (``: heartbeat``) goes out every ``heartbeat_s`` so proxies keep the
connection open and dead clients are noticed. A client that reads too slowly gets a fresh
``snapshot`` instead of holding the gateway back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gateway.control.report import account_snapshots, collect_issues, public_snapshot, status_report
from gateway.events import Event
from gateway.status import StatusChange

if TYPE_CHECKING:
    from gateway.app import Gateway

_EVENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def frame(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


async def serve_events(request: web.Request, gateway: Gateway, closing: anyio.Event,
                       heartbeat_s: float) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    send, receive = anyio.create_memory_object_stream[bytes](256)
    with gateway.status.subscribe() as changes, gateway.events.subscribe() as events, send, receive:
        report = status_report(gateway)
        await response.write(frame("status", {"type": "snapshot", **report}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump_status, gateway, changes, send.clone(), report["issues"])
            tg.start_soon(_pump_events, events, send.clone())
            tg.start_soon(_cancel_when, closing, tg.cancel_scope)
            try:
                await _write_frames(response, receive, heartbeat_s)
            finally:
                tg.cancel_scope.cancel()
    return response


async def _write_frames(response: web.StreamResponse, frames: MemoryObjectReceiveStream[bytes],
                        heartbeat_s: float) -> None:
    while True:
        data = b": heartbeat\n\n"
        with anyio.move_on_after(heartbeat_s):
            data = await frames.receive()
        try:
            await response.write(data)
        except (ConnectionError, RuntimeError):
            return  # the client went away (aiohttp raises ConnectionResetError or RuntimeError)


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _pump_status(gateway: Gateway, changes: MemoryObjectReceiveStream[StatusChange],
                       out: MemoryObjectSendStream[bytes], issues: list[dict[str, Any]]) -> None:
    async with out:
        async for change in changes:
            batch = [change]
            while True:  # coalesce a burst: one issues check per batch
                try:
                    batch.append(changes.receive_nowait())
                except anyio.WouldBlock:
                    break
            recheck = False
            for item in batch:
                if item.kind == "resync":
                    report = status_report(gateway)
                    issues = report["issues"]
                    await out.send(frame("status", {"type": "snapshot", **report}))
                    continue
                recheck = recheck or item.kind != "gateway"
                data = _change_data(item)
                if data is not None:
                    await out.send(frame("status", data))
            if recheck:
                current = [i.to_dict() for i in collect_issues(gateway, account_snapshots(gateway))]
                if current != issues:
                    issues = current
                    await out.send(frame("issues", {"issues": issues}))


def _change_data(change: StatusChange) -> dict[str, Any] | None:
    if change.kind == "account" and change.key is not None:
        return {"type": "account", "provider": change.key.provider, "account": change.key.account,
                "fields": public_snapshot(change.fields or {})}
    if change.kind == "removed" and change.key is not None:
        return {"type": "removed", "provider": change.key.provider, "account": change.key.account}
    if change.kind == "gateway":
        return {"type": "gateway", "fields": dict(change.fields or {})}
    return None


async def _pump_events(events: MemoryObjectReceiveStream[Event], out: MemoryObjectSendStream[bytes]) -> None:
    async with out:
        async for event in events:
            if _EVENT_NAME.match(event.kind):
                await out.send(frame(event.kind, event.to_dict()))
