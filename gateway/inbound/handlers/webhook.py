"""``kind = "webhook"``: POST the envelope as JSON to ``url``; the response carries the replies.

* Body: the envelope, compact UTF-8 JSON. With ``secret``/``secret_file`` the header
  ``X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` is added.
* ``200`` with ``{"replies": [...]}`` (or an empty body), or ``204``: handled.
* ``408``, ``429``, ``5xx``, timeouts and connection errors: retried with backoff
  (``Retry-After`` on a 429/503 is honoured). Any other status is a permanent failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from gateway import __version__
from gateway.config.model import HandlerConfig
from gateway.inbound.handlers import HandlerEnv, HandlerError
from gateway.inbound.messages import Reply, ReplyFormatError, parse_replies

log = structlog.get_logger("gateway.inbound.webhook")

SIGNATURE_HEADER = "X-Switchboard-Signature"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_RETRIABLE = frozenset({408, 429})


def sign(secret: str, body: bytes) -> str:
    """The ``X-Switchboard-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookHandler:
    kind = "webhook"

    def __init__(self, config: HandlerConfig, env: HandlerEnv):
        assert config.url is not None
        self.url = config.url
        self.timeout_s = config.timeout_s
        self._env = env
        self._literal_secret = config.secret.get_secret_value() if config.secret else None
        self._secret_path = _resolve(config.secret_file, env.base_dir) if config.secret_file else None
        self._file_secret: tuple[int, str] | None = None

    def secret(self) -> str | None:
        """The signing secret; a ``secret_file`` is re-read when it changes."""
        if self._literal_secret is not None:
            return self._literal_secret
        if self._secret_path is None:
            return None
        try:
            mtime = os.stat(self._secret_path).st_mtime_ns
            if self._file_secret is None or self._file_secret[0] != mtime:
                value = self._secret_path.read_text(encoding="utf-8").strip()
                self._env.on_secret(value)
                self._file_secret = (mtime, value)
        except OSError as exc:
            raise HandlerError(f"cannot read handler.secret_file {self._secret_path}: {exc.strerror}") from None
        return self._file_secret[1]

    async def handle(self, envelope: dict[str, Any], *, attempt: int) -> list[Reply]:
        body = encode_body(envelope)
        message = envelope["message"]
        headers = {"Content-Type": "application/json", "User-Agent": f"switchboard/{__version__}",
                   "X-Switchboard-Delivery": f"{envelope['provider']}:{envelope['account']}:{message['id']}",
                   "X-Switchboard-Attempt": str(attempt)}
        secret = self.secret()
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        try:
            async with self._env.http().post(self.url, data=body, headers=headers, allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
        except TimeoutError:
            raise HandlerError(f"webhook {self.url} timed out after {self.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise HandlerError(f"webhook {self.url} unreachable: {type(exc).__name__}: {exc}") from None
        if status == 204:
            return []
        if status in _RETRIABLE or status >= 500:
            raise HandlerError(f"webhook {self.url} answered HTTP {status}{_excerpt(raw)}", retry_after=retry_after)
        if not 200 <= status < 300:
            raise HandlerError(f"webhook {self.url} answered HTTP {status}{_excerpt(raw)}", permanent=True)
        if len(raw) > MAX_RESPONSE_BYTES:
            raise HandlerError(f"webhook reply larger than {MAX_RESPONSE_BYTES} bytes", permanent=True)
        if not raw.strip():
            return []
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("handler.reply_not_json", url=self.url, status=status,
                        hint='reply with {"replies": [...]} or 204; this body was ignored')
            return []
        try:
            return parse_replies(data)
        except ReplyFormatError as exc:
            raise HandlerError(f"webhook reply is not {{\"replies\": [...]}}: {exc}", permanent=True) from None


def _resolve(path: str, base_dir: Path | None) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base_dir is None else base_dir / candidate


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _excerpt(raw: bytes) -> str:
    text = raw[:200].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""
