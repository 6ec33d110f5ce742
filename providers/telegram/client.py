"""A thin Bot API client: one aiohttp session per account, ``POST /bot<token>/<method>``.

The client knows the wire format only (JSON or multipart in, ``{"ok", "result" |
"description", "parameters"}`` out). It raises :class:`TelegramAPIError` for answers with
``ok: false`` and :class:`TelegramNetworkError` when no answer arrived; ``errors.py`` maps both
onto the gateway taxonomy. The token never appears in an exception message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.errors import ConfigInvalid
from gateway.plugin import ResolvedAccount

from .config import TelegramAccountConfig

#: Read timeout for ordinary calls (sends, getMe, ...). Uploads have no write timeout.
REQUEST_TIMEOUT_S = 30.0
#: ``getUpdates`` may hold the request for ``timeout`` seconds; wait this much longer.
LONG_POLL_MARGIN_S = 10.0


class TelegramError(Exception):
    """Root of the client's own errors (translated before they leave the plugin)."""

    def __init__(self, method: str, message: str):
        self.method = method
        super().__init__(f"{method}: {message}")


class TelegramAPIError(TelegramError):
    """The Bot API answered ``ok: false``."""

    def __init__(self, method: str, error_code: int, description: str, *,
                 retry_after: float | None = None, migrate_to_chat_id: int | None = None):
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id
        super().__init__(method, f"{error_code} {description}")

    def mentions(self, *fragments: str) -> bool:
        text = self.description.lower()
        return any(f in text for f in fragments)


class TelegramNetworkError(TelegramError):
    """No usable answer: connection failure, timeout, or a non-JSON reply from a proxy."""


@dataclass(frozen=True)
class InputFile:
    """A file part of a multipart upload."""

    data: bytes
    filename: str
    mime: str


@dataclass(frozen=True)
class BotInfo:
    """What ``getMe`` says about the bot."""

    id: int
    username: str
    first_name: str = ""
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False

    @classmethod
    def from_api(cls, result: Mapping[str, Any]) -> BotInfo:
        return cls(id=int(result["id"]), username=str(result.get("username") or ""),
                   first_name=str(result.get("first_name") or ""),
                   can_join_groups=bool(result.get("can_join_groups", True)),
                   can_read_all_group_messages=bool(result.get("can_read_all_group_messages", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "first_name": self.first_name,
                "can_join_groups": self.can_join_groups,
                "can_read_all_group_messages": self.can_read_all_group_messages}


class TelegramClient:
    """Calls Bot API methods for one bot token over one shared ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, token: str):
        self._session = session
        self._token = token
        self.base_url = base_url.rstrip("/")
        self._method_base = f"{self.base_url}/bot{token}/"

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   files: Mapping[str, InputFile] | None = None,
                   timeout: float = REQUEST_TIMEOUT_S) -> Any:
        """Call ``method`` and return its ``result``; JSON body, or multipart with ``files``."""
        url = self._method_base + method
        request_timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)
        kwargs: dict[str, Any] = {"timeout": request_timeout}
        if files:
            kwargs["data"] = _multipart(params or {}, files)
        else:
            kwargs["json"] = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            async with self._session.post(url, **kwargs) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TelegramNetworkError(method, self._describe(exc)) from None
        return self._unwrap(method, status, raw)

    def file_url(self, file_path: str) -> str:
        return f"{self.base_url}/file/bot{self._token}/{file_path.lstrip('/')}"

    async def download(self, file_id: str, *, max_bytes: int) -> bytes:
        """``getFile`` + ``GET /file/bot<token>/<file_path>``, refusing files above ``max_bytes``."""
        info = await self.call("getFile", {"file_id": file_id})
        size = info.get("file_size")
        if size is not None and int(size) > max_bytes:
            raise TelegramAPIError("getFile", 413, f"file is too big: {size} bytes > {max_bytes} allowed")
        path = info.get("file_path")
        if not path:
            raise TelegramAPIError("getFile", 400, "file is not available for download (no file_path)")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=REQUEST_TIMEOUT_S)
        try:
            async with self._session.get(self.file_url(str(path)), timeout=timeout) as resp:
                if resp.status != 200:
                    raise TelegramAPIError("getFile", resp.status, f"file download failed ({resp.status})")
                chunks: list[bytes] = []
                received = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    received += len(chunk)
                    if received > max_bytes:
                        raise TelegramAPIError("getFile", 413, f"file is too big: more than {max_bytes} bytes")
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TelegramNetworkError("getFile", self._describe(exc)) from None
        return b"".join(chunks)

    def _unwrap(self, method: str, status: int, raw: bytes) -> Any:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "ok" not in body:
            # A proxy's HTML error page or a truncated body: no Bot API verdict to act on.
            if status >= 500 or status == 200:
                raise TelegramNetworkError(method, f"unexpected reply (HTTP {status}, not Bot API JSON)")
            raise TelegramAPIError(method, status, f"unexpected reply (HTTP {status}, not Bot API JSON)")
        if body["ok"]:
            return body.get("result")
        params = body.get("parameters") or {}
        retry_after = params.get("retry_after")
        migrate = params.get("migrate_to_chat_id")
        raise TelegramAPIError(method, int(body.get("error_code") or status),
                               self._redact(str(body.get("description") or f"HTTP {status}")),
                               retry_after=float(retry_after) if retry_after is not None else None,
                               migrate_to_chat_id=int(migrate) if migrate is not None else None)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return "timed out"
        return self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text


def _multipart(params: Mapping[str, Any], files: Mapping[str, InputFile]) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        form.add_field(name, str(value))
    for name, f in files.items():
        form.add_field(name, f.data, filename=f.filename, content_type=f.mime)
    return form


@asynccontextmanager
async def open_client(resolved: ResolvedAccount) -> AsyncIterator[TelegramClient]:
    """The account's one client; the core opens it before ``run_account`` and shares it."""
    config = resolved.config
    if not isinstance(config, TelegramAccountConfig):
        raise TypeError(f"expected a TelegramAccountConfig, got {type(config).__name__}")
    token = config.token
    if not token:
        raise ConfigInvalid(f"telegram account {resolved.account_id!r} has no bot token",
                            fix="set bot_token or bot_token_file (or $TELEGRAM_BOT_TOKEN for the default account)")
    connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as session:
        yield TelegramClient(session, base_url=config.api_base_url, token=token)
