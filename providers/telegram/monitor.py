"""``run_account``: receive updates by long polling or through a webhook.

Failure handling (see ``docs/providers/telegram.md``):

* ``getMe``/``deleteWebhook``/``setWebhook`` failing at start is the supervisor's business:
  401 -> ``AuthFailed``, 429 -> ``RateLimited``, anything else -> ``AccountNotReady``.
* While polling, network errors and 5xx are retried here with a short backoff, so a blip does
  not restart the account; after ``Backoff.max_failures`` in a row the monitor raises
  ``AccountNotReady`` and the supervisor's (longer) backoff takes over.
* 409 (another poller, or a webhook set behind our back) is retried here forever with a
  capped backoff and shown as a ``runtime`` status issue until polling works again.
"""

from __future__ import annotations

import hmac
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web

from gateway.errors import AccountNotReady, ConfigInvalid
from gateway.plugin import AccountContext

from .client import LONG_POLL_MARGIN_S, BotInfo, TelegramAPIError, TelegramClient, TelegramError
from .config import TelegramAccountConfig
from .errors import config_error, to_account_error
from .inbound import ALLOWED_UPDATES, POLL_KEY_PREFIX, PollRecord, parse_update, poll_id_of
from .status import WEBHOOK_FIX, audit_groups

#: Key of the ``getUpdates`` offset in the account's store.
OFFSET_KEY = "offset"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
AUDIT_TIMEOUT_S = 15.0

ANOTHER_POLLER = "another instance is polling this bot"
ANOTHER_POLLER_FIX = ("stop the other process that uses this bot token (a second Switchboard or another bot "
                      "framework), or give this account its own bot from @BotFather")
WEBHOOK_WHILE_POLLING = "a webhook was set for this bot while this account was polling it"
WEBHOOK_WHILE_POLLING_FIX = ('another process uses this bot in webhook mode: stop it, or set mode = "webhook" '
                             "here; restarting this account deletes the webhook")


@dataclass(frozen=True)
class Backoff:
    """Retry delays used inside the monitor (the supervisor has its own, longer one)."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    #: Consecutive network/5xx failures tolerated before handing over to the supervisor.
    max_failures: int = 6

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class TelegramGateway:
    """The plugin's ``gateway`` adapter."""

    def __init__(self, backoff: Backoff | None = None):
        self.backoff = backoff or Backoff()

    async def run_account(self, ctx: AccountContext) -> None:
        client = _client_of(ctx)
        try:
            bot = BotInfo.from_api(await client.call("getMe"))
        except TelegramError as exc:
            raise to_account_error(exc) from None
        account = _config_of(ctx)
        # require_mention/group_policy beside the bot's privacy flag: collect_issues needs both.
        ctx.set_status(bot=bot.to_dict(), bot_username=bot.username, mode=account.mode,
                       can_read_all_group_messages=bot.can_read_all_group_messages,
                       require_mention=account.require_mention, group_policy=account.group_policy)
        ctx.log.info("telegram.bot", bot_id=bot.id, bot_username=bot.username, mode=account.mode)
        if account.mode == "webhook":
            await _run_webhook(ctx, client, bot)
        else:
            await _run_polling(ctx, client, bot, self.backoff)


def _client_of(ctx: AccountContext) -> TelegramClient:
    if not isinstance(ctx.client, TelegramClient):
        raise AccountNotReady("telegram client is not open (the core opens plugin.open_client first)")
    return ctx.client


def _config_of(ctx: AccountContext) -> TelegramAccountConfig:
    # Read per use, not cached: live keys (edited_messages) take effect when the core swaps it.
    account = ctx.account
    if not isinstance(account, TelegramAccountConfig):
        raise TypeError(f"expected a TelegramAccountConfig, got {type(account).__name__}")
    return account


async def handle_update(ctx: AccountContext, bot: BotInfo, update: Mapping[str, Any]) -> None:
    """Emit one update (if it is a message we handle); returns once the inbox has it."""
    poll: PollRecord | None = None
    poll_id = poll_id_of(update)
    if poll_id is not None:
        stored = await ctx.store.get(POLL_KEY_PREFIX + poll_id)
        poll = PollRecord.from_store(stored) if stored else None
    message = parse_update(update, key=ctx.key, bot=bot, edited_messages=_config_of(ctx).edited_messages,
                           poll=poll)
    if message is not None:
        await ctx.emit(message)


async def _audit_once(ctx: AccountContext, client: TelegramClient, bot: BotInfo) -> None:
    groups = _config_of(ctx).audit_groups
    if not groups:
        return
    with anyio.move_on_after(AUDIT_TIMEOUT_S):
        ctx.set_status(audit=await audit_groups(client, bot.id, groups))


# --- polling --------------------------------------------------------------------------------


