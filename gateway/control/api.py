"""Handlers of the ``/v1`` API, ``/metrics``, ``/healthz`` and ``/readyz`` (see docs/control-api.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.config import normalize_account_id
from gateway.control.http import ApiError, query_flag, query_int, read_model
from gateway.control.models import PollBody, SendBody
from gateway.control.report import public_snapshot, readiness, run_probes, status_report
from gateway.control.sse import serve_events
from gateway.errors import UnknownAccount
from gateway.outbound import DeliveryRequest, Outbox, PollRequest
from gateway.plugin import AccountKey
from gateway.reload import Reloader

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.control.server import ControlServer

#: ``?timeout_ms=`` of a status probe: default and ceiling.
PROBE_TIMEOUT_MS = 5_000
PROBE_TIMEOUT_MAX_MS = 60_000
#: ``?wait=1`` on send/poll waits at most this long by default.
WAIT_TIMEOUT_MS = 60_000
#: Account start/restart wait this long for the new run to connect or fail.
SETTLE_TIMEOUT_MS = 10_000
ACTIVE_STATES = ("starting", "running", "backoff")
SETTLED_STATES = ("running", "backoff", "failed", "stopped")


class ControlApi:
    def __init__(self, server: ControlServer):
        self.server = server

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway

    def _require_accepting(self) -> None:
        if not self.server.accepting:
            raise ApiError(503, "shutting_down", "the gateway is shutting down; try again once it is back")

    # --- status ------------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        if query_flag(request, "probe"):
            timeout_ms = query_int(request, "timeout_ms", PROBE_TIMEOUT_MS, low=1, high=PROBE_TIMEOUT_MAX_MS)
            await run_probes(self.gateway, timeout_ms / 1000)
        return web.json_response(status_report(self.gateway))

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await serve_events(request, self.gateway, self.server.closing, self.server.heartbeat_s)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.gateway.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = readiness(self.gateway, accepting=self.server.accepting)
        if not reasons:
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "reasons": reasons,
                                  "error": {"code": "not_ready", "message": "; ".join(reasons)}}, status=503)

    # --- outbound ------------------------------------------------------------------------------

    def _outbox(self) -> Outbox:
        outbox = self.gateway.service(Outbox)
        if outbox is None:
            raise ApiError(503, "unavailable", "this gateway runs without an outbox")
        return outbox

    async def _deliver(self, request: web.Request, delivery: DeliveryRequest) -> web.Response:
        wait = query_flag(request, "wait")
        timeout_ms = query_int(request, "timeout_ms", WAIT_TIMEOUT_MS, low=1, high=3_600_000)
        outbox = self._outbox()
        try:
            record = await outbox.deliver(delivery, wait=wait, timeout=timeout_ms / 1000 if wait else None)
        except TimeoutError:
            extra = {}
            if delivery.idempotency_key is not None:  # the key finds the queued message without resending it
                extra["record"] = (await outbox.deliver(delivery)).to_dict()
            raise ApiError(504, "timeout", f"not delivered within {timeout_ms / 1000:g} s; the message stays "
                           "queued (see `switchboard outbox list`)", **extra) from None
        return web.json_response({"message": record.to_dict()}, status=200 if wait else 202)

    async def send(self, request: web.Request) -> web.Response:
        self._require_accepting()
        body = await read_model(request, SendBody)
        return await self._deliver(request, DeliveryRequest(
            provider=body.provider, to=body.to, text=body.text, account=body.account, media=body.media,
            reply_to=body.reply_to, thread=body.thread, idempotency_key=body.idempotency_key))

    async def poll(self, request: web.Request) -> web.Response:
        self._require_accepting()
        body = await read_model(request, PollBody)
        poll = PollRequest(question=body.question, options=body.options, max_selections=body.max_selections,
                           duration_hours=body.duration_hours)
        return await self._deliver(request, DeliveryRequest(
            provider=body.provider, to=body.to, account=body.account, thread=body.thread, poll=poll,
            idempotency_key=body.idempotency_key))

    async def outbox_list(self, request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        limit = query_int(request, "limit", 100, low=1, high=1000)
        records = self._outbox().list(state=state, limit=limit)
        return web.json_response({"messages": [r.to_dict() for r in records]})

    async def outbox_retry(self, request: web.Request) -> web.Response:
        self._require_accepting()
        outbox = self._outbox()
        message_id = request.match_info["id"]
        try:
            record = await outbox.retry(message_id)
        except KeyError:
            raise _no_message(message_id) from None
        return web.json_response({"message": record.to_dict()})

    async def outbox_drop(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        if not await self._outbox().drop(message_id):
            raise _no_message(message_id)
        return web.json_response({"dropped": message_id})

    # --- reload and accounts -----------------------------------------------------------------

    async def reload(self, request: web.Request) -> web.Response:
        self._require_accepting()
        reloader = self.gateway.service(Reloader)
        if reloader is None:
            raise ApiError(503, "unavailable", "this gateway runs without the config reloader")
        if self.gateway.config.path is None:
            raise ApiError(409, "no_config_file", "this gateway was started without a config file to reload")
        result = await reloader.reload("api")
        return web.json_response(result.to_dict())

    async def account_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        key = self._account_key(request)
        timeout_ms = query_int(request, "timeout_ms", SETTLE_TIMEOUT_MS, low=0, high=600_000)
        supervisor = self.gateway.supervisor
        before = self.gateway.status.get(key) or {}
        if action == "stop":
            ok = await supervisor.stop_account(key)
        else:
            self._require_accepting()
            resolved = self.gateway.config.accounts.get(key) or supervisor.resolved(key)
            if resolved is None:
                raise UnknownAccount(f"account {key} is no longer in the configuration")
            if not resolved.enabled:
                raise ApiError(409, "account_disabled",
                               f"{key} is disabled ({resolved.disabled_reason or 'enabled = false'}); enable it with "
                               f"`switchboard providers enable --provider {key.provider} --account {key.account}`")
            if action == "start":
                await supervisor.start_account(resolved)
                ok = True
                started = before.get("state") not in ACTIVE_STATES
            else:
                ok = started = await supervisor.restart_account(key, resolved)
            if started:
                await self._settle(key, before.get("starts") or 0, timeout_ms / 1000)
        snapshot = self.gateway.status.get(key)
        return web.json_response({"ok": ok, "action": action,
                                  "account": public_snapshot(snapshot) if snapshot is not None else None})

    async def _settle(self, key: AccountKey, starts_before: int, timeout: float) -> None:
        """Wait (bounded) until a new run of ``key`` connected, crashed or failed."""
        status = self.gateway.status

        def settled() -> bool:
            snap = status.get(key)
            if snap is None or snap["state"] in ("disabled", "unconfigured"):
                return True
            return (snap.get("starts") or 0) > starts_before and snap["state"] in SETTLED_STATES

        with anyio.move_on_after(timeout), status.subscribe() as changes:
            while not settled():
                await changes.receive()

    def _account_key(self, request: web.Request) -> AccountKey:
        provider = self.gateway.registry.normalize_provider_id(request.match_info["provider"])
        key = AccountKey(provider, normalize_account_id(request.match_info["account"]))
        if key in self.gateway.config.accounts or self.gateway.supervisor.resolved(key) is not None:
            return key
        known = [k.account for k in self.gateway.config.accounts if k.provider == provider]
        raise UnknownAccount(f"no account {key}; accounts of {provider}: {', '.join(known) or '(none)'}")


def _no_message(message_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no outbox message {message_id}; see `switchboard outbox list`")
