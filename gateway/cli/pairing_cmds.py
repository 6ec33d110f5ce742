"""``switchboard pairing list|approve|deny``: manage who may message a ``pairing`` account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from gateway.cli.common import ConfigOption

pairing_app = typer.Typer(no_args_is_help=True,
                          help="Approve or deny senders who asked for access (dm_policy = \"pairing\").")


def _request(config: Path | None, method: str, path: str) -> dict[str, Any]:
    from gateway.cli.client import control_request

    return control_request(config, method, path)


def _sender(sender: dict[str, Any]) -> str:
    parts = [sender.get("name") or "", f"@{sender['username']}" if sender.get("username") else "",
             f"({sender['id']})"]
    return " ".join(p for p in parts if p)


@pairing_app.command("list")
def list_cmd(config: ConfigOption = None,
             provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Pending pairing requests (codes expire after an hour)."""
    path = "/v1/pairing" + (f"?provider={quote(provider)}" if provider else "")
    data = _request(config, "GET", path)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    requests = data.get("requests", [])
    if not requests:
        typer.echo("No pending pairing requests.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("provider", "account", "code", "sender", "requested", "expires", box=None)
    for r in requests:
        table.add_row(r["provider"], r["account"], r["code"], _sender(r["sender"]), r["created_at"], r["expires_at"])
    Console().print(table)
    typer.echo("Approve with: switchboard pairing approve <provider> <code>")


@pairing_app.command("approve")
def approve(provider: str = typer.Argument(..., help="Provider id (e.g. telegram)."),
            code: str = typer.Argument(..., help="The code the sender received."),
            config: ConfigOption = None) -> None:
    """Let the sender of CODE in; their next message reaches the handler (no restart)."""
    data = _request(config, "POST", f"/v1/pairing/{quote(provider)}/{quote(code.strip())}/approve")
    r = data["approved"]
    typer.echo(f"approved {_sender(r['sender'])} on {r['provider']}/{r['account']}")


@pairing_app.command("deny")
def deny(provider: str = typer.Argument(..., help="Provider id (e.g. telegram)."),
         code: str = typer.Argument(..., help="The code the sender received."),
         config: ConfigOption = None) -> None:
    """Refuse CODE; the sender gets no new code for an hour."""
    data = _request(config, "POST", f"/v1/pairing/{quote(provider)}/{quote(code.strip())}/deny")
    r = data["denied"]
    typer.echo(f"denied {_sender(r['sender'])} on {r['provider']}/{r['account']}")


def register(app: typer.Typer) -> None:
    app.add_typer(pairing_app, name="pairing")
