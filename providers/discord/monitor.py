"""``run_account`` for Discord: keep one gateway session alive and emit what it delivers.

Reconnect rules: a dropped socket, op 7, a missed heartbeat ACK and most close codes resume
the session at once; op 9 ``false`` and closes 4007/4009 identify afresh after 1–5 s; closes
4004 and 4010–4014 end the account (AuthFailed / ConfigInvalid with a status issue). The
resume state lives in the account store, so a restarted account resumes too.
"""

from __future__ import annotations

import random
from typing import Any

import anyio

from gateway.errors import AccountNotReady, AuthFailed, ConfigInvalid, DeliveryError, RateLimited
from gateway.plugin import AccountContext

from .config import DiscordAccountConfig, privileged_intent_names
from .gateway_ws import Dispatch, GatewayConnection, ResumeState
from .inbound import ChannelDirectory, is_allowed, message_from_create, vote_from_add
from .rest import DiscordClient, as_account_error, open_client
from .status import INTENT_FIX, application_summary

RESUME_KEY = "gateway.resume"
IDENTITY_KEY = "gateway.identity"

#: Wait this long at most for the daily identify budget; longer is RateLimited for the supervisor.
MAX_IDENTIFY_WAIT = 60.0
#: Discord asks for a random 1–5 s wait before identifying after op 9 ``false``.
INVALID_SESSION_DELAY = (1.0, 5.0)
#: Connections in a row without READY/RESUMED before the supervisor takes over (backoff).
MAX_FAILED_CONNECTS = 5

_FATAL: dict[int, tuple[str, str]] = {
    4010: ("Discord rejected the shard (close code 4010: invalid shard)",
           "this is a Switchboard bug; please report it"),
    4011: ("Discord requires sharding for this bot (close code 4011): it is in too many servers for one "
           "connection", "Switchboard does not shard yet; use a bot in fewer servers"),
    4012: ("Discord rejected the gateway API version (close code 4012)", "set api_base_url to an /api/v10 URL"),
    4013: ("Discord rejected the intents (close code 4013: invalid intents)",
           "set intents to a valid bitmask or list of intent names"),
}


class DiscordGateway:
    """The plugin's ``gateway`` adapter."""

    async def run_account(self, ctx: AccountContext) -> None:
        if ctx.client is not None:
            await _Monitor(ctx, ctx.client).run()
            return
        async with open_client(ctx.resolved) as client:
            await _Monitor(ctx, client).run()


