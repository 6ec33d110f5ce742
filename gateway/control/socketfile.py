"""Claiming the control socket: one daemon per socket, stale sockets replaced.

A pid file next to the socket (``control.sock`` -> ``control.pid``) is locked with
``flock`` for the daemon's lifetime. The kernel drops the lock when the process dies, even
on ``kill -9``, so a held lock means a live daemon and a free one means any socket file
left behind is stale. A socket that still answers although the lock was free (a pid file
deleted by hand) is treated as live too.

The socket is bound, chmod'ed to 0600 and only then put into listening mode: a Unix socket
refuses connections until ``listen()``, so nobody can connect while its mode is wider.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from pathlib import Path

import aiohttp
import anyio
import structlog

from gateway.errors import SwitchboardError

log = structlog.get_logger("gateway.control")

#: ``sun_path`` holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class AlreadyRunning(SwitchboardError):
    code = "already_running"

    def __init__(self, socket_path: Path, pid: int | None):
        self.socket_path = socket_path
        self.pid = pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"switchboard is already running ({who}) on {socket_path}")


class ControlSocketError(SwitchboardError):
    code = "control_socket"


def pid_path_for(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.stem + ".pid")


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlSocketError(
            f"the control socket path {path} is too long ({len(os.fsencode(path))} bytes; Unix sockets allow "
            f"{MAX_SOCKET_PATH}); set gateway.control.socket to a shorter absolute path")


class ControlSocket:
    """The socket file and its pid-file lock, from :meth:`claim` until :meth:`release`."""

    def __init__(self, path: Path):
        self.path = path
        self.pid_path = pid_path_for(path)
        self._lock_fd: int | None = None
        self._inode: int | None = None

    async def claim(self) -> socket.socket:
        """Lock, replace a stale socket, bind (0600) and listen. Raises :class:`AlreadyRunning`."""
        check_socket_path(self.path)
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700)
        fd = os.open(self.pid_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.path, _read_pid(self.pid_path) or await ask_pid(self.path)) from None
        self._lock_fd = fd
        try:
            await self._remove_stale()
            sock = self._bind()
        except BaseException:
            self.release()
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return sock

    async def _remove_stale(self) -> None:
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlSocketError(f"{self.path} exists and is not a socket; move it away or set "
                                     "gateway.control.socket to another path")
        if await socket_answers(self.path):
            raise AlreadyRunning(self.path, await ask_pid(self.path))
        self.path.unlink(missing_ok=True)
        log.info("control.stale_socket_replaced", socket=str(self.path))

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(256)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno is not None and exc.errno == getattr(os, "EADDRINUSE", 98):
                raise AlreadyRunning(self.path, _read_pid(self.pid_path)) from None
            raise ControlSocketError(f"cannot create the control socket {self.path}: {exc.strerror}") from None
        self._inode = self.path.stat().st_ino
        return sock

    def release(self) -> None:
        """Remove the socket (if it is still ours) and the pid file, then drop the lock."""
        if self._inode is not None:
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()
            self._inode = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                self.pid_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


async def socket_answers(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on ``path``."""
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_unix(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # a backlog so full it cannot accept: alive, just busy
    except PermissionError:
        raise ControlSocketError(f"cannot check the control socket {path}: permission denied "
                                 "(is another user's daemon running on it?)") from None
    await stream.aclose()
    return True


async def ask_pid(path: Path, timeout: float = 2.0) -> int | None:
    """The pid a live daemon reports on ``GET /v1/status``, or ``None``."""
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get("http://localhost/v1/status") as resp:
                body = await resp.json()
        pid = body["gateway"]["pid"]
        return pid if isinstance(pid, int) else None
    except Exception:  # noqa: BLE001 - only a nicer message depends on it
        return None
