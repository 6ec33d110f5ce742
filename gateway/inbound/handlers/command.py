"""``kind = "command"``: run a program per message; the envelope on stdin, the reply on stdout.

The program runs in its own process group so a timeout (``timeout_s``) or a shutdown kills
everything it started. A non-zero exit is a failure (retried with backoff), logged with the
tail of stderr. Empty stdout means no reply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import anyio
import structlog
from anyio.abc import ByteReceiveStream, Process

from gateway.config.model import HandlerConfig
from gateway.inbound.handlers import HandlerError
from gateway.inbound.messages import Reply

log = structlog.get_logger("gateway.inbound.command")

MAX_STDOUT_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 2048


class CommandHandler:
    kind = "command"

    def __init__(self, config: HandlerConfig):
        assert config.command
        self.argv = list(config.command)
        self.timeout_s = config.timeout_s

    async def handle(self, envelope: dict[str, Any], *, attempt: int) -> list[Reply]:
        data = json.dumps(envelope, ensure_ascii=False).encode() + b"\n"
        try:
            process = await anyio.open_process(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise HandlerError(f"cannot start handler command {self.argv[0]!r}: {exc.strerror or exc}") from None
        stdout, stderr = bytearray(), bytearray()
        try:
            with anyio.fail_after(self.timeout_s):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_feed, process, data)
                    tg.start_soon(_collect, process.stdout, stdout, MAX_STDOUT_BYTES, False)
                    tg.start_soon(_collect, process.stderr, stderr, STDERR_TAIL_BYTES, True)
                code = await process.wait()
        except TimeoutError:
            raise HandlerError(f"handler command timed out after {self.timeout_s:g}s (process group killed)") from None
        finally:
            await _reap(process)
        tail = stderr.decode("utf-8", "replace").strip()
        if code != 0:
            log.warning("handler.command_failed", command=self.argv[0], exit_code=code, stderr_tail=tail)
            raise HandlerError(f"handler command exited with {code}" + (f": {tail.splitlines()[-1]}" if tail else ""))
        if len(stdout) > MAX_STDOUT_BYTES:
            raise HandlerError(f"handler command wrote more than {MAX_STDOUT_BYTES} bytes", permanent=True)
        text = stdout.decode("utf-8", "replace").rstrip("\n")
        return [Reply(text=text)] if text.strip() else []


async def _feed(process: Process, data: bytes) -> None:
    assert process.stdin is not None
    try:
        await process.stdin.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the program does not read stdin: fine
    finally:
        await process.stdin.aclose()


async def _collect(stream: ByteReceiveStream | None, into: bytearray, limit: int, keep_tail: bool) -> None:
    assert stream is not None
    async for chunk in stream:
        into.extend(chunk)
        if len(into) > limit:
            if keep_tail:
                del into[:-limit]
            else:
                del into[limit + 1:]


async def _reap(process: Process) -> None:
    """Kill the whole process group if the program is still running, and wait for it."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            with anyio.move_on_after(5):
                await process.wait()
        await process.aclose()
