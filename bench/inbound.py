"""Inbound benchmark: messages/s through policy, the durable inbox, an echo handler and the outbox.

A real :class:`Gateway` (in process, uvloop, a fresh state dir per run) with the
:class:`InboundPipeline`, the :class:`Outbox` and a no-op provider. The provider emits
10,000 messages from 100 direct chats (100 each, interleaved, like a busy account) under
``dm_policy = "allowlist"``; the echo handler replies to each. A message counts as done when
its reply was delivered through the provider's ``send_text`` (so: accepted, stored, handled,
reply stored in the outbox, sent, marked delivered). Timed from the first ``emit`` to the
last reply; default ``handler.concurrency`` (8). Median of 5 runs; results go to
``bench/results/inbound.txt``.

    .venv/bin/python bench/inbound.py [--messages 10000] [--chats 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.inbound import InboundPipeline  # noqa: E402
from gateway.outbound import Outbox  # noqa: E402
from gateway.plugin import (  # noqa: E402
    AccountContext,
    AccountKey,
    BaseOutbound,
    Chat,
    InboundMessage,
    PluginMeta,
    ProviderPlugin,
    SendOptions,
    SendResult,
    Sender,
    Target,
)
from gateway.registry import Registry  # noqa: E402


class NoopGateway:
    async def run_account(self, ctx: AccountContext) -> None:
        ctx.started()
        await anyio.sleep_forever()


class CountingOutbound(BaseOutbound):
    chunker = "plain"

    def __init__(self) -> None:
        self.sent = 0
        self.target = 0
        self.done = anyio.Event()

    def resolve_target(self, raw: str, account: Any) -> Target:
        return Target("chat", raw)

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        self.sent += 1
        if self.sent == self.target:
            self.done.set()
        return SendResult(str(self.sent), chat_id=target.id)


async def one_run(messages: int, chats: int) -> float:
    outbound = CountingOutbound()
    outbound.target = messages
    plugin = ProviderPlugin(id="bench", meta=PluginMeta(label="Bench"), gateway=NoopGateway(), outbound=outbound)
    registry = Registry([plugin])
    senders = [f"user-{c}" for c in range(chats)]
    with tempfile.TemporaryDirectory() as state:
        raw = {"gateway": {"state_dir": state, "log_level": "warning"}, "handler": {"kind": "echo"},
               "providers": {"bench": {"dm_policy": "allowlist", "allow_from": senders}}}
        gateway = Gateway(parse_config(raw, registry), registry, services=[InboundPipeline, Outbox])
        key = AccountKey("bench", "default")
        now = datetime.now(UTC)
        batch = [InboundMessage(provider="bench", account="default", id=f"m{i}",
                                chat=Chat(senders[i % chats]), sender=Sender(senders[i % chats]),
                                text=f"message {i} from a busy chat", timestamp=now)
                 for i in range(messages)]
        async with anyio.create_task_group() as tg:
            await tg.start(gateway.run)
            with anyio.fail_after(10):
                ctx = await gateway.supervisor.wait_running(key)
            started = time.perf_counter()
            for message in batch:
                await ctx.emit(message)
            with anyio.fail_after(600):
                await outbound.done.wait()
            elapsed = time.perf_counter() - started
            gateway.request_stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from gateway.logging import configure_logging

    configure_logging("console", "warning")
    times = []
    for n in range(args.runs):
        elapsed = anyio.run(one_run, args.messages, args.chats, backend="asyncio",
                            backend_options={"use_uvloop": True})
        times.append(elapsed)
        print(f"run {n + 1}: {args.messages / elapsed:,.0f} messages/s ({elapsed:.2f} s)", flush=True)
    median = statistics.median(times)
    lines = [
        f"inbound: {args.messages:,} messages from {args.chats} chats, policy allowlist -> inbox -> echo "
        f"-> outbox -> no-op provider",
        f"median of {args.runs}: {args.messages / median:,.0f} messages/s ({median:.2f} s; "
        f"runs: {', '.join(f'{t:.2f}' for t in times)} s)",
        f"python {sys.version.split()[0]}, uvloop, handler.concurrency 8, SQLite WAL synchronous=NORMAL",
    ]
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / "inbound.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
