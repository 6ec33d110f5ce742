"""The ``switchboard`` command line (Typer + Rich).

Every command accepts ``--config PATH``. Errors exit non-zero with one clear line, never a
traceback (set ``SWITCHBOARD_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import sys

import typer

from gateway.cli.common import ConfigOption, fail
from gateway.cli.config_cmds import config_app
from gateway.errors import ConfigError, SwitchboardError

app = typer.Typer(name="switchboard", no_args_is_help=True, add_completion=False,
                  help="Switchboard: one daemon for all your chat accounts.",
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(config_app, name="config")


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the daemon in the foreground (systemd, containers, `make run`)."""
    from gateway.config import resolve_config_path
    from gateway.daemon import run_daemon

    path = resolve_config_path(config)
    try:
        code = run_daemon(path)
    except ConfigError as exc:
        fail_config(exc)
    raise typer.Exit(code)


#: sysexits' EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop on a bad file.
EX_CONFIG = 78


def fail_config(exc: ConfigError) -> None:
    if len(exc.problems) == 1 and not exc.problems[0].path:
        fail(exc.problems[0].message, EX_CONFIG)
    print(f"error: invalid configuration{f' in {exc.source}' if exc.source else ''}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    raise typer.Exit(EX_CONFIG)


def _register_optional_commands() -> None:
    # Command groups owned by other modules register themselves here.
    import importlib

    for module in ("gateway.cli.control_cmds", "gateway.cli.pairing_cmds", "gateway.cli.inbox_cmds"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


_register_optional_commands()


def main() -> None:
    raise SystemExit(_run_app())


def _run_app() -> int:
    try:
        from typer._click import exceptions as click_errors  # typer >= 0.22 vendors click
    except ImportError:  # pragma: no cover
        from click import exceptions as click_errors  # type: ignore[no-redef]
    try:
        try:
            result = app(standalone_mode=False)  # usage errors come back to us: one line, no box
        except ConfigError as exc:
            fail_config(exc)
        except SwitchboardError as exc:
            fail(str(exc))
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except click_errors.UsageError as exc:
            hint = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
            print(f"error: {exc.format_message().rstrip('.')}{hint}", file=sys.stderr)
            return exc.exit_code
        except click_errors.ClickException as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return exc.exit_code
        except (typer.Abort, KeyboardInterrupt):
            return 130
        except Exception as exc:  # noqa: BLE001 - no traceback ever reaches the user
            if os.environ.get("SWITCHBOARD_DEBUG"):
                raise
            print(f"error: internal error: {type(exc).__name__}: {exc} (set SWITCHBOARD_DEBUG=1 for details)",
                  file=sys.stderr)
            return 1
    except typer.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0