class _Monitor:
    def __init__(self, ctx: AccountContext, client: DiscordClient):
        self.ctx = ctx
        self.client = client
        self.channels = ChannelDirectory()
        self.bot_user_id: str | None = None
        self.state = ResumeState()
        self._started = False

    @property
    def config(self) -> DiscordAccountConfig:
        # Read per use: ``guilds``/``channels`` are live keys.
        config = self.ctx.account
        assert isinstance(config, DiscordAccountConfig)
        return config

    async def run(self) -> None:
        self.state = ResumeState.from_dict(await self.ctx.store.get(RESUME_KEY))
        if self.state.resumable:
            await self._restore_identity()
        connection = GatewayConnection(session=self.client.session, token=self.client.token,
                                       intents=self.config.intents, state=self.state,
                                       on_dispatch=self._dispatch, persist=self._persist, log=self.ctx.log)
        failures = 0
        try:
            while True:
                url = self.state.resume_gateway_url if self.state.resumable else await self._identify_url()
                assert url is not None
                self.ctx.set_status(gateway="connecting")
                end = await connection.run(url)
                self.ctx.set_status(gateway="reconnecting")
                self.ctx.log.info("discord.gateway.disconnected", reason=end.reason, resume=end.resume,
                                  close_code=end.close_code)
                if end.fatal:
                    self.state.clear()
                    raise self._fatal(end.close_code)
                failures = 0 if end.handshake else failures + 1
                if failures >= MAX_FAILED_CONNECTS:
                    raise AccountNotReady(f"Discord gateway: {end.reason} ({failures} attempts in a row)")
                if not end.resume or failures >= 2:
                    # A lost session, or a resume URL that keeps failing: identify afresh.
                    self.state.clear()
                    await self._persist(self.state)
                if not end.resume:
                    await anyio.sleep(random.uniform(*INVALID_SESSION_DELAY))
                elif failures:
                    await anyio.sleep(min(30.0, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2))
        finally:
            with anyio.CancelScope(shield=True):
                await self._persist(self.state)

    async def _identify_url(self) -> str:
        """GET /gateway/bot, honouring the daily session start limit."""
        try:
            info = await self.client.gateway_bot()
        except (AuthFailed, RateLimited):
            raise
        except DeliveryError as exc:
            raise as_account_error(exc, api_base_url=self.client.api_base_url) from None
        limit = info.get("session_start_limit") or {}
        remaining, reset_after = limit.get("remaining"), float(limit.get("reset_after") or 0) / 1000
        self.ctx.set_status(session_start_remaining=remaining)
        if isinstance(remaining, int) and remaining <= 0:
            message = (f"Discord session start limit used up ({limit.get('total')} per day); "
                       f"next identify allowed in {reset_after:.0f}s")
            if reset_after > MAX_IDENTIFY_WAIT:
                raise RateLimited(reset_after, message)
            self.ctx.log.warning("discord.gateway.session_start_limit", wait_s=reset_after)
            await anyio.sleep(reset_after)
        return str(info["url"])

    async def _dispatch(self, event: Dispatch) -> bool:
        """Handle one dispatch; True when it was emitted (so the resume point is saved now)."""
        data: Any = event.data
        self.channels.learn(event.name, data)
        if event.name == "READY":
            await self._ready(data)
        elif event.name == "RESUMED":
            self._connected()
        elif event.name == "MESSAGE_CREATE":
            guild_id = str(data["guild_id"]) if data.get("guild_id") else None
            if not is_allowed(self.config, guild_id, str(data.get("channel_id")), self.channels):
                return False
            message = message_from_create(data, key=self.ctx.key, bot_user_id=self.bot_user_id,
                                          channels=self.channels)
            if message is not None:
                await self.ctx.emit(message)
                return True
        elif event.name == "MESSAGE_POLL_VOTE_ADD":
            guild_id = str(data["guild_id"]) if data.get("guild_id") else None
            if not is_allowed(self.config, guild_id, str(data.get("channel_id")), self.channels):
                return False
            vote = vote_from_add(data, key=self.ctx.key, bot_user_id=self.bot_user_id, channels=self.channels,
                                 event_id=f"{self.state.session_id}:{event.seq}",
                                 answer_text=self.client.poll_answer_text)
            if vote is not None:
                await self.ctx.emit(vote)
                return True
        return False

    async def _ready(self, data: dict[str, Any]) -> None:
        user = data.get("user") or {}
        self.bot_user_id = str(user.get("id"))
        identity = {"bot": {"id": self.bot_user_id, "username": user.get("username")},
                    "application": application_summary(data.get("application") or {})}
        await self.ctx.store.set(IDENTITY_KEY, identity)
        self.ctx.set_status(**identity)
        self._connected()

    async def _restore_identity(self) -> None:
        """After a restart that resumes there is no READY: reuse what the last one said."""
        identity = await self.ctx.store.get(IDENTITY_KEY)
        if not isinstance(identity, dict) or not (identity.get("bot") or {}).get("id"):
            try:
                me = await self.client.current_user()
            except (AuthFailed, RateLimited):
                raise
            except DeliveryError as exc:
                raise as_account_error(exc, api_base_url=self.client.api_base_url) from None
            identity = {"bot": {"id": str(me["id"]), "username": me.get("username")}}
        self.bot_user_id = str(identity["bot"]["id"])
        self.ctx.set_status(**identity)

    def _connected(self) -> None:
        self.ctx.set_status(gateway="connected")
        if not self._started:
            self._started = True
            self.ctx.started()

    async def _persist(self, state: ResumeState) -> None:
        if state.resumable:
            await self.ctx.store.set(RESUME_KEY, state.to_dict())
        else:
            await self.ctx.store.delete(RESUME_KEY)

    def _fatal(self, code: int | None) -> Exception:
        if code == 4004:
            return AuthFailed("Discord closed the gateway with 4004 (authentication failed): the bot token "
                              "was rejected; copy it again from the Developer Portal → Bot")
        if code == 4014:
            # The supervisor parks the account with a `config` issue from this error; the
            # `intent` issue says precisely what to switch on.
            names = privileged_intent_names(self.config.intents)
            if names == ["Message Content"]:
                problem = "Message Content intent is not enabled for this application"
            else:
                problem = ("privileged intents are not enabled for this application (one of: "
                           f"{', '.join(names) or 'Server Members, Presence, Message Content'})")
            fix = INTENT_FIX + ", or remove it from intents"
            self.ctx.add_issue("intent", problem, fix)
            return ConfigInvalid(f"Discord closed the gateway with 4014 (disallowed intents): {problem}", fix=fix)
        message, fix = _FATAL.get(code or 0, (f"Discord closed the gateway with {code}", None))
        return ConfigInvalid(message, fix=fix)
