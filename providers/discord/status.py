"""Probe and status issues: the bot, the application's privileged intents, channel permissions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

import anyio

from gateway.errors import AuthFailed, DeliveryError, RateLimited
from gateway.plugin import AccountContext, ResolvedAccount, StatusIssue

from .config import DiscordAccountConfig
from .rest import DiscordClient, open_client

IntentState = Literal["enabled", "limited", "disabled"]

#: Application flag bits: (enabled, limited) per privileged intent.
_APP_INTENT_FLAGS: dict[str, tuple[int, int]] = {
    "presence": (1 << 12, 1 << 13),
    "guild_members": (1 << 14, 1 << 15),
    "message_content": (1 << 18, 1 << 19),
}

VIEW_CHANNEL, SEND_MESSAGES, ADMINISTRATOR = 1 << 10, 1 << 11, 1 << 3
_REQUIRED = {VIEW_CHANNEL: "View Channel", SEND_MESSAGES: "Send Messages"}
_MAX_AUDITED_CHANNELS = 25

INTENT_FIX = "enable it in the Developer Portal → Bot → Privileged Gateway Intents"


def intent_states(flags: int) -> dict[str, IntentState]:
    """Privileged intents from application flags; enabled beats limited beats disabled."""
    return {name: "enabled" if flags & on else "limited" if flags & limited else "disabled"
            for name, (on, limited) in _APP_INTENT_FLAGS.items()}


def application_summary(app: Mapping[str, Any]) -> dict[str, Any]:
    flags = int(app.get("flags") or 0)
    summary = {"id": str(app.get("id")), "flags": flags, "intents": intent_states(flags)}
    if app.get("name"):
        summary["name"] = app["name"]
    return summary


def channel_permissions(*, guild: Mapping[str, Any], member: Mapping[str, Any], user_id: str,
                        channel: Mapping[str, Any]) -> int:
    """Effective permissions of a member in a channel (Discord's documented algorithm)."""
    everything = (1 << 53) - 1
    guild_id = str(guild["id"])
    if str(guild.get("owner_id")) == user_id:
        return everything
    roles = {str(r["id"]): int(r.get("permissions") or 0) for r in guild.get("roles", ())}
    member_roles = [str(r) for r in member.get("roles", ())]
    perms = roles.get(guild_id, 0)
    for role in member_roles:
        perms |= roles.get(role, 0)
    if perms & ADMINISTRATOR:
        return everything
    overwrites = {str(o["id"]): (int(o.get("allow") or 0), int(o.get("deny") or 0))
                  for o in channel.get("permission_overwrites", ())}
    allow, deny = overwrites.get(guild_id, (0, 0))
    perms = (perms & ~deny) | allow
    allow = deny = 0
    for role in member_roles:
        role_allow, role_deny = overwrites.get(role, (0, 0))
        allow, deny = allow | role_allow, deny | role_deny
    perms = (perms & ~deny) | allow
    allow, deny = overwrites.get(user_id, (0, 0))
    return (perms & ~deny) | allow


async def audit_channels(client: DiscordClient, bot_id: str, channel_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Check View Channel + Send Messages in each configured channel."""
    results: list[dict[str, Any]] = []
    guilds: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for channel_id in channel_ids[:_MAX_AUDITED_CHANNELS]:
        try:
            channel = await client.channel(channel_id)
            guild_id = str(channel.get("guild_id") or "")
            if not guild_id:
                results.append({"id": channel_id, "ok": True, "missing": []})
                continue
            if guild_id not in guilds:
                guilds[guild_id] = (await client.guild(guild_id), await client.guild_member(guild_id, bot_id))
            guild, member = guilds[guild_id]
            perms = channel_permissions(guild=guild, member=member, user_id=bot_id, channel=channel)
            missing = [name for bit, name in _REQUIRED.items() if not perms & bit]
            results.append({"id": channel_id, "ok": not missing, "missing": missing})
        except (DeliveryError, RateLimited) as exc:
            results.append({"id": channel_id, "ok": False, "missing": [], "error": str(exc)})
    return results


class DiscordStatus:
    """The plugin's ``status`` adapter."""

    async def probe(self, ctx: AccountContext | None, resolved: ResolvedAccount, timeout: float) -> Mapping[str, Any]:
        config = resolved.config
        assert isinstance(config, DiscordAccountConfig)
        try:
            with anyio.fail_after(timeout):
                async with AsyncExitStack() as stack:
                    client = ctx.client if ctx is not None and ctx.client is not None else \
                        await stack.enter_async_context(open_client(resolved))
                    return await self._probe(client, config)
        except TimeoutError:
            return {"ok": False, "error": f"timed out after {timeout:g}s"}
        except AuthFailed:
            return {"ok": False, "error": "the bot token was rejected (GET /users/@me: 401)"}
        except (DeliveryError, RateLimited) as exc:
            return {"ok": False, "error": str(exc)}

    async def _probe(self, client: DiscordClient, config: DiscordAccountConfig) -> dict[str, Any]:
        me = await client.current_user()
        result: dict[str, Any] = {"ok": True, "bot": {"id": str(me["id"]), "username": me.get("username")}}
        result["application"] = application_summary(await client.current_application())
        if config.channels:
            result["audit"] = {"channels": await audit_channels(client, str(me["id"]), config.channels)}
        return result

    def collect_issues(self, snapshots: Sequence[Mapping[str, Any]]) -> Sequence[StatusIssue]:
        issues: list[StatusIssue] = []
        for snap in snapshots:
            account = snap.get("account")
            account = str(account) if account is not None else None
            probe = snap.get("probe") if isinstance(snap.get("probe"), Mapping) else {}
            application = snap.get("application") or probe.get("application") or {}
            intents = application.get("intents") or {}
            if intents.get("message_content") == "disabled":
                issues.append(StatusIssue(
                    "discord", account, "intent",
                    "Message Content intent is not enabled for this application: guild messages arrive "
                    "without text", INTENT_FIX))
            audit = snap.get("audit") or probe.get("audit") or {}
            for channel in audit.get("channels", ()):
                if channel.get("ok"):
                    continue
                if channel.get("error"):
                    issues.append(StatusIssue("discord", account, "permissions",
                                              f"Channel {channel['id']} permission check failed: {channel['error']}",
                                              "check the channel id in channels and that the bot is in that server"))
                else:
                    issues.append(StatusIssue(
                        "discord", account, "permissions",
                        f"Channel {channel['id']} permission check failed: missing {', '.join(channel['missing'])}",
                        "grant the bot's role View Channel and Send Messages in that channel"))
        return issues
