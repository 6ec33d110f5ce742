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

    for module in ("gateway.cli.control_cmds", "gateway.cli.pairing_cmds"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


_register_optional_commands()


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        fail_config(exc)
    except SwitchboardError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - no traceback ever reaches the user
        if os.environ.get("SWITCHBOARD_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (set SWITCHBOARD_DEBUG=1 for details)",
              file=sys.stderr)
        raise SystemExit(1) from None
