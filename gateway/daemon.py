"""``switchboard run``: the process around a :class:`~gateway.app.Gateway`.

uvloop, structlog, signals (SIGTERM/SIGINT: graceful shutdown, a second one forces exit;
SIGHUP: reload), sd_notify (READY, STATUS, STOPPING, RELOADING, WATCHDOG) and the in-process
gateway restart that reload asks for when ``gateway.state_dir`` or ``gateway.control.*``
change.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

import anyio
import structlog

from gateway.app import Gateway
from gateway.config import Config, load_config
from gateway.errors import ConfigError, SwitchboardError
from gateway.logging import configure_logging
from gateway.registry import Registry
from gateway.sdnotify import SystemdNotifier
from gateway.secrets import SecretRedactor

log = structlog.get_logger("gateway.daemon")

EXIT_FORCED = 130


def tune_gc() -> None:
    """Fewer, cheaper collections for a long-running daemon with many long-lived objects.

    With CPython's default gen0 threshold (700) starting ten thousand accounts triggers
    thousands of collections that each walk the growing heap; freezing the objects created
    at startup takes them out of every later collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_daemon(config_path: Path) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    tune_gc()
    os.umask(0o077)  # state files (the SQLite WAL and shm included) are the daemon's alone
    registry = Registry.discover()
    config = load_config(config_path, registry)  # ConfigError -> the CLI prints every problem
    redactor = SecretRedactor()
    configure_logging(config.gateway.log_format, config.gateway.log_level, redactor=redactor)
    notifier = SystemdNotifier()
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        options = {}
    try:
        return anyio.run(_main, config, registry, notifier, redactor, backend="asyncio", backend_options=options)
    except BaseExceptionGroup as group:
        raise _the_switchboard_error(group) from None


def _the_switchboard_error(group: BaseExceptionGroup) -> BaseException:
    """A start that failed on purpose (e.g. "already running") as its one error, for the CLI."""
    errors = [e for e in _leaves(group) if isinstance(e, SwitchboardError)]
    return errors[0] if len(errors) == 1 else group


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def _main(config: Config, registry: Registry, notifier: SystemdNotifier, redactor: SecretRedactor) -> int:
    while True:
        gateway = Gateway(config, registry, notifier=notifier, redactor=redactor)
        finished = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_handle_signals, gateway, notifier)
            tg.start_soon(notifier.run_watchdog)
            tg.start_soon(_run_gateway, gateway, finished)
            await gateway.wait_running()
            notifier.ready(status=_status_line(gateway))
            await finished.wait()
            if gateway.stragglers:
                # Accounts that ignored cancellation cannot be awaited; the process leaves them.
                log.warning("daemon.leaving_stragglers", accounts=[str(k) for k in gateway.stragglers])
                if gateway.restart_requested:
                    log.info("daemon.reexec", reason="gateway restart with stragglers")
                    os.execv(sys.executable, [sys.executable, "-m", "gateway", *sys.argv[1:]])
                os._exit(0)
            tg.cancel_scope.cancel()
        if not gateway.restart_requested:
            log.info("daemon.exit", code=0)
            return 0
        config = _reload_for_restart(gateway)
        log.info("daemon.restarting", config_path=str(config.path))


async def _run_gateway(gateway: Gateway, finished: anyio.Event) -> None:
    try:
        await gateway.run(on_stopped=finished.set)
    finally:
        finished.set()


async def _handle_signals(gateway: Gateway, notifier: SystemdNotifier) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        stopping = False
        async for signum in signals:
            if signum == signal.SIGHUP:
                reloader = _reloader(gateway)
                if reloader is not None:
                    reloader.request("sighup")
                continue
            if stopping:
                log.warning("daemon.forced_exit", signal=signal.Signals(signum).name)
                os._exit(EXIT_FORCED)
            stopping = True
            log.info("daemon.signal", signal=signal.Signals(signum).name, action="graceful shutdown")
            notifier.stopping()
            gateway.request_stop()


def _reloader(gateway: Gateway):  # type: ignore[no-untyped-def]
    from gateway.reload import Reloader

    return gateway.service(Reloader)


def _reload_for_restart(gateway: Gateway) -> Config:
    """The configuration for an in-process restart: the file as it is now, else the last good one."""
    path = gateway.config.path
    if path is None:
        return gateway.config
    try:
        return load_config(path, gateway.registry)
    except ConfigError as exc:
        log.error("daemon.restart_config_invalid", problems=[str(p) for p in exc.problems],
                  action="restarting with the last valid configuration")
        return gateway.config


def _status_line(gateway: Gateway) -> str:
    counts = gateway.status.counts_by_state()
    running = counts.get("running", 0) + counts.get("starting", 0)
    return f"{len(gateway.config.accounts)} accounts configured, {running} starting/running"
