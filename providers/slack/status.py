"""Probe (``auth.test`` + ``apps.connections.open``) and status issues."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from gateway.errors import SwitchboardError
from gateway.plugin import AccountContext, ResolvedAccount, StatusIssue

from .client import SlackClient, open_client
from .config import REQUIRED_SCOPES

SCOPES_FIX = ("add the missing Bot Token Scopes under OAuth & Permissions (api.slack.com/apps > your app), "
              "then reinstall the app to the workspace")
SOCKET_FIX = ("enable Socket Mode in the app settings and use an app-level token (xapp-...) with the "
              "connections:write scope")


class SlackStatus:
    async def probe(self, ctx: AccountContext | None, resolved: ResolvedAccount, timeout: float) -> Mapping[str, Any]:
        """Check both tokens: ``auth.test`` (bot token, scopes) and ``apps.connections.open`` (app token)."""
        started = time.monotonic()
        result: dict[str, Any] = {"ok": False}
        with anyio.move_on_after(timeout) as scope:
            client = ctx.client if ctx is not None else None
            if isinstance(client, SlackClient):
                await _probe(client, result)
            else:
                try:
                    async with open_client(resolved) as client:
                        await _probe(client, result)
                except SwitchboardError as exc:
                    result["error"] = str(exc)
        if scope.cancelled_caught:
            result.update(ok=False, error=f"timed out after {timeout:g}s")
        result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
        return result

    def collect_issues(self, snapshots: Sequence[Mapping[str, Any]]) -> Sequence[StatusIssue]:
        """Missing scopes (from the running account or a probe) and a failing Socket Mode probe."""
        issues: list[StatusIssue] = []
        for snapshot in snapshots:
            account = snapshot.get("account")
            raw_probe = snapshot.get("probe")
            probe: Mapping[str, Any] = raw_probe if isinstance(raw_probe, Mapping) else {}
            missing = snapshot.get("missing_scopes") or probe.get("missing_scopes")
            if missing:
                issues.append(StatusIssue("slack", account, "permissions",
                                          f"the bot token lacks scopes: {', '.join(missing)}", SCOPES_FIX))
            socket = probe.get("socket_mode")
            if isinstance(socket, Mapping) and socket.get("ok") is False:
                issues.append(StatusIssue("slack", account, "config",
                                          f"Socket Mode cannot be opened: {socket.get('error')}", SOCKET_FIX))
        return issues


async def _probe(client: SlackClient, result: dict[str, Any]) -> None:
    try:
        identity = await client.auth_test()
    except SwitchboardError as exc:
        result["error"] = str(exc)
        return
    result.update(bot={"id": identity.user_id, "bot_id": identity.bot_id, "name": identity.user_name},
                  team={"id": identity.team_id, "name": identity.team_name},
                  scopes=sorted(identity.scopes) if identity.scopes is not None else None,
                  missing_scopes=list(identity.missing_scopes), required_scopes=list(REQUIRED_SCOPES))
    try:
        await client.open_socket_url()  # the URL is single-use; never connecting to it is fine
        result["socket_mode"] = {"ok": True}
    except SwitchboardError as exc:
        result["socket_mode"] = {"ok": False, "error": str(exc)}
    result["ok"] = result["socket_mode"]["ok"]
    if not result["ok"]:
        result["error"] = result["socket_mode"]["error"]
