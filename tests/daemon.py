"""Run the real daemon as a subprocess and read its JSON log lines and sd_notify messages."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class NotifySocket:
    """A fake ``NOTIFY_SOCKET``: a datagram socket whose messages are queued for the test."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 10.0) -> str:
        """Wait for a datagram containing ``line`` (e.g. ``STOPPING=1``)."""
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if line in message.splitlines():
                return message
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                message = self.sock.recv(65536).decode()
                self.messages.append(message)
                if line in message.splitlines():
                    return message
        raise AssertionError(f"no {line!r} on the notify socket; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


class JsonLines:
    """A process's output read by a thread: every line kept, the JSON objects queued.

    ``next_object(deadline)`` returns the next object, ``None`` once the output ends, and
    raises ``TimeoutError`` at ``deadline`` (a ``time.monotonic()`` value).
    """

    def __init__(self, pipe: IO[str]):
        self.lines: list[str] = []
        self._pipe = pipe
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._pipe:
            self.lines.append(line.rstrip("\n"))
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                self._queue.put(value)
        self._queue.put(None)

    def next_object(self, deadline: float) -> dict[str, Any] | None:
        try:
            return self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise TimeoutError from None

    def join(self, timeout: float) -> None:
        """Wait for the output to end (the process exited), so ``lines`` is complete."""
        self._reader.join(timeout=timeout)

    def drain(self) -> list[dict[str, Any]]:
        """The objects queued and not yet returned by :meth:`next_object`."""
        out = []
        while not self._queue.empty():
            value = self._queue.get()
            if value is not None:
                out.append(value)
        return out


class Daemon:
    """``switchboard run --config PATH`` with its stderr parsed as JSON log events."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None):
        self.config = config
        #: The control socket, from ``control.listening`` (set by :meth:`wait_ready`).
        self.socket: Path | None = None
        full_env = {**os.environ, "SWITCHBOARD_GATEWAY__LOG_FORMAT": "json", **(env or {})}
        full_env.pop("SWITCHBOARD_CONFIG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=full_env, text=True)
        assert self.proc.stdout is not None
        self.events: list[dict[str, Any]] = []
        self._output = JsonLines(self.proc.stdout)
        self.lines = self._output.lines

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for a log event (by name or predicate), looking at what was already seen first."""
        test = (lambda e: e.get("event") == predicate) if isinstance(predicate, str) else predicate
        for event in self.events:
            if test(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._output.next_object(deadline)
            except TimeoutError:
                raise AssertionError("timed out waiting for a log event; output:\n" + self.output()) from None
            if event is None:
                raise AssertionError(f"daemon exited ({self.proc.poll()}) before the event; output:\n" + self.output())
            self.events.append(event)
            if test(event):
                return event

    def join_output(self, timeout: float = 5.0) -> None:
        """After the daemon exited: wait until its whole output is read."""
        self._output.join(timeout)

    def unread_events(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """After the daemon exited: its log events that no ``wait_event`` has looked at yet."""
        self._output.join(timeout)
        return self._output.drain()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for ``gateway.started``: the control socket serves, every service runs, accounts are launched."""
        deadline = time.monotonic() + timeout
        self.socket = Path(self.wait_event("control.listening", timeout)["socket"])
        self.wait_event("gateway.started", max(deadline - time.monotonic(), 0.0))

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def run_cli(config: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``switchboard ARGS --config CONFIG`` as a user would type it (no $SWITCHBOARD_CONFIG)."""
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, env=cli_env(), stdin=subprocess.DEVNULL)


def cli_env() -> dict[str, str]:
    """The CLI's environment in tests: no $SWITCHBOARD_CONFIG, and wide enough that tables do not wrap."""
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_CONFIG"}
    env["COLUMNS"] = "200"
    return env