async def _run_polling(ctx: AccountContext, client: TelegramClient, bot: BotInfo, backoff: Backoff) -> None:
    try:
        # A webhook left registered makes every getUpdates fail with 409.
        await client.call("deleteWebhook", {"drop_pending_updates": False})
    except TelegramError as exc:
        raise to_account_error(exc) from None
    ctx.started()
    await _audit_once(ctx, client, bot)

    offset = await ctx.store.get(OFFSET_KEY)
    ctx.log.info("telegram.polling", offset=offset)
    failures = conflicts = 0
    while True:
        timeout = _config_of(ctx).poll_timeout_s
        params = {"offset": offset, "timeout": timeout, "allowed_updates": list(ALLOWED_UPDATES)}
        try:
            updates = await client.call("getUpdates", params, timeout=timeout + LONG_POLL_MARGIN_S)
        except TelegramError as exc:
            if isinstance(exc, TelegramAPIError) and exc.error_code == 409:
                if conflicts == 0:
                    _report_conflict(ctx, exc)
                conflicts += 1
                ctx.set_status(poll_conflicts=conflicts)
                await anyio.sleep(backoff.delay(conflicts - 1))
                continue
            if isinstance(exc, TelegramAPIError) and exc.error_code < 500:
                raise to_account_error(exc) from None
            failures += 1
            if failures > backoff.max_failures:
                raise AccountNotReady(f"getUpdates failed {failures} times in a row: {exc}") from None
            ctx.log.warning("telegram.poll_failed", error=str(exc), attempt=failures)
            await anyio.sleep(backoff.delay(failures - 1))
            continue

        if conflicts:
            ctx.log.info("telegram.poll_conflict_resolved", conflicts=conflicts)
            ctx.clear_issues()
            ctx.set_status(poll_conflicts=0)
            conflicts = 0
        failures = 0
        for update in updates or ():
            await handle_update(ctx, bot, update)
            # Acknowledge only after the inbox has it: the next getUpdates confirms < offset.
            offset = int(update["update_id"]) + 1
            await ctx.store.set(OFFSET_KEY, offset)


def _report_conflict(ctx: AccountContext, exc: TelegramAPIError) -> None:
    if exc.mentions("webhook"):
        message, fix = WEBHOOK_WHILE_POLLING, WEBHOOK_WHILE_POLLING_FIX
    else:
        message, fix = ANOTHER_POLLER, ANOTHER_POLLER_FIX
    ctx.log.warning("telegram.poll_conflict", description=exc.description)
    ctx.add_issue("runtime", message, fix)


# --- webhook --------------------------------------------------------------------------------


async def _run_webhook(ctx: AccountContext, client: TelegramClient, bot: BotInfo) -> None:
    account = _config_of(ctx)
    if getattr(ctx.webhooks, "base_url", "") is None:
        # The core's router says there is no TCP listener: Telegram could never reach us.
        raise ConfigInvalid('mode = "webhook" needs the daemon\'s TCP control listener',
                            fix='set gateway.control.listen (e.g. "127.0.0.1:8787") and route webhook_url to '
                                "its /hooks/telegram/<account>/ path, or use mode = \"polling\"")
    # Without a configured secret, a fresh random one per start still authenticates Telegram.
    secret = (account.webhook_secret.get_secret_value() if account.webhook_secret
              else secrets.token_urlsafe(32))
    expected = secret.encode()
    rejected = 0

    async def receive(request: web.Request) -> web.StreamResponse:
        nonlocal rejected
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            rejected += 1
            ctx.set_status(webhook_rejected=rejected)
            ctx.log.warning("telegram.webhook_rejected", remote=request.remote, rejected=rejected)
            return web.Response(status=401, text="wrong or missing secret token")
        try:
            update = await request.json()
        except ValueError:
            return web.Response(status=400, text="body must be a JSON update")
        if not isinstance(update, dict):
            return web.Response(status=400, text="body must be a JSON update")
        # 200 only once the inbox has the update; an error makes Telegram deliver it again.
        await handle_update(ctx, bot, update)
        return web.Response(status=200)

    path = ctx.webhooks.mount(ctx.key, receive)
    try:
        try:
            await client.call("setWebhook", {"url": account.webhook_url, "secret_token": secret,
                                             "allowed_updates": list(ALLOWED_UPDATES)})
        except TelegramAPIError as exc:
            if exc.error_code == 400:
                raise config_error(exc, "Telegram refused webhook_url", WEBHOOK_FIX) from None
            raise to_account_error(exc) from None
        except TelegramError as exc:
            raise to_account_error(exc) from None
        ctx.set_status(webhook_path=path, webhook_rejected=rejected)
        ctx.started()
        ctx.log.info("telegram.webhook", path=path)
        await _audit_once(ctx, client, bot)
        await anyio.sleep_forever()
    finally:
        # The original left its HTTP server running after stop; the route goes with the account.
        ctx.webhooks.unmount(ctx.key)
