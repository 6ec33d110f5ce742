"""Commands that talk to the daemon (``status``, ``send``, ``poll``, ``reload``, ``outbox``,
``accounts``) and the ``providers`` commands, which work on the config file without it.

Flags of ``send``, ``poll`` and ``status --json`` are stable interfaces (DESIGN.md §8).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.text import Text

from gateway.cli.client import ControlError, control_request, stream_events
from gateway.cli.common import ConfigOption, fail
from gateway.cli.status_view import outbox_renderable, providers_renderable, status_renderable
from gateway.errors import SwitchboardError
from gateway.plugin import ProviderPlugin, ResolvedAccount
from gateway.registry import Registry
from gateway.secrets import redact_account, redact_mapping

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ProviderOption = Annotated[str, typer.Option("--provider", help="Provider id or alias (telegram, tg, ...).",
                                             show_default=False)]
AccountOption = Annotated[str | None, typer.Option("--account", help="Account id (default: the provider's "
                                                   "default account).", show_default=False)]
RequiredAccount = Annotated[str, typer.Option("--account", help="Account id.", show_default=False)]

#: How long ``--wait`` lets the daemon wait for a delivery before answering 504.
WAIT_TIMEOUT_S = 60.0

providers_app = typer.Typer(no_args_is_help=True, help="List and edit provider accounts in the config file "
                            "(no daemon needed; a running daemon applies edits on reload).")
outbox_app = typer.Typer(no_args_is_help=True, help="Inspect and handle pending and dead outbound messages.")
accounts_app = typer.Typer(no_args_is_help=True, help="Start, stop or restart one account of the running daemon.")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("send")(send)
    app.command("poll")(poll)
    app.command("reload")(reload)
    app.add_typer(providers_app, name="providers")
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(accounts_app, name="accounts")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- status ---------------------------------------------------------------------------------------


def status(config: ConfigOption = None,
           probe: Annotated[bool, typer.Option("--probe", help="Also probe every account (credentials, "
                                               "connection), concurrently.")] = False,
           timeout_ms: Annotated[int, typer.Option("--timeout-ms", min=1, max=60_000,
                                                   help="Time limit of each probe.")] = 5_000,
           as_json: JsonOption = False,
           watch: Annotated[bool, typer.Option("--watch", help="Keep refreshing (live, from the daemon's "
                                               "event stream) until Ctrl-C.")] = False) -> None:
    """Show every account's state, then warnings with their fixes."""
    query = {"probe": 1, "timeout_ms": timeout_ms} if probe else None
    timeout = 30.0 + (timeout_ms / 1000 if probe else 0.0)  # the probes' limit plus slack, never the same
    report = control_request(config, "GET", "/v1/status", timeout=timeout, query=query)
    if watch:
        _watch(config, report, as_json)
    elif as_json:
        _print_json(report)
    else:
        _console().print(status_renderable(report))


def _watch(config: Path | None, report: dict[str, Any], as_json: bool) -> None:
    from rich.live import Live

    changed = threading.Event()
    problem: list[str] = []

    def listen() -> None:
        while True:
            try:
                for _ in stream_events(config):
                    problem.clear()
                    changed.set()
            except (SwitchboardError, OSError, ValueError) as exc:
                problem[:] = [str(exc) or type(exc).__name__]
            else:
                problem[:] = ["the daemon closed the event stream"]
            changed.set()
            time.sleep(2.0)

    threading.Thread(target=listen, name="status-watch", daemon=True).start()
    console = _console()
    try:
        if as_json:
            while True:
                typer.echo(json.dumps(report, separators=(",", ":")))
                report = _next_report(config, changed, report, problem, periodic=False)
        with Live(status_renderable(report), console=console, auto_refresh=False, transient=False) as live:
            while True:
                report = _next_report(config, changed, report, problem, periodic=True)
                view = status_renderable(report)
                if problem:
                    view = Group(view, Text(f"\n{problem[0]}; retrying", style="bold red"))
                live.update(view, refresh=True)
    except KeyboardInterrupt:
        return


def _next_report(config: Path | None, changed: threading.Event, report: dict[str, Any], problem: list[str],
                 *, periodic: bool) -> dict[str, Any]:
    while True:
        fired = changed.wait(timeout=5.0)  # redraw every 5 s anyway: the "ago" columns move
        if not fired and not periodic:
            continue
        time.sleep(0.2)  # coalesce a burst of events into one refresh
        changed.clear()
        try:
            return control_request(config, "GET", "/v1/status", timeout=30.0)
        except SwitchboardError as exc:
            problem[:] = [str(exc)]
            if periodic:
                return report


