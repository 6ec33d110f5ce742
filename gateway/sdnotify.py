"""Tell systemd about the daemon's state: the ``sd_notify(3)`` protocol, standard library only.

The service manager passes ``NOTIFY_SOCKET`` (a filesystem path, or an abstract socket name
written with a leading ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` / ``WATCHDOG_PID``.
Each notification is one datagram of newline-separated ``KEY=VALUE`` lines. Outside systemd
(no ``NOTIFY_SOCKET``) every method is a cheap no-op, so the daemon calls them unconditionally.

Nothing here raises or logs: a lost notification must never take the gateway down, and the
caller decides whether a ``False`` return is worth a log line.
"""

from __future__ import annotations

import os
import socket
import time

import anyio

__all__ = ["SystemdNotifier"]


def _socket_address(value: str) -> str | bytes | None:
    """Map ``NOTIFY_SOCKET`` to an ``AF_UNIX`` address, or ``None`` when it is not one."""
    if value.startswith("@"):
        # Abstract namespace: systemd writes the leading NUL as '@'.
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    # systemd also knows vsock: addresses (for VMs); not supported here, so stay disabled.
    return None


class SystemdNotifier:
    """Sends readiness, reload, stop, status and watchdog notifications to systemd."""

    def __init__(self, socket_path: str | None = None) -> None:
        if socket_path is None:
            socket_path = os.environ.get("NOTIFY_SOCKET")
        self._address = _socket_address(socket_path) if socket_path else None
        self.enabled: bool = self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; ``True`` if it was handed to the socket."""
        if self._address is None or not lines:
            return False
        try:
            payload = "\n".join(lines).encode()
            # A fresh socket per message, as libsystemd does: nothing to leak or reopen, and
            # non-blocking so a full receive queue costs a False, never a stalled event loop.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except (OSError, ValueError):
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_line(status))

    def reloading(self) -> bool:
        """A reload starts; ``READY=1`` ends it. The timestamp lets systemd order reload cycles."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """Shutdown has started."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self.notify(_status_line(text))

    def watchdog_ping(self) -> bool:
        """Reset the service watchdog timer."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or ``None`` when off.

        Off when notifications are disabled, ``WATCHDOG_USEC`` is unset or not a positive
        integer, or ``WATCHDOG_PID`` names another process (the variables were inherited).
        """
        if not self.enabled:
            return None
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        if watchdog_pid is not None and watchdog_pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1e6

    async def run_watchdog(self) -> None:
        """Ping the watchdog from the event loop until cancelled; return at once when off.

        The pings run on the loop on purpose: a loop blocked for longer than ``WatchdogSec``
        stops pinging, and systemd restarts the stuck daemon.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            self.watchdog_ping()
            await anyio.sleep(interval)


def _status_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment (e.g. a forged READY=1).
    return "STATUS=" + " ".join(text.splitlines())
