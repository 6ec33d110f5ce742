"""structlog setup: JSON lines off a TTY (journald, docker), console on a TTY.

Every line carries ``provider``/``account`` where it has them (bound per account task), and
a :class:`~gateway.secrets.SecretRedactor` runs last before rendering.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from gateway.secrets import SecretRedactor

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", *,
                      redactor: SecretRedactor | None = None, stream: object = None) -> None:
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if redactor is not None:
        processors.append(redactor)
    processors.append(structlog.processors.JSONRenderer() if use_json
                      else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiohttp, slack_sdk) go to the same stream at WARNING+.
    logging.basicConfig(level=logging.WARNING, stream=out, format="%(levelname)s %(name)s: %(message)s", force=True)


def set_level(level: str) -> None:
    """Apply ``gateway.log_level`` live (reload)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)))
