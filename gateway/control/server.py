"""The control server: the HTTP API on the Unix socket and, optionally, on TCP.

One aiohttp application is served on both listeners. Over the Unix socket (mode 0600) every
call is allowed; over ``gateway.control.listen`` every ``/v1`` call and ``/metrics`` need
the bearer token (``/``, ``/healthz``, ``/readyz`` and the UI's static files do not).
Provider webhooks (``/hooks/...``) and paths mounted by running accounts (the web chat's
``/chat``) are added last, so they never shadow an API route.

Shutdown: :meth:`ControlServer.stop_accepting` makes requests that create work answer 503;
the listeners close when the service's scope is cancelled (after the accounts stopped and
the outbox drained), and open event streams end at that moment.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from aiohttp import web

from gateway.config import ControlConfig
from gateway.control.api import ControlApi
from gateway.control.auth import AUTH_KEY, Authenticator, TokenFile
from gateway.control.http import MAX_BODY_KB, Handler, error_middleware, error_response
from gateway.control.socketfile import ControlSocket
from gateway.errors import SwitchboardError

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.reload import ReloadResult

log = structlog.get_logger("gateway.control")

UI_DIR = Path(__file__).parent / "ui"
UI_FILES = {"/": ("index.html", "text/html"), "/ui/dashboard.js": ("dashboard.js", "text/javascript"),
            "/ui/dashboard.css": ("dashboard.css", "text/css")}
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: Paths that need the token over TCP (besides everything under /v1/).
PROTECTED = ("/metrics",)
#: Where the token may come as ``?token=`` (EventSource cannot send headers).
QUERY_TOKEN_PATHS = ("/v1/events",)


class ControlListenError(SwitchboardError):
    code = "control_listen"


class ControlServer:
    """A gateway service (see :class:`gateway.app.Service`)."""

    #: Seconds between SSE heartbeat comments.
    heartbeat_s = 15.0

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.accepting = True
        self.closing = anyio.Event()
        self.socket_path = gateway.config.gateway.socket_path
        #: ``(host, port)`` actually bound when ``gateway.control.listen`` is set.
        self.tcp_address: tuple[str, int] | None = None
        self._claimed: tuple[ControlSocket, socket.socket] | None = None

    async def prepare(self) -> None:
        """Claim the socket before any service starts: a second daemon on the same state
        directory is refused before its inbox or outbox could act on shared state."""
        if self._claimed is None:
            claim = ControlSocket(self.socket_path)
            self._claimed = (claim, await claim.claim())

    @property
    def control(self) -> ControlConfig:
        return self.gateway.config.gateway.control

    def stop_accepting(self) -> None:
        """Shutdown has begun: send, poll, reload and account starts answer 503 from now on."""
        self.accepting = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.prepare()
        assert self._claimed is not None
        claim, unix_sock = self._claimed
        try:
            token = _token_file(self.control) if self.control.listen else None
            runner = web.AppRunner(build_app(self, Authenticator(token)), access_log=None, handle_signals=False,
                                   shutdown_timeout=2.0)
            await runner.setup()
            try:
                await web.SockSite(runner, unix_sock).start()
                if self.control.listen:
                    await self._listen_tcp(runner, self.control.listen)
                self._hook_reloads()
                listen = f"{self.tcp_address[0]}:{self.tcp_address[1]}" if self.tcp_address else None
                self.gateway.status.update_gateway(control={"socket": str(self.socket_path), "listen": listen})
                log.info("control.listening", socket=str(self.socket_path), listen=listen,
                         token_file=str(token.path) if token else None)
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self.closing.set()
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await runner.cleanup()
        finally:
            self._claimed = None
            unix_sock.close()
            claim.release()

    async def _listen_tcp(self, runner: web.AppRunner, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        site = web.TCPSite(runner, host, int(port))
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ControlListenError(f"cannot listen on {listen} (gateway.control.listen): {reason}") from None
        for address in runner.addresses:
            if isinstance(address, tuple):
                self.tcp_address = (str(address[0]), int(address[1]))
                break

    def _hook_reloads(self) -> None:
        from gateway.reload import Reloader

        reloader = self.gateway.service(Reloader)
        if reloader is not None and self._on_reload not in reloader.after_reload:
            reloader.after_reload.append(self._on_reload)

    def _on_reload(self, result: ReloadResult) -> None:
        outcome = "ok" if result.ok else ("rejected" if result.plan is None else "failed")
        self.gateway.metrics.reloads.labels(outcome=outcome).inc()
        self.gateway.events.publish("reload", result.to_dict())


def _token_file(control: ControlConfig) -> TokenFile:
    path = Path(control.token_file or "~/.config/switchboard/token").expanduser()
    return TokenFile.ensure(path)


def build_app(server: ControlServer, auth: Authenticator) -> web.Application:
    api = ControlApi(server)
    app = web.Application(client_max_size=server.control.max_body_kb * 1024,
                          middlewares=[error_middleware, _auth_middleware])
    app[AUTH_KEY] = auth
    app[MAX_BODY_KB] = server.control.max_body_kb
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/v1/status", api.status),
        ("GET", "/v1/events", api.events),
        ("POST", "/v1/send", api.send),
        ("POST", "/v1/poll", api.poll),
        ("GET", "/v1/outbox", api.outbox_list),
        ("POST", "/v1/outbox/{id}/retry", api.outbox_retry),
        ("DELETE", "/v1/outbox/{id}", api.outbox_drop),
        ("POST", "/v1/reload", api.reload),
        ("POST", "/v1/accounts/{provider}/{account}/{action:start|stop|restart}", api.account_action),
        ("GET", "/metrics", api.metrics),
        ("GET", "/healthz", api.healthz),
        ("GET", "/readyz", api.readyz),
    ]
    for method, path, handler in routes:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD
        else:
            app.router.add_route(method, path, handler)
    for path, (name, content_type) in UI_FILES.items():
        app.router.add_get(path, _static(UI_DIR / name, content_type))
    for service in server.gateway.services:
        extra = getattr(service, "api_routes", None)
        for route in (extra() if extra is not None else ()):
            if not route.path.startswith("/v1/"):
                route = dataclasses.replace(route, path="/v1/" + route.path.lstrip("/"))
            route.register(app.router)
    _answer_405_for_other_methods(app)
    app.router.add_route("*", "/v1/{tail:.*}", _not_found)
    server.gateway.webhooks.add_routes(app)
    return app


def _answer_405_for_other_methods(app: web.Application) -> None:
    # Without this a wrong method would fall through to the webhooks' catch-all (a 404).
    for resource in app.router.resources():
        methods = sorted({route.method for route in resource})
        if "*" in methods:
            continue

        async def not_allowed(request: web.Request, allowed: list[str] = methods) -> web.StreamResponse:
            raise web.HTTPMethodNotAllowed(request.method, allowed)

        resource.add_route("*", not_allowed)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


def _static(path: Path, content_type: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        body = await anyio.Path(path).read_bytes()
        return web.Response(body=body, headers={"Content-Type": f"{content_type}; charset=utf-8", **UI_HEADERS})

    return serve


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/v1/") or path == "/v1" or path in PROTECTED:
        auth: Any = request.app[AUTH_KEY]
        if not auth.allows(request, allow_query=path in QUERY_TOKEN_PATHS):
            return error_response(401, "unauthorized", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)
