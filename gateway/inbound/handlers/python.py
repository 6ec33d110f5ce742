"""``kind = "python"``: call ``async def function(message: dict)`` from an importable module.

``function = "package.module:function"``. It receives the envelope (DESIGN.md §7) and returns
``None``, a string, or a list of reply dicts (``{"text": ..., "media": [...]}``) or strings.
Any exception is a failure, retried with backoff. The module must be importable by the
daemon (installed, or on ``PYTHONPATH``); it is imported once per handler configuration.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import anyio

from gateway.config.model import HandlerConfig
from gateway.inbound.handlers import HandlerError
from gateway.inbound.messages import Reply, ReplyFormatError, parse_replies


class PythonHandler:
    kind = "python"

    def __init__(self, config: HandlerConfig):
        assert config.function
        self.spec = config.function
        self.timeout_s = config.timeout_s
        self._function: Callable[[dict[str, Any]], Any] | None = None

    def function(self) -> Callable[[dict[str, Any]], Any]:
        if self._function is None:
            module_name, _, name = self.spec.partition(":")
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - an import failure is a handler failure
                raise HandlerError(f"cannot import {module_name!r} for handler.function: "
                                   f"{type(exc).__name__}: {exc}") from None
            function = getattr(module, name, None)
            if not callable(function):
                raise HandlerError(f"handler.function {self.spec!r}: {module_name} has no function {name!r}")
            self._function = function
        return self._function

    async def handle(self, envelope: dict[str, Any], *, attempt: int) -> list[Reply]:
        function = self.function()
        try:
            with anyio.fail_after(self.timeout_s):
                result = function(envelope)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            raise HandlerError(f"{self.spec} timed out after {self.timeout_s:g}s") from None
        except HandlerError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
            raise HandlerError(f"{self.spec} raised {type(exc).__name__}: {exc}") from None
        try:
            return parse_replies(result)
        except ReplyFormatError as exc:
            raise HandlerError(f"{self.spec} returned no valid replies: {exc}", permanent=True) from None
