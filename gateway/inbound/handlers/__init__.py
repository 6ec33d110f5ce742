"""Handler kinds: where an accepted message goes (``[handler] kind = ...``).

Every kind implements :class:`Handler`: it gets the message envelope (DESIGN.md §7) and
returns the replies. A failure is a :class:`HandlerError`; ``permanent`` ones (a webhook's
4xx) are not retried. See ``docs/handlers.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from gateway.config.model import HandlerConfig
from gateway.inbound.messages import Reply


class HandlerError(Exception):
    """One failed handler call. ``permanent`` failures skip the remaining attempts."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Handler(Protocol):
    kind: str

    async def handle(self, envelope: dict[str, Any], *, attempt: int) -> list[Reply]:
        """Handle one message (``attempt`` counts from 1) and return its replies."""
        ...


@dataclass(frozen=True)
class HandlerEnv:
    """What the pipeline lends its handlers."""

    #: The pipeline's shared HTTP session (webhooks).
    http: Callable[[], aiohttp.ClientSession]
    #: Directory relative paths (``secret_file``) are resolved against: the config file's.
    base_dir: Path | None = None
    #: Register a secret read from a file with the log redactor.
    on_secret: Callable[[str], None] = lambda _secret: None


def build_handler(config: HandlerConfig, env: HandlerEnv) -> Handler | None:
    """The handler for ``config`` (``None`` for ``kind = "none"``: messages are only stored)."""
    if config.kind == "echo":
        from gateway.inbound.handlers.echo import EchoHandler

        return EchoHandler()
    if config.kind == "webhook":
        from gateway.inbound.handlers.webhook import WebhookHandler

        return WebhookHandler(config, env)
    if config.kind == "command":
        from gateway.inbound.handlers.command import CommandHandler

        return CommandHandler(config)
    if config.kind == "python":
        from gateway.inbound.handlers.python import PythonHandler

        return PythonHandler(config)
    return None


__all__ = ["Handler", "HandlerEnv", "HandlerError", "build_handler"]
