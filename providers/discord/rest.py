"""The Discord REST client: one aiohttp session per account, rate limits, error mapping.

:func:`open_client` is the plugin's ``open_client``: the core opens it before ``run_account``
and shares the yielded :class:`DiscordClient` with the send path as ``ctx.client``. The
gateway websocket uses the same session.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from gateway.errors import (
    AccountNotReady,
    AuthFailed,
    ConfigInvalid,
    DeliveryError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    TargetNotFound,
    TransientSendError,
)
from gateway.plugin import ResolvedAccount

from .config import DiscordAccountConfig
from .ratelimit import RateLimiter, Route

USER_AGENT = "DiscordBot (https://github.com/switchboard/switchboard, 0.1) Switchboard"

#: Discord JSON error codes that say more than the HTTP status.
_UNKNOWN_CHANNEL, _UNKNOWN_USER = 10003, 10013
_MISSING_ACCESS, _CANNOT_DM, _MISSING_PERMISSIONS = 50001, 50007, 50013
_TOO_LARGE = 40005


class DiscordClient:
    """REST calls for one bot token. Also caches DM channels and the answers of sent polls."""

    def __init__(self, session: aiohttp.ClientSession, *, token: str, api_base_url: str,
                 max_inline_wait: float = 5.0, max_attempts: int = 4, request_timeout: float = 30.0):
        self.session = session
        self.api_base_url = api_base_url.rstrip("/")
        self.limiter = RateLimiter(max_wait=max_inline_wait)
        self.max_attempts = max_attempts
        self._token = token.removeprefix("Bot ").strip()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._dm_channels: dict[str, str] = {}
        self._poll_answers: OrderedDict[str, dict[int, str]] = OrderedDict()

    @property
    def token(self) -> str:
        return self._token

    # --- endpoints --------------------------------------------------------------------------

    async def current_user(self) -> dict[str, Any]:
        return await self.request("GET", "/users/@me")

    async def current_application(self) -> dict[str, Any]:
        return await self.request("GET", "/oauth2/applications/@me")

    async def gateway_bot(self) -> dict[str, Any]:
        return await self.request("GET", "/gateway/bot")

    async def channel(self, channel_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/channels/{channel_id}")

    async def guild(self, guild_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/guilds/{guild_id}")

    async def guild_member(self, guild_id: str, user_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/guilds/{guild_id}/members/{user_id}")

    async def dm_channel(self, user_id: str) -> str:
        """The id of the DM channel with ``user_id``, opened once and cached."""
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel = await self.request("POST", "/users/@me/channels", payload={"recipient_id": user_id})
            channel_id = self._dm_channels[user_id] = str(channel["id"])
        return channel_id

    async def create_message(self, channel_id: str, payload: Mapping[str, Any],
                             files: tuple[tuple[str, bytes, str], ...] = ()) -> dict[str, Any]:
        """POST a message: JSON, or multipart (``payload_json`` + ``files[n]``) with files."""
        path = f"/channels/{channel_id}/messages"
        if not files:
            message = await self.request("POST", path, payload=dict(payload))
        else:
            body = dict(payload)
            body["attachments"] = [{"id": i, "filename": name} for i, (name, _, _) in enumerate(files)]

            def form() -> aiohttp.FormData:
                data = aiohttp.FormData()
                data.add_field("payload_json", json.dumps(body), content_type="application/json")
                for i, (name, content, mime) in enumerate(files):
                    data.add_field(f"files[{i}]", content, filename=name, content_type=mime)
                return data

            message = await self.request("POST", path, form=form)
        self._remember_poll(message)
        return message

    def poll_answer_text(self, message_id: str, answer_id: int) -> str | None:
        """The text of an answer of a poll this client sent, if still cached."""
        return self._poll_answers.get(message_id, {}).get(answer_id)

    def _remember_poll(self, message: Mapping[str, Any]) -> None:
        poll = message.get("poll")
        if not isinstance(poll, Mapping) or "id" not in message:
            return
        answers = {int(a["answer_id"]): str(a.get("poll_media", {}).get("text", ""))
                   for a in poll.get("answers", []) if "answer_id" in a}
        self._poll_answers[str(message["id"])] = answers
        while len(self._poll_answers) > 256:
            self._poll_answers.popitem(last=False)

    # --- the one request primitive ---------------------------------------------------------

    async def request(self, method: str, path: str, *, payload: Any = None,
                      form: Callable[[], aiohttp.FormData] | None = None) -> Any:
        """One REST call with bucket waits and short 429 retries; errors mapped to gateway.errors.

        ``payload`` is sent as JSON; ``form`` builds a multipart body (anew for each attempt,
        since aiohttp consumes a FormData once).
        """
        route = Route(method, path)
        headers = {"Authorization": f"Bot {self._token}", "User-Agent": USER_AGENT}
        for attempt in range(1, self.max_attempts + 1):
            await self.limiter.acquire(route)
            try:
                async with self.session.request(method, self.api_base_url + path, json=payload,
                                                data=form() if form else None, headers=headers,
                                                timeout=self._timeout) as resp:
                    self.limiter.update(route, resp.headers)
                    body = await _read_body(resp)
                    status, resp_headers = resp.status, resp.headers
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransientSendError(f"Discord {route}: {type(exc).__name__}: {exc}") from None
            if status == 429:
                retry_after = _retry_after(body, resp_headers)
                is_global = bool(body.get("global")) if isinstance(body, dict) else False
                is_global = is_global or resp_headers.get("X-RateLimit-Global", "").lower() == "true"
                self.limiter.rate_limited(route, retry_after, is_global=is_global)
                if retry_after <= self.limiter.max_wait and attempt < self.max_attempts:
                    continue  # acquire() waits it out
                scope = "global" if is_global else "route"
                raise RateLimited(retry_after, f"Discord {scope} rate limit on {route}: "
                                               f"retry after {retry_after:.2f}s")
            if status >= 400:
                raise error_for_status(status, body, route)
            return body
        raise AssertionError("unreachable")  # pragma: no cover


async def _read_body(resp: aiohttp.ClientResponse) -> Any:
    if resp.status == 204:
        return None
    text = await resp.text()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"message": text[:200]}


def _retry_after(body: Any, headers: Mapping[str, str]) -> float:
    for value in ((body or {}).get("retry_after") if isinstance(body, dict) else None,
                  headers.get("Retry-After"), headers.get("X-RateLimit-Reset-After")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return 1.0


def error_for_status(status: int, body: Any, route: Route) -> Exception:
    """Map an HTTP error from Discord to the most specific Switchboard error."""
    code = body.get("code") if isinstance(body, dict) else None
    detail = body.get("message") if isinstance(body, dict) else None
    what = f"Discord {route} failed ({status}" + (f", code {code}" if code else "") + ")"
    if detail:
        what += f": {detail}"
    if status == 401:
        return AuthFailed(f"{what}. The bot token was rejected; copy it again from the Developer Portal → Bot")
    if status == 413 or code == _TOO_LARGE:
        return PayloadTooLarge(f"{what}. Discord's upload limit is 10 MiB unless the server is boosted")
    if status == 403:
        hint = {
            _MISSING_PERMISSIONS: "give the bot View Channel and Send Messages in that channel",
            _MISSING_ACCESS: "the bot cannot see that channel; invite it or grant View Channel",
            _CANNOT_DM: "the user has DMs from server members turned off or shares no server with the bot",
        }.get(code)
        return Forbidden(what + (f". Fix: {hint}" if hint else ""))
    if status == 404:
        hint = {_UNKNOWN_CHANNEL: "check the channel id", _UNKNOWN_USER: "check the user id"}.get(code)
        return TargetNotFound(what + (f". Fix: {hint}" if hint else ""))
    if status >= 500:
        return TransientSendError(what)
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        what += f" {json.dumps(errors, separators=(',', ':'))[:300]}"
    return InvalidRequest(what)


def as_account_error(exc: DeliveryError, *, api_base_url: str) -> Exception:
    """Reclassify a REST error met while *starting* an account (not while sending)."""
    if isinstance(exc, TargetNotFound):
        return ConfigInvalid(f"{exc}", fix=f"check api_base_url ({api_base_url}); it should end in /api/v10")
    return AccountNotReady(str(exc))


@asynccontextmanager
async def open_client(resolved: ResolvedAccount) -> AsyncIterator[DiscordClient]:
    """The per-account client: one aiohttp session for REST and the gateway websocket."""
    config = resolved.config
    assert isinstance(config, DiscordAccountConfig)
    if config.token is None or not config.token.get_secret_value().strip():
        raise ConfigInvalid(f"discord/{resolved.account_id}: no bot token",
                            fix="set token or token_file (or DISCORD_BOT_TOKEN for the default account)")
    async with aiohttp.ClientSession() as session:
        yield DiscordClient(session, token=config.token.get_secret_value(), api_base_url=config.api_base_url)
