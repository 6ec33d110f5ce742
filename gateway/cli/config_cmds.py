"""``switchboard config check|show|path|init``: work without a running daemon."""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from pathlib import Path

import typer

from gateway.cli.common import ConfigOption, fail
from gateway.config import load_config, resolve_config_path
from gateway.errors import ConfigError
from gateway.registry import Registry
from gateway.secrets import redact_mapping

config_app = typer.Typer(no_args_is_help=True, help="Check, show and create the configuration file.")

STARTER = """\
# Switchboard configuration. Reference: docs/configuration.md
[gateway]
state_dir = "{state_dir}"
log_level = "info"

[gateway.reload]
mode = "hybrid"          # off | restart | hot | hybrid
debounce_ms = 300

[gateway.control]
listen = "127.0.0.1:8787" # web UI, webchat, provider webhooks, API (bearer token)
token_file = "{token_file}"

[handler]
kind = "echo"            # echo | webhook | command | python

# The built-in web chat: open http://127.0.0.1:8787/chat
[providers.webchat]
dm_policy = "open"

# [providers.telegram]
# bot_token_file = "/run/secrets/telegram"
"""


@config_app.command("check")
def check(config: ConfigOption = None) -> None:
    """Validate the file: prints `ok`, or every problem with its dotted path (exit 1)."""
    path = resolve_config_path(config)
    try:
        load_config(path, Registry.discover())
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    typer.echo("ok")


@config_app.command("path")
def path_cmd(config: ConfigOption = None) -> None:
    """Print the config file path that would be used."""
    typer.echo(str(resolve_config_path(config)))


@config_app.command("show")
def show(config: ConfigOption = None, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective file with secrets redacted."""
    path = resolve_config_path(config)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"config file {path} does not exist; create one with `switchboard config init --config {path}`")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    redacted = redact_mapping(raw)
    if as_json:
        typer.echo(json.dumps(redacted, indent=2, sort_keys=False))
        return
    import tomlkit

    typer.echo(tomlkit.dumps(redacted).rstrip())


@config_app.command("init")
def init(config: ConfigOption = None,
         force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
         state_dir: str = typer.Option("~/.local/state/switchboard", help="Where state is kept."),
         token_file: str = typer.Option("~/.config/switchboard/token", help="Control API token file.")) -> None:
    """Write a starter config (mode 0600) and a control token (mode 0600)."""
    path = resolve_config_path(config)
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(path, STARTER.format(state_dir=state_dir, token_file=token_file))
    token_path = Path(token_file).expanduser()
    if not token_path.exists():
        token_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(token_path, secrets.token_urlsafe(32) + "\n")
        typer.echo(f"wrote control token {token_path}")
    typer.echo(f"wrote {path}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)
