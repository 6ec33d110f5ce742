"""Who may call the control API.

The Unix socket needs no token: its file mode (0600, in a 0700 directory) is the
authentication. The TCP listener needs ``Authorization: Bearer <token>`` on every API call;
the token lives in ``gateway.control.token_file`` and is compared in constant time.
Browsers cannot set headers on ``EventSource`` or WebSocket requests, so those two may pass
the token as a ``token`` query parameter instead (see :func:`check_token`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import socket
from pathlib import Path

import structlog
from aiohttp import web

from gateway.errors import SwitchboardError

log = structlog.get_logger("gateway.control")

class TokenFileError(SwitchboardError):
    code = "token_file"


class TokenFile:
    """The control token, re-read when the file changes (rotation needs no restart)."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    @classmethod
    def ensure(cls, path: Path) -> TokenFile:
        """Open ``path``, creating it with a random token (mode 0600) when it is missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # created concurrently: use theirs
            except OSError as exc:
                raise TokenFileError(f"cannot create the control token file {path}: {exc.strerror}") from None
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(secrets.token_urlsafe(32) + "\n")
                log.warning("control.token_created", path=str(path),
                            hint="the web UI and the TCP API ask for the token in this file")
        token = cls(path)
        token.current()
        if path.stat().st_mode & 0o077:
            log.warning("control.token_file_readable_by_others", path=str(path), hint=f"chmod 600 {path}")
        return token

    def current(self) -> str:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                token = self.path.read_text(encoding="utf-8").strip()
                if not token:
                    raise TokenFileError(f"the control token file {self.path} is empty; put a long random "
                                         "string in it, or delete it to have one generated")
                self._token, self._stamp = token, stamp
        except OSError as exc:
            if not self._token:
                raise TokenFileError(f"cannot read the control token file {self.path}: {exc.strerror}") from None
            # Keep the last good token while the file is being replaced.
        return self._token


class Authenticator:
    """Decides per request: Unix socket callers pass, TCP callers need the token."""

    def __init__(self, token: TokenFile | None):
        self.token = token

    def allows(self, request: web.BaseRequest, *, allow_query: bool = False) -> bool:
        if via_unix_socket(request):
            return True
        if self.token is None:
            return False
        presented = bearer_token(request)
        if presented is None and allow_query:
            presented = request.query.get("token")
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.token.current().encode())


AUTH_KEY = web.AppKey("switchboard.auth", Authenticator)


def via_unix_socket(request: web.BaseRequest) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def bearer_token(request: web.BaseRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def check_token(request: web.Request) -> bool:
    """True when ``request`` may use the control plane (for websocket/page handlers).

    Requests over the Unix socket always pass. Over TCP the token may come in the
    ``Authorization: Bearer`` header or the ``token`` query parameter.
    """
    auth = request.config_dict.get(AUTH_KEY)
    if not isinstance(auth, Authenticator):
        return False
    return auth.allows(request, allow_query=True)
