"""Shared CLI bits: the ``--config`` option and one-line failures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $SWITCHBOARD_CONFIG or "
                 "~/.config/switchboard/switchboard.toml).", envvar="SWITCHBOARD_CONFIG", show_default=False),
]


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)
