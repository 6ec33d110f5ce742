"""Rich renderings of the status report, the provider listing and the outbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"running": "green", "starting": "yellow", "backoff": "yellow", "stopping": "yellow",
                "failed": "bold red", "unconfigured": "red", "disabled": "dim", "stopped": "dim"}
OUTBOX_STYLES = {"delivered": "green", "pending": "yellow", "sending": "yellow", "dead": "bold red"}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ago(value: str | None, now: datetime | None = None) -> str:
    """``"12s ago"`` for an ISO-8601 timestamp, ``"-"`` for none."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    return _span(seconds) + " ago" if seconds >= 0 else "in " + _span(-seconds)


def _span(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def status_renderable(report: Mapping[str, Any], *, now: datetime | None = None) -> RenderableType:
    gateway = report.get("gateway") or {}
    reload = gateway.get("reload") or {}
    header = Text()
    header.append(f"Switchboard {gateway.get('version')}", style="bold")
    header.append(f" · pid {gateway.get('pid')} · up since {gateway.get('started_at')} "
                  f"({ago(gateway.get('started_at'), now).replace(' ago', '')})")
    if gateway.get("config_path"):
        header.append(f"\nconfig {gateway['config_path']}")
    header.append("\nlast reload: ")
    if reload.get("last_at"):
        ok = reload.get("last_ok")
        header.append("ok" if ok else "failed", style="green" if ok else "bold red")
        header.append(f" at {reload['last_at']} ({ago(reload['last_at'], now)}, {reload.get('last_trigger') or '?'})")
        if reload.get("last_error"):
            header.append(f": {reload['last_error']}", style="red")
    else:
        header.append("none yet", style="dim")
    header.append(f" · mode {reload.get('mode')}", style="dim")

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("Provider", "Account", "State", "Connected", "Last in", "Last out"):
        table.add_column(column, no_wrap=True)
    table.add_column("Error", overflow="fold")
    for snap in report.get("accounts") or []:
        table.add_row(*account_cells(snap, now))
    parts: list[RenderableType] = [header, Text(""), table if report.get("accounts") else
                                   Text("no accounts configured", style="dim")]
    issues = report.get("issues") or []
    if issues:
        parts += [Text(""), Text("Warnings", style="bold yellow"), issues_renderable(issues)]
    return Group(*parts)


def account_cells(snap: Mapping[str, Any], now: datetime | None = None) -> list[Text | str]:
    state = str(snap.get("state"))
    error = snap.get("last_error") or ""
    if state == "backoff" and snap.get("next_retry_at"):
        when = ago(snap["next_retry_at"], now)
        error = f"{error} ({'retry ' + when if when.startswith('in ') else 'retrying now'})".strip()
    probe = snap.get("probe")
    if isinstance(probe, Mapping):
        error = (f"{error}; " if error else "") + ("probe ok" if probe.get("ok") else
                                                     f"probe failed: {probe.get('error')}")
    account = str(snap.get("account"))
    if snap.get("name"):
        account += f" ({snap['name']})"
    return [str(snap.get("provider")), account, Text(state, style=STATE_STYLES.get(state, "")),
            "yes" if snap.get("connected") else "no", ago(snap.get("last_inbound_at"), now),
            ago(snap.get("last_outbound_at"), now), error]


def issues_renderable(issues: Sequence[Mapping[str, Any]]) -> Text:
    text = Text()
    for i, issue in enumerate(issues):
        if i:
            text.append("\n")
        who = f"{issue['provider']}/{issue['account']}" if issue.get("account") else str(issue.get("provider"))
        text.append(f"- {who} ({issue.get('kind')}): {issue.get('message')}")
        if issue.get("fix"):
            text.append(f"\n  fix: {issue['fix']}", style="dim")
    return text


def providers_renderable(listing: Mapping[str, Any]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("Provider", "Account", "Enabled", "Configured", "Secrets"):
        table.add_column(column, no_wrap=True)
    table.add_column("Details", overflow="fold")
    for provider in listing.get("providers") or []:
        label = f"{provider['id']}"
        if provider.get("aliases"):
            label += f" ({', '.join(provider['aliases'])})"
        accounts = provider.get("accounts") or []
        if not accounts:
            table.add_row(label, Text("-", style="dim"), "", "", "", Text("not set up", style="dim"))
            continue
        for account in accounts:
            enabled = Text("yes", style="green") if account["enabled"] else Text(
                f"no ({account.get('disabled_reason') or 'disabled'})", style="dim")
            configured = Text("yes", style="green") if account["configured"] else Text(
                f"no ({account.get('unconfigured_reason') or 'not configured'})", style="red")
            secrets = ", ".join(f"{k}={v}" for k, v in (account.get("secret_sources") or {}).items()) or "-"
            details = " ".join(f"{k}={v}" for k, v in (account.get("details") or {}).items())
            name = account["account"] + (f" ({account['name']})" if account.get("name") else "")
            table.add_row(label, name, enabled, configured, secrets, details)
    parts: list[RenderableType] = [table]
    failed = listing.get("failed") or []
    if failed:
        text = Text("\nFailed to load\n", style="bold red")
        for failure in failed:
            text.append(f"- {failure['id']} from {failure['source']}: {failure['error']}\n")
        parts.append(text)
    if listing.get("note"):
        parts.append(Text(f"\n{listing['note']}", style="dim"))
    return Group(*parts)


def outbox_renderable(messages: Sequence[Mapping[str, Any]]) -> RenderableType:
    if not messages:
        return Text("the outbox is empty", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("Id", "Account", "To", "State", "Tries", "Created"):
        table.add_column(column, no_wrap=True)
    table.add_column("Error", overflow="fold", min_width=16)
    for message in messages:
        state = str(message.get("state"))
        table.add_row(str(message.get("id")), f"{message.get('provider')}/{message.get('account')}",
                      str(message.get("target") or "-"), Text(state, style=OUTBOX_STYLES.get(state, "")),
                      str(message.get("attempts", "-")), ago(message.get("created_at")),
                      str(message.get("last_error") or ""))
    return table
