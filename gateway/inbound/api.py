"""Control API routes of the inbound pipeline (served under the control server's auth).

| route | does |
|---|---|
| ``GET /v1/pairing[?provider=]`` | pending pairing requests and approved senders |
| ``POST /v1/pairing/{provider}/{code}/approve`` | approve a code (applies at once) |
| ``POST /v1/pairing/{provider}/{code}/deny`` | refuse a code |
| ``GET /v1/inbox?state=pending|done|failed&limit=`` | inspect inbox messages |
| ``POST /v1/inbox/{id}/retry`` | put a ``failed`` message back in line |
| ``DELETE /v1/inbox/{id}`` | drop a ``failed`` message |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.errors import UnknownProvider

if TYPE_CHECKING:
    from gateway.inbound.pipeline import InboundPipeline


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def routes(pipeline: InboundPipeline) -> list[web.RouteDef]:
    registry = pipeline.gateway.registry

    def provider_of(request: web.Request) -> str:
        return registry.normalize_provider_id(request.match_info["provider"])

    async def list_pairing(request: web.Request) -> web.Response:
        raw = request.query.get("provider")
        try:
            provider = registry.normalize_provider_id(raw) if raw else None
        except UnknownProvider as exc:
            return _error(404, exc.code, str(exc))
        return web.json_response({"requests": [r.to_dict() for r in pipeline.pairing.pending(provider)],
                                  "approved": pipeline.pairing.approved(provider)})

    async def decide(request: web.Request, approve: bool) -> web.Response:
        try:
            provider = provider_of(request)
        except UnknownProvider as exc:
            return _error(404, exc.code, str(exc))
        code = request.match_info["code"].strip().upper()
        result = pipeline.approve(provider, code) if approve else pipeline.deny(provider, code)
        if result is None:
            return _error(404, "unknown_code",
                          f"no pending pairing code {code} for {provider} (codes expire after an hour); "
                          "see `switchboard pairing list`")
        return web.json_response({"approved" if approve else "denied": result.to_dict()})

    async def approve(request: web.Request) -> web.Response:
        return await decide(request, True)

    async def deny(request: web.Request) -> web.Response:
        return await decide(request, False)

    async def list_inbox(request: web.Request) -> web.Response:
        state: Any = request.query.get("state") or None
        if state not in (None, "pending", "done", "failed"):
            return _error(400, "invalid_request", "state must be pending, done or failed")
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return _error(400, "invalid_request", "limit must be a number")
        return web.json_response({"messages": [e.to_dict() for e in pipeline.inbox.list(state, limit)],
                                  "counts": pipeline.inbox.counts()})

    def seq_of(request: web.Request) -> int | None:
        try:
            return int(request.match_info["id"])
        except ValueError:
            return None

    async def retry(request: web.Request) -> web.Response:
        seq = seq_of(request)
        entry = pipeline.retry(seq) if seq is not None else None
        if entry is None:
            return _error(404, "not_found", f"no failed inbox message {request.match_info['id']}")
        return web.json_response({"message": entry.to_dict()})

    async def drop(request: web.Request) -> web.Response:
        seq = seq_of(request)
        if seq is None or not pipeline.inbox.delete(seq):
            return _error(404, "not_found", f"no failed inbox message {request.match_info['id']}")
        return web.json_response({"deleted": seq})

    return [
        web.get("/v1/pairing", list_pairing),
        web.post("/v1/pairing/{provider}/{code}/approve", approve),
        web.post("/v1/pairing/{provider}/{code}/deny", deny),
        web.get("/v1/inbox", list_inbox),
        web.post("/v1/inbox/{id}/retry", retry),
        web.delete("/v1/inbox/{id}", drop),
    ]