# --- send and poll -----------------------------------------------------------------------------


def send(provider: ProviderOption,
         to: Annotated[str, typer.Option("--to", help="Target in the provider's format, e.g. chat:42.",
                                         show_default=False)],
         account: AccountOption = None,
         text: Annotated[str | None, typer.Option("--text", help="Message text (markdown where the provider "
                                                  "has it).", show_default=False)] = None,
         text_file: Annotated[Path | None, typer.Option("--text-file", help="Read the text from a file "
                                                        "(- for stdin).", show_default=False)] = None,
         media: Annotated[list[str] | None, typer.Option("--media", help="A file path or URL; repeat for "
                                                         "several.", show_default=False)] = None,
         reply_to: Annotated[str | None, typer.Option("--reply-to", help="Message id to reply to.",
                                                      show_default=False)] = None,
         thread: Annotated[str | None, typer.Option("--thread", help="Thread/topic id.", show_default=False)] = None,
         idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Sending again with the "
                                                             "same key sends nothing.", show_default=False)] = None,
         wait: Annotated[bool, typer.Option("--wait", help="Wait until delivered (or dead).")] = False,
         as_json: JsonOption = False,
         config: ConfigOption = None) -> None:
    """Send a message through an account of the running daemon."""
    if text is not None and text_file is not None:
        fail("give --text or --text-file, not both")
    if text_file is not None:
        text = _read_text_file(text_file)
    files = [_media_ref(item) for item in media or []]
    if not text and not files:
        fail("nothing to send: give --text, --text-file or --media")
    body = {"provider": provider, "account": account, "to": to, "text": text or "", "media": files,
            "reply_to": reply_to, "thread": thread, "idempotency_key": idempotency_key}
    _deliver(config, "/v1/send", body, wait, as_json)


def poll(provider: ProviderOption,
         to: Annotated[str, typer.Option("--to", help="Target in the provider's format.", show_default=False)],
         question: Annotated[str, typer.Option("--question", help="The question.", show_default=False)],
         option: Annotated[list[str], typer.Option("--option", help="An answer; repeat, at least twice.",
                                                   show_default=False)],
         account: AccountOption = None,
         multi: Annotated[bool, typer.Option("--multi", help="Allow choosing several answers.")] = False,
         duration_hours: Annotated[int | None, typer.Option("--duration-hours", min=1, help="Close the poll "
                                                            "after this many hours (where supported).",
                                                            show_default=False)] = None,
         wait: Annotated[bool, typer.Option("--wait", help="Wait until delivered (or dead).")] = False,
         as_json: JsonOption = False,
         config: ConfigOption = None) -> None:
    """Send a poll (native where the provider has polls, emulated otherwise)."""
    if len(option) < 2:
        fail("a poll needs at least two answers: repeat --option")
    body = {"provider": provider, "account": account, "to": to, "question": question, "options": option,
            "max_selections": len(option) if multi else 1, "duration_hours": duration_hours}
    _deliver(config, "/v1/poll", body, wait, as_json)


