"""A loopback HTTP endpoint that the example provider (``url = ...``) sends to.

Every ``POST`` with a JSON body is answered ``{"id": <n>}``. In-process (tests), the sink
records the bodies, can be slowed down (``delay_s``), and counts duplicate
``delivery_id`` values -- the outbox id and part index the example provider sends -- so a
test can tell an at-least-once resend from a lost message. As a script it only counts (the
benchmark's fake provider in another process):

    python tests/fakes/http_sink.py [--port 0]      # prints "PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import Any

import anyio
from aiohttp import web


class HttpSink:
    """Records POSTed JSON bodies; ``await sink.wait_for(lambda s: ...)`` waits on a condition."""

    def __init__(self, *, delay_s: float = 0.0, record: bool = True):
        self.delay_s = delay_s
        self.record = record
        self.bodies: list[dict[str, Any]] = []
        self.received = 0
        self.delivery_ids: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    @property
    def duplicates(self) -> int:
        """Sends beyond the first of each ``delivery_id``."""
        return sum(n - 1 for n in self.delivery_ids.values() if n > 1)

    @property
    def unique(self) -> int:
        return len(self.delivery_ids)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received += 1
        if self.record:
            self.bodies.append(body)
            if body.get("delivery_id"):
                self.delivery_ids[body["delivery_id"]] += 1
            self._changed.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response({"id": self.received})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]  # noqa: SLF001 - the bound port
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}/send"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, condition: Any, timeout: float = 30.0) -> None:
        """Wait until ``condition(self)`` holds (checked after every recorded POST)."""
        with anyio.fail_after(timeout):
            while not condition(self):
                self._changed.clear()
                await self._changed.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        sink = HttpSink(record=False)
        url = await sink.start(port=args.port)
        print("PORT", url.rsplit(":", 1)[1].split("/")[0], flush=True)
        print(json.dumps({"url": url}), file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:  # pragma: no cover
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
