"""Talking to a running daemon over its control socket (blocking; the CLI has no event loop).

The socket path comes from the ``[gateway]`` table of the same config file the daemon uses
(``--config`` / ``$SWITCHBOARD_CONFIG``), with the same environment overrides. Only that
table is read, so a half-edited provider section never stops ``switchboard status``.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from gateway.config import GatewayConfig, read_toml, resolve_config_path
from gateway.errors import ConfigError, ConfigNotFound, ConfigProblem, SwitchboardError


class DaemonNotRunning(SwitchboardError):
    code = "not_running"


class ControlError(SwitchboardError):
    """The daemon answered with an error; ``str()`` is its one-line message."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None):
        self.status = status
        self.code = code
        self.body = body or {}
        super().__init__(message)


def socket_path(config_path: Path | None) -> Path:
    """Where the daemon configured by ``config_path`` listens."""
    path = resolve_config_path(config_path)
    try:
        section = read_toml(path).get("gateway", {})
    except ConfigNotFound:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError([ConfigProblem("gateway", "must be a table")], source=str(path))
    try:
        return GatewayConfig(**section).socket_path
    except ValidationError as exc:
        problems = [ConfigProblem("gateway." + ".".join(str(p) for p in err["loc"]), err["msg"])
                    for err in exc.errors()]
        raise ConfigError(problems, source=str(path)) from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _open(path: Path, method: str, target: str, body: bytes | None, timeout: float) -> http.client.HTTPResponse:
    conn = _UnixConnection(path, timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        conn.request(method, target, body=body, headers=headers)
        return conn.getresponse()
    except FileNotFoundError:
        raise DaemonNotRunning(f"switchboard is not running (no control socket at {path}); "
                               "start it with `switchboard run`") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"switchboard is not running (nothing listens on {path}); "
                               "start it with `switchboard run`") from None
    except PermissionError:
        raise DaemonNotRunning(f"cannot connect to {path}: permission denied; run the command as the user "
                               "that runs the daemon") from None
    except TimeoutError:
        raise DaemonNotRunning(f"the daemon did not answer on {path} within {timeout:g} s") from None
    except OSError as exc:
        raise DaemonNotRunning(f"cannot talk to the daemon on {path}: {exc.strerror or exc}") from None


def control_request(config_path: Path | None, method: str, path: str, body: dict[str, Any] | None = None,
                    timeout: float = 30.0, *, query: dict[str, Any] | None = None) -> dict[str, Any]:
    """One API call over the control socket; an error answer raises :class:`ControlError`."""
    sock = socket_path(config_path)
    target = path + ("?" + urlencode({k: v for k, v in query.items() if v is not None}) if query else "")
    payload = json.dumps(body).encode() if body is not None else None
    response = _open(sock, method, target, payload, timeout)
    try:
        raw = response.read()
    except TimeoutError:
        raise DaemonNotRunning(f"the daemon did not answer on {sock} within {timeout:g} s") from None
    finally:
        response.close()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"error": {"code": "bad_response", "message": raw[:200].decode(errors="replace")}}
    if response.status >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            error = {"code": "http_error", "message": f"HTTP {response.status}"}
        raise ControlError(response.status, str(error.get("code")), str(error.get("message")), data)
    return data if isinstance(data, dict) else {"data": data}


def stream_events(config_path: Path | None, timeout: float = 60.0) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs from ``GET /v1/events`` until the daemon closes the stream."""
    sock = socket_path(config_path)
    response = _open(sock, "GET", "/v1/events", None, timeout)
    try:
        if response.status >= 400:
            raise ControlError(response.status, "http_error", f"the event stream was refused (HTTP {response.status})")
        event, data = "message", []
        while True:
            line = response.readline()
            if not line:
                return
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif text.startswith("event:"):
                event = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].lstrip())
    finally:
        response.close()
