"""``run_account``: who we are (auth.test), then Socket Mode envelopes into the inbox."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gateway.errors import AccountNotReady, ConfigInvalid
from gateway.plugin import AccountContext

from .client import SlackClient
from .inbound import BotIdentity, message_from_event, votes_from_block_actions
from .socket_mode import Envelope, SocketModeRunner

_DEDUPE_CAPACITY = 4096


class SlackGateway:
    """The gateway adapter: one Socket Mode session per account."""

    async def run_account(self, ctx: AccountContext) -> None:
        client = ctx.client
        if not isinstance(client, SlackClient):
            raise AccountNotReady("the Slack client was not opened")
        identity = await client.auth_test()
        ctx.set_status(bot_user_id=identity.user_id, bot_id=identity.bot_id, bot_name=identity.user_name,
                       team_id=identity.team_id, team=identity.team_name,
                       scopes=sorted(identity.scopes) if identity.scopes is not None else None,
                       missing_scopes=list(identity.missing_scopes))
        if identity.missing_scopes:
            ctx.log.warning("slack.missing_scopes", missing=list(identity.missing_scopes))
        dispatcher = EnvelopeDispatcher(ctx, BotIdentity(identity.user_id, identity.bot_id))
        runner = SocketModeRunner(client, dispatcher.handle, ctx.log)
        try:
            await runner.run(on_connected=ctx.started)
        except ConfigInvalid as exc:
            ctx.add_issue("config", str(exc), exc.fix)
            raise


class EnvelopeDispatcher:
    """Dedupe by event id, normalise, ``await ctx.emit`` -- returning means "ack it"."""

    def __init__(self, ctx: AccountContext, me: BotIdentity):
        self._ctx = ctx
        self._me = me
        self._dedupe = EventDedupe(_DEDUPE_CAPACITY)

    async def handle(self, envelope: Envelope) -> None:
        async with self._dedupe.claim(_dedupe_key(envelope)) as fresh:
            if not fresh:
                self._ctx.log.debug("slack.envelope.duplicate", envelope_id=envelope.id,
                                    retry_attempt=envelope.retry_attempt)
                return
            for message in self._messages(envelope):
                await self._ctx.emit(message)

    def _messages(self, envelope: Envelope) -> list[Any]:
        key = self._ctx.key
        payload = envelope.payload
        if envelope.type == "events_api":
            if payload.get("type") == "app_rate_limited":
                self._ctx.log.warning("slack.events_rate_limited", payload=dict(payload))
                return []
            event = payload.get("event")
            if not isinstance(event, dict):
                return []
            message = message_from_event(event, provider=key.provider, account=key.account, me=self._me,
                                         allow_bots=bool(getattr(self._ctx.account, "allow_bots", False)))
            return [message] if message is not None else []
        if envelope.type == "interactive":
            return list(votes_from_block_actions(payload, provider=key.provider, account=key.account))
        return []


def _dedupe_key(envelope: Envelope) -> str:
    payload = envelope.payload
    if envelope.type == "events_api" and payload.get("event_id"):
        return f"event:{payload['event_id']}"
    if envelope.type == "interactive":
        stamps = ",".join(str(a.get("action_ts")) for a in payload.get("actions") or () if isinstance(a, dict))
        user = (payload.get("user") or {}).get("id")
        if stamps:
            return f"action:{user}:{stamps}"
    return f"envelope:{envelope.id}"


class EventDedupe:
    """Remembers recently handled keys; a copy arriving while the first is in flight waits for it.

    A failed attempt forgets its key, so the redelivery Slack sends is handled afresh.
    """

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._entries: OrderedDict[str, anyio.Event] = OrderedDict()

    @asynccontextmanager
    async def claim(self, key: str) -> AsyncIterator[bool]:
        while (done := self._entries.get(key)) is not None:
            await done.wait()
            if self._entries.get(key) is done:
                yield False
                return
        done = anyio.Event()
        self._entries[key] = done
        try:
            yield True
        except BaseException:
            del self._entries[key]
            raise
        finally:
            done.set()
            self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self._capacity:
            key, done = next(iter(self._entries.items()))
            if not done.is_set():
                break
            del self._entries[key]
