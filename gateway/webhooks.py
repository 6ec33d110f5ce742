"""Provider webhook routes on the daemon's control listener: ``/hooks/<provider>/<account>/...``.

Routes are mounted by a running account and unmounted when it stops, so a stopped account
never keeps an endpoint alive (the original left servers running after stop).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.plugin import AccountKey, WebhookHandler

PREFIX = "/hooks"


class WebhookRouter:
    """A :class:`gateway.plugin.WebhookMount` backed by one aiohttp catch-all route."""

    def __init__(self, base_url: str | None = None) -> None:
        #: ``http://host:port`` of the control TCP listener (``None`` without one): what a
        #: plugin prints so a person knows where its page is (``webchat.ready url=...``).
        self.base_url = base_url
        self._routes: dict[AccountKey, tuple[WebhookHandler, frozenset[str]]] = {}
        self._paths: dict[str, tuple[WebhookHandler, frozenset[str]]] = {}

    def mount(self, key: AccountKey, handler: WebhookHandler, *, methods: Sequence[str] = ("POST",)) -> str:
        self._routes[key] = (handler, frozenset(m.upper() for m in methods))
        return self.path_for(key)

    def unmount(self, key: AccountKey) -> None:
        self._routes.pop(key, None)

    def mount_path(self, path: str, handler: WebhookHandler, *, methods: Sequence[str] = ("GET",)) -> str:
        """Serve ``path`` and everything below it (e.g. the web chat's ``/chat``)."""
        path = "/" + path.strip("/")
        if path == "/" or path.startswith(("/v1", PREFIX, "/metrics", "/healthz", "/readyz")):
            raise ValueError(f"{path!r} is reserved by the control server")
        self._paths[path] = (handler, frozenset(m.upper() for m in methods))
        return path

    def unmount_path(self, path: str) -> None:
        self._paths.pop("/" + path.strip("/"), None)

    def mounted(self, key: AccountKey) -> bool:
        return key in self._routes

    @staticmethod
    def path_for(key: AccountKey) -> str:
        return f"{PREFIX}/{key.provider}/{key.account}/"

    def add_routes(self, app: web.Application) -> None:
        """Add the hook routes and a catch-all for mounted paths: call it after every other route."""
        app.router.add_route("*", PREFIX + "/{provider}/{account}/{tail:.*}", self._dispatch)
        app.router.add_route("*", PREFIX + "/{provider}/{account}", self._dispatch)
        app.router.add_route("*", "/{tail:.+}", self._dispatch_path)

    async def _dispatch_path(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        while path:
            entry = self._paths.get(path)
            if entry is not None:
                handler, methods = entry
                if request.method not in methods:
                    raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
                return await handler(request)
            path = path.rsplit("/", 1)[0]
        raise web.HTTPNotFound()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        key = AccountKey(request.match_info["provider"], request.match_info["account"])
        entry = self._routes.get(key)
        if entry is None:
            raise web.HTTPNotFound(text="no running account at this webhook path\n")
        handler, methods = entry
        if request.method not in methods:
            raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
        return await handler(request)
