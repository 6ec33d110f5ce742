"""``switchboard inbox list|retry|drop``: inbound messages the handler could not take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from gateway.cli.common import ConfigOption

inbox_app = typer.Typer(no_args_is_help=True, help="Inspect, retry or drop inbound messages (e.g. after handler failures).")


def _request(config: Path | None, method: str, path: str) -> dict[str, Any]:
    from gateway.cli.client import control_request

    return control_request(config, method, path)


@inbox_app.command("list")
def list_cmd(config: ConfigOption = None,
             state: str = typer.Option("failed", "--state", help="pending | done | failed"),
             limit: int = typer.Option(100, "--limit", min=1, max=1000),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Inbox messages in STATE (default: failed, i.e. parked after the handler kept failing)."""
    data = _request(config, "GET", f"/v1/inbox?state={state}&limit={limit}")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    messages = data.get("messages", [])
    if not messages:
        typer.echo(f"No {state} inbox messages.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "provider", "account", "chat", "attempts", "received", "error", box=None)
    for m in messages:
        table.add_row(str(m["id"]), m["provider"], m["account"], m["chat_id"], str(m["attempts"]),
                      m["received_at"], (m.get("last_error") or "")[:80])
    Console().print(table)
    if state == "failed":
        typer.echo("Retry with: switchboard inbox retry <id>   drop with: switchboard inbox drop <id>")


@inbox_app.command("retry")
def retry(message_id: int = typer.Argument(..., help="The inbox id (from `inbox list`)."),
          config: ConfigOption = None) -> None:
    """Put a failed message back in line for the handler."""
    _request(config, "POST", f"/v1/inbox/{message_id}/retry")
    typer.echo(f"inbox message {message_id} queued again")


@inbox_app.command("drop")
def drop(message_id: int = typer.Argument(..., help="The inbox id (from `inbox list`)."),
         config: ConfigOption = None) -> None:
    """Delete a failed message for good."""
    _request(config, "DELETE", f"/v1/inbox/{message_id}")
    typer.echo(f"inbox message {message_id} dropped")


def register(app: typer.Typer) -> None:
    app.add_typer(inbox_app, name="inbox")