def _read_text_file(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --text-file {path}: {getattr(exc, 'strerror', None) or exc}")


def _media_ref(item: str) -> str:
    if "://" in item or item.startswith("data:"):
        return item
    path = Path(item).expanduser()
    if not path.is_file():
        fail(f"--media {item}: no such file (give a file path or a URL)")
    return str(path.resolve())  # the daemon's working directory is not ours


def _deliver(config: Path | None, path: str, body: dict[str, Any], wait: bool, as_json: bool) -> None:
    query = {"wait": 1, "timeout_ms": int(WAIT_TIMEOUT_S * 1000)} if wait else None
    try:
        answer = control_request(config, "POST", path, body, timeout=WAIT_TIMEOUT_S + 15, query=query)
    except ControlError as exc:
        if as_json:
            _print_json(exc.body)
            raise typer.Exit(1) from None
        raise
    if as_json:
        _print_json(answer)
        return
    record = answer.get("message") or {}
    where = f"{record.get('provider')}/{record.get('account')} → {record.get('target')}"
    if record.get("state") == "delivered":
        ids = ", ".join(str(r.get("message_id")) for r in record.get("results") or [] if r.get("message_id"))
        typer.echo(f"delivered {record.get('id')} via {where}" + (f" (message id {ids})" if ids else ""))
    else:
        typer.echo(f"queued {record.get('id')} via {where} ({record.get('state')})")


# --- reload, outbox, accounts -------------------------------------------------------------------


def reload(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Reload the config file now; prints what changed and what was done."""
    result = control_request(config, "POST", "/v1/reload", timeout=120.0)
    if as_json:
        _print_json(result)
    else:
        plan = result.get("plan") or {}
        state = "ok" if result.get("ok") else "failed"
        typer.echo(f"reload {state} ({result.get('duration_ms')} ms)")
        for changed in plan.get("changed_paths") or []:
            typer.echo(f"  changed: {changed}")
        for action in result.get("actions") or []:
            typer.echo(f"  {action}")
        for error in result.get("errors") or []:
            typer.echo(f"  error: {error}", err=True)
    if not result.get("ok"):
        raise typer.Exit(1)


@outbox_app.command("list")
def outbox_list(config: ConfigOption = None,
                state: Annotated[str | None, typer.Option("--state", help="pending, sending, delivered or dead.",
                                                          show_default=False)] = None,
                limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
                as_json: JsonOption = False) -> None:
    """List outbox messages (all states, or one)."""
    answer = control_request(config, "GET", "/v1/outbox", query={"state": state, "limit": limit})
    if as_json:
        _print_json(answer)
    else:
        _console().print(outbox_renderable(answer.get("messages") or []))


@outbox_app.command("retry")
def outbox_retry(message_id: Annotated[str, typer.Argument(help="The message id (see `outbox list`).")],
                 config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Put a dead message back in line (attempts start again)."""
    answer = control_request(config, "POST", f"/v1/outbox/{_segment(message_id)}/retry")
    if as_json:
        _print_json(answer)
    else:
        record = answer.get("message") or {}
        typer.echo(f"{record.get('id')}: {record.get('state')}")


@outbox_app.command("drop")
def outbox_drop(message_id: Annotated[str, typer.Argument(help="The message id (see `outbox list`).")],
                config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Delete a pending or dead message."""
    answer = control_request(config, "DELETE", f"/v1/outbox/{_segment(message_id)}")
    if as_json:
        _print_json(answer)
    else:
        typer.echo(f"dropped {answer.get('dropped')}")


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _account_command(action: str) -> Any:
    def command(provider: ProviderOption, account: RequiredAccount, config: ConfigOption = None,
                as_json: JsonOption = False) -> None:
        answer = control_request(config, "POST", f"/v1/accounts/{_segment(provider)}/{_segment(account)}/{action}")
        if as_json:
            _print_json(answer)
            return
        snap = answer.get("account") or {}
        line = f"{snap.get('provider')}/{snap.get('account')}: {snap.get('state')}"
        if snap.get("last_error") and snap.get("state") != "running":
            line += f" ({snap['last_error']})"
        if not answer.get("ok"):
            line += " - the previous run did not stop in time; it restarts once it exits"
        typer.echo(line)

    command.__doc__ = {"start": "Start an account (also one parked in `failed`).",
                       "stop": "Stop an account until it is started again, restarted, or the daemon restarts.",
                       "restart": "Stop and start an account."}[action]
    return command


for _action in ("start", "stop", "restart"):
    accounts_app.command(_action)(_account_command(_action))


# --- providers (config file, no daemon) ---------------------------------------------------------


@providers_app.command("list")
def providers_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every installed provider with its configured accounts (reads the config file only)."""
    listing = provider_listing(config)
    if as_json:
        _print_json(listing)
    else:
        _console().print(providers_renderable(listing))


SetOption = Annotated[list[str] | None, typer.Option("--set", help="key=value for the account; repeat. "
                                                     "E.g. --set bot_token_file=/run/secrets/tg",
                                                     show_default=False)]


@providers_app.command("add")
def providers_add(provider: ProviderOption, account: Annotated[str, typer.Option(
                      "--account", help="Account id (e.g. default, alerts).")] = "default",
                  settings: SetOption = None,
                  name: Annotated[str | None, typer.Option("--name", help="Display name.",
                                                           show_default=False)] = None,
                  config: ConfigOption = None) -> None:
    """Add an account (or update the keys of an existing one)."""
    from gateway.config.edit import add_account

    _edit(config, lambda path, registry: add_account(path, registry, provider, account, settings or [], name=name))


@providers_app.command("remove")
def providers_remove(provider: ProviderOption, account: Annotated[str | None, typer.Option(
                         "--account", help="Account id (may be left out when the provider has one account).",
                         show_default=False)] = None,
                     config: ConfigOption = None) -> None:
    """Delete an account's table from the config file (no prompt). Use `disable` to keep it."""
    from gateway.config.edit import remove_account

    _edit(config, lambda path, registry: remove_account(path, registry, provider, account))


@providers_app.command("enable")
def providers_enable(provider: ProviderOption, account: Annotated[str | None, typer.Option(
                         "--account", help="One account (default: the whole provider).", show_default=False)] = None,
                     config: ConfigOption = None) -> None:
    """Enable a provider, or one of its accounts."""
    from gateway.config.edit import set_enabled

    _edit(config, lambda path, registry: set_enabled(path, registry, provider, account, True))


@providers_app.command("disable")
def providers_disable(provider: ProviderOption, account: Annotated[str | None, typer.Option(
                          "--account", help="One account (default: the whole provider).",
                          show_default=False)] = None,
                      config: ConfigOption = None) -> None:
    """Disable a provider, or one of its accounts (the configuration is kept)."""
    from gateway.config.edit import set_enabled

    _edit(config, lambda path, registry: set_enabled(path, registry, provider, account, False))


def _edit(config: Path | None, change: Any) -> None:
    from gateway.config import resolve_config_path
    from gateway.config.edit import EditRefused

    path = resolve_config_path(config)
    try:
        result = change(path, quiet_registry())
    except EditRefused as exc:
        if not exc.problems:
            raise
        typer.echo(f"error: {exc}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from None
    backup = f" (previous version: {result.backup})" if result.backup else ""
    typer.echo(f"{result.message} in {result.path}{backup}.")
    for note in result.notes:
        typer.echo(f"note: {note}")


def quiet_registry() -> Registry:
    """The installed plugins; load failures go to stderr (they are listed anyway)."""
    from gateway.logging import configure_logging

    configure_logging("console", "error")
    return Registry.discover()


def provider_listing(config: Path | None) -> dict[str, Any]:
    """What ``providers list`` shows: every installed provider, its accounts from the file."""
    from gateway.config import load_config, resolve_config_path
    from gateway.errors import ConfigNotFound

    registry = quiet_registry()
    path = resolve_config_path(config).absolute()
    note = None
    try:
        accounts = list(load_config(path, registry).accounts.values())
    except ConfigNotFound:
        accounts = []
        note = f"no config file at {path} yet: `switchboard config init --config {path}` writes one"
    providers = []
    for plugin in registry.list_plugins():
        rows = []
        for resolved in (a for a in accounts if a.provider == plugin.id):
            configured, reason = _is_configured(plugin, resolved)
            rows.append({"account": resolved.account_id, "name": resolved.config.name,
                         "enabled": resolved.enabled, "disabled_reason": resolved.disabled_reason,
                         "configured": configured, "unconfigured_reason": reason,
                         "secret_sources": dict(resolved.secret_sources), "details": _describe(plugin, resolved)})
        providers.append({"id": plugin.id, "label": plugin.meta.label, "aliases": list(plugin.meta.aliases),
                          "source": registry.distribution(plugin.id), "accounts": rows})
    failed = [{"id": f.id, "source": f.source, "error": f.error} for f in registry.failures]
    return {"config_path": str(path), "providers": providers, "failed": failed, "note": note}


def _is_configured(plugin: ProviderPlugin, resolved: ResolvedAccount) -> tuple[bool, str | None]:
    check = plugin.config.is_configured
    if check is None:
        return True, None  # required secrets are already enforced by the loader
    try:
        return check(resolved)
    except Exception as exc:  # noqa: BLE001 - a broken hook must not break the listing
        return False, f"is_configured failed: {type(exc).__name__}"


def _describe(plugin: ProviderPlugin, resolved: ResolvedAccount) -> dict[str, Any]:
    describe = plugin.config.describe_account
    if describe is None:
        return {}
    try:
        details = redact_mapping(dict(describe(resolved)))
    except Exception as exc:  # noqa: BLE001
        return {"error": f"describe_account failed: {type(exc).__name__}"}
    return json.loads(redact_account(json.dumps(details, default=str), resolved))
