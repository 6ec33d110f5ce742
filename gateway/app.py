"""The :class:`Gateway`: one object that owns every piece of a running Switchboard.

No global state: tests build several gateways in one process. The daemon
(:mod:`gateway.daemon`) adds signals, logging and sd_notify around :meth:`Gateway.run`.

Start order: state store, supervisor, inbound pipeline, outbox, control server, accounts,
config watcher. Shutdown order (DESIGN.md §4): stop the watcher, stop accepting control
requests that create work, drain the inbound pipeline and flush the outbox (each bounded by
``gateway.outbox.flush_timeout_s``; the outbox lets sends in flight finish while the accounts
are still connected), stop accounts in parallel (bounded), close the control server.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog

from gateway import __version__
from gateway.config import Config
from gateway.events import EventBus
from gateway.metrics import Metrics
from gateway.plugin import AccountKey, InboundMessage
from gateway.registry import Registry
from gateway.secrets import SecretRedactor, secret_values
from gateway.status import StatusStore, utcnow_iso
from gateway.store import AccountStore, Database
from gateway.supervisor import AccountServices, Supervisor
from gateway.webhooks import WebhookRouter

if TYPE_CHECKING:
    from gateway.sdnotify import SystemdNotifier

log = structlog.get_logger("gateway.app")


class Service(Protocol):
    """A long-running part of the gateway (inbound pipeline, outbox, control server...).

    Optional methods: ``prepare()`` (awaited before any service starts), ``stop_accepting()``
    and ``drain()`` (shutdown, see :meth:`Gateway._shutdown`), ``api_routes()``.
    """

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...


#: Factories for the optional services, in start order. Each takes the gateway.
ServiceFactory = Callable[["Gateway"], Service]


class Gateway:
    def __init__(self, config: Config, registry: Registry, *, notifier: SystemdNotifier | None = None,
                 redactor: SecretRedactor | None = None, services: list[ServiceFactory] | None = None):
        self.config = config
        self.registry = registry
        self.notifier = notifier
        self.redactor = redactor or SecretRedactor()
        self.status = StatusStore()
        self.events = EventBus()
        self.metrics = Metrics(self.status)
        self.db = Database.open_in(config.gateway.state_path)
        self.webhooks = WebhookRouter(base_url=listen_url(config.gateway.control.listen))
        self.supervisor = Supervisor(registry, self.status, config.gateway.restart,
                                     AccountServices(emit=self.emit, store_for=self.account_store,
                                                     webhooks=self.webhooks))
        self._emit_hook: Callable[[InboundMessage], Awaitable[bool]] | None = None
        self._stop = anyio.Event()
        self._running = anyio.Event()
        self.restart_requested = False
        self.stragglers: list[AccountKey] = []
        self.status.update_gateway(version=__version__, pid=os.getpid(), started_at=utcnow_iso(),
                                   config_path=str(config.path) if config.path else None,
                                   reload={"mode": config.gateway.reload.mode, "last_at": None, "last_ok": None,
                                           "last_error": None, "last_trigger": None, "last_actions": None})
        self._register_secrets(config)
        self.services: list[Service] = [factory(self) for factory in (services if services is not None
                                                                       else default_services())]
        self.status.set_global_issues("plugins", registry.issues())

    # --- wiring used by the services -----------------------------------------------------------

    def set_inbound(self, accept: Callable[[InboundMessage], Awaitable[bool]]) -> None:
        """The inbound pipeline registers its ``accept`` here."""
        self._emit_hook = accept

    async def emit(self, message: InboundMessage) -> bool:
        if self._emit_hook is None:
            raise RuntimeError("no inbound pipeline is configured")
        return await self._emit_hook(message)

    def account_store(self, key: AccountKey) -> AccountStore:
        return AccountStore(self.db, key)

    def service(self, kind: type[Any]) -> Any:
        """The running service of type ``kind`` (e.g. the outbox), or ``None``."""
        return next((s for s in self.services if isinstance(s, kind)), None)

    def _register_secrets(self, config: Config) -> None:
        values: list[str] = []
        for account in config.accounts.values():
            values.extend(secret_values(account.config))
        if config.handler.secret is not None:
            values.append(config.handler.secret.get_secret_value())
        self.redactor.register(values)

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running.is_set() and not self._stop.is_set()

    async def wait_running(self) -> None:
        await self._running.wait()

    def request_stop(self, *, restart: bool = False) -> None:
        """Begin a graceful shutdown (``restart`` asks the daemon to build a fresh gateway)."""
        self.restart_requested = self.restart_requested or restart
        self._stop.set()

    async def run(self, *, on_stopped: Callable[[], None] | None = None,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`request_stop`, then shut down in order.

        ``on_stopped`` is called once shutdown is complete, before the task group is left:
        an account that ignored cancellation would otherwise hold this call open forever,
        so the daemon can exit without waiting for it.
        """
        try:
            for service in self.services:
                prepare = getattr(service, "prepare", None)
                if prepare is not None:
                    await prepare()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.db.run_checkpoints)
                await tg.start(self.supervisor.run)
                service_scopes: list[anyio.CancelScope] = []
                for service in self.services:
                    scope = anyio.CancelScope()
                    service_scopes.append(scope)
                    await tg.start(_run_in_scope, scope, service)
                self.supervisor.start_many(self.config.accounts.values())
                self._running.set()
                log.info("gateway.started", accounts=len(self.config.accounts), pid=os.getpid())
                task_status.started()
                await self._stop.wait()
                await self._shutdown(service_scopes)
                if on_stopped is not None:
                    on_stopped()
                tg.cancel_scope.cancel()
        finally:
            self.db.close()

    async def _shutdown(self, service_scopes: list[anyio.CancelScope]) -> None:
        log.info("gateway.stopping")
        for service in self.services:
            stop_accepting = getattr(service, "stop_accepting", None)
            if stop_accepting is not None:
                stop_accepting()
        # Drain while the accounts still run: sends in flight need their account's client,
        # and a send cut off by the account stopping is sent again after the restart.
        for service in self.services:
            drain = getattr(service, "drain", None)
            if drain is not None:
                with anyio.move_on_after(self.config.gateway.outbox.flush_timeout_s):
                    await drain()
        stragglers = await self.supervisor.shutdown()
        self.stragglers = stragglers
        for scope in reversed(service_scopes):
            scope.cancel()
        log.info("gateway.stopped", stragglers=[str(k) for k in stragglers])


async def _run_in_scope(scope: anyio.CancelScope, service: Service, *,
                        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await service.run(task_status=task_status)


def listen_url(listen: str | None) -> str | None:
    """``http://host:port`` for a ``gateway.control.listen`` value (wildcards shown as loopback)."""
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{host}:{port}"


def default_services() -> list[ServiceFactory]:
    """The services a daemon runs, in start order (reload watcher last)."""
    from gateway.control import ControlServer
    from gateway.inbound import InboundPipeline
    from gateway.outbound import Outbox
    from gateway.reload import Reloader

    return [InboundPipeline, Outbox, ControlServer, Reloader]
