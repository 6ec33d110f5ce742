"""Probe (``getMe`` + ``getWebhookInfo`` + optional group audit) and status issues."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from gateway.errors import ConfigInvalid
from gateway.plugin import AccountContext, ResolvedAccount, StatusIssue

from .client import BotInfo, TelegramAPIError, TelegramClient, TelegramError, open_client
from .config import TelegramAccountConfig
from .errors import is_unauthorized
from .targets import api_chat_id

_MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})

PRIVACY_MESSAGE = ("groups are enabled without a mention (require_mention = false), but the bot's privacy "
                   "mode is on: Telegram only delivers commands, replies and @-mentions in groups")
WEBHOOK_FIX = ("webhook_url must be a public HTTPS URL (port 443, 80, 88 or 8443) that reaches this daemon's "
               "/hooks/telegram/<account>/ path (e.g. a reverse proxy to gateway.control.listen)")
PRIVACY_FIX = ("in @BotFather: /setprivacy, choose the bot, Disable; then remove and re-add the bot to each "
               "group (or make it a group admin)")


async def audit_groups(client: TelegramClient, bot_id: int, groups: Sequence[str]) -> list[dict[str, Any]]:
    """``getChatMember`` for the bot in each group: is it (still) a member?"""
    results: list[dict[str, Any]] = []
    for group in groups:
        entry: dict[str, Any] = {"chat_id": group}
        try:
            member = await client.call("getChatMember", {"chat_id": api_chat_id(group), "user_id": bot_id})
        except TelegramError as exc:
            entry.update(ok=False, error=exc.description if isinstance(exc, TelegramAPIError) else str(exc))
        else:
            status = str(member.get("status"))
            ok = status in _MEMBER_STATUSES or (status == "restricted" and bool(member.get("is_member")))
            entry.update(ok=ok, status=status)
            if not ok:
                entry["error"] = "bot is not in the group"
        results.append(entry)
    return results


class TelegramStatus:
    """The plugin's ``status`` adapter."""

    async def probe(self, ctx: AccountContext | None, resolved: ResolvedAccount, timeout: float) -> Mapping[str, Any]:
        """``{"ok", "bot", "webhook", "audit"?, "elapsed_ms"}`` or ``{"ok": False, "error", "status"?}``."""
        config = resolved.config
        if not isinstance(config, TelegramAccountConfig):
            return {"ok": False, "error": "not a telegram account"}
        started = time.monotonic()
        try:
            with anyio.fail_after(timeout):
                if ctx is not None and isinstance(ctx.client, TelegramClient):
                    result = await _probe(ctx.client, config)
                else:
                    async with open_client(resolved) as client:
                        result = await _probe(client, config)
        except TimeoutError:
            result = {"ok": False, "error": f"no answer within {timeout:g}s"}
        except ConfigInvalid as exc:
            result = {"ok": False, "error": str(exc)}
        result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
        return result

    def collect_issues(self, snapshots: Sequence[Mapping[str, Any]]) -> Sequence[StatusIssue]:
        issues: list[StatusIssue] = []
        for snap in snapshots:
            if snap.get("enabled") is False or snap.get("configured") is False:
                continue
            issues.extend(_issues_for(snap))
        return issues


async def _probe(client: TelegramClient, config: TelegramAccountConfig) -> dict[str, Any]:
    try:
        bot = BotInfo.from_api(await client.call("getMe"))
    except TelegramAPIError as exc:
        error = exc.description
        if is_unauthorized(exc):
            error = f"bot token rejected ({exc.error_code} {exc.description})"
        return {"ok": False, "status": exc.error_code, "error": error}
    except TelegramError as exc:
        return {"ok": False, "error": str(exc)}

    result: dict[str, Any] = {"ok": True, "bot": bot.to_dict()}
    try:
        info = await client.call("getWebhookInfo")
    except TelegramError as exc:
        result["webhook"] = {"error": str(exc)}
    else:
        url = str(info.get("url") or "")
        result["webhook"] = {
            "url": url or None,
            "pending_update_count": info.get("pending_update_count", 0),
            "last_error_message": info.get("last_error_message"),
            "last_error_date": info.get("last_error_date"),
            "has_custom_certificate": bool(info.get("has_custom_certificate")),
            # Polling accounts delete a webhook at start; one found now would break polling.
            "stray": config.mode == "polling" and bool(url),
            "mismatch": config.mode == "webhook" and bool(url) and url != config.webhook_url,
        }
    if config.audit_groups:
        result["audit"] = await audit_groups(client, bot.id, config.audit_groups)
    return result


def _issues_for(snap: Mapping[str, Any]) -> list[StatusIssue]:
    provider = str(snap.get("provider") or "telegram")
    account = snap.get("account")
    probe = snap.get("probe") if isinstance(snap.get("probe"), Mapping) else {}
    bot = snap.get("bot") if isinstance(snap.get("bot"), Mapping) else (probe.get("bot") or {})
    issues: list[StatusIssue] = []

    can_read_all = snap.get("can_read_all_group_messages", bot.get("can_read_all_group_messages"))
    if (snap.get("require_mention") is False and snap.get("group_policy") != "disabled"
            and can_read_all is False):
        issues.append(StatusIssue(provider, account, "config", PRIVACY_MESSAGE, PRIVACY_FIX))

    webhook = probe.get("webhook") or {}
    if webhook.get("stray"):
        issues.append(StatusIssue(provider, account, "runtime",
                                  f"a webhook is set for this bot ({webhook.get('url')}) but the account polls",
                                  "restart the account (polling deletes the webhook) and stop whatever set it"))
    if webhook.get("mismatch"):
        issues.append(StatusIssue(provider, account, "runtime",
                                  f"the bot's webhook points at {webhook.get('url')}, not this account's webhook_url",
                                  "another process registered its own webhook for this bot; stop it and restart "
                                  "this account"))

    if webhook.get("url") and webhook.get("last_error_message") and webhook.get("pending_update_count"):
        issues.append(StatusIssue(provider, account, "runtime",
                                  f"Telegram cannot deliver to the webhook ({webhook['last_error_message']}); "
                                  f"{webhook['pending_update_count']} updates are waiting",
                                  WEBHOOK_FIX))

    audit = probe.get("audit") or snap.get("audit") or ()
    for group in audit:
        if not group.get("ok"):
            detail = f" (status={group['status']})" if group.get("status") else ""
            error = f": {group['error']}" if group.get("error") else ""
            issues.append(StatusIssue(provider, account, "runtime",
                                      f"group {group.get('chat_id')} is not reachable by the bot{detail}{error}",
                                      "add the bot to the group, or remove the group from audit_groups"))
    return issues


def describe_account(resolved: ResolvedAccount) -> Mapping[str, Any]:
    """The safe summary for listings and snapshots (no secrets)."""
    config = resolved.config
    if not isinstance(config, TelegramAccountConfig):
        return {}
    return {"mode": config.mode, "api_base_url": config.api_base_url, "webhook_url": config.webhook_url,
            "require_mention": config.require_mention, "group_policy": config.group_policy,
            "edited_messages": config.edited_messages, "audit_groups": list(config.audit_groups),
            "token_source": resolved.secret_sources.get("bot_token", "none")}
