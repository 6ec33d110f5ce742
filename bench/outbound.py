"""Outbound benchmark: the whole pipeline with the durable outbox against a bare aiohttp loop.

A fake provider (``tests/fakes/http_sink.py``, aiohttp + uvloop) runs in another process.
Each run is one event loop (uvloop, as the daemon) holding both contestants, on the same fake:

* the pipeline: a real :class:`Gateway` with the :class:`Outbox` and the example provider
  (``url`` = the fake); ``deliver()`` calls spread over 32 targets of one account (32
  producers, one per target, like 32 concurrent API clients), timed from the first
  ``deliver()`` to the last message committed as delivered and the WAL folded back into
  the database (the checkpoint is the pipeline's work, so it is charged to the pipeline).
  Per-target FIFO leaves 32 lanes in flight;
* the bare loop: ``ClientSession.post(json=...)`` + ``resp.json()`` with 32 workers sharing
  one session: the same concurrency, the same JSON bodies.

The machine is shared and its speed drifts by tens of percent within seconds, so the two
alternate in blocks (``--blocks`` per contestant, in ABBA order: pipeline, bare, bare,
pipeline, ...) until each has sent ``--messages``; each one's rate is its messages over the
sum of its blocks' times. The bare loop with 1 in flight is measured in a run of its own.
Medians of 5 runs; the chunker's throughput on 10 MB of mixed markdown is printed too.
Results go to bench/results/outbound.txt.

    .venv/bin/python bench/outbound.py [--messages 10000] [--runs 5] [--blocks 10] [--profile]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import anyio  # noqa: E402
from anyio.abc import TaskGroup  # noqa: E402

TARGETS = 32
TEXT = "Deploy finished: build {i} is live on production (3 services, 0 errors) - see the dashboard."


def payload(i: int) -> dict[str, Any]:
    return {"account": "default", "target": f"chat:{i % TARGETS}", "text": TEXT.format(i=i), "reply_to": None,
            "delivery_id": f"bench{i}:0"}


class Rate(NamedTuple):
    per_s: float  # messages per wall-clock second
    cpu_us: float  # CPU time of this process per message


async def post_all(session: aiohttp.ClientSession, url: str, bodies: list[dict[str, Any]],
                   in_flight: int) -> None:
    it = iter(bodies)

    async def worker() -> None:
        for body in it:
            async with session.post(url, json=body) as resp:
                await resp.json(content_type=None)

    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)


def bare_inputs(n: int) -> list[dict[str, Any]]:
    return [payload(i) for i in range(n)]


def pipeline_inputs(n: int) -> list[Any]:
    from gateway.outbound import DeliveryRequest

    return [DeliveryRequest("example", p["target"], p["text"]) for p in bare_inputs(n)]


async def bare_loop(url: str, n: int, in_flight: int) -> Rate:
    """The bare loop on its own (1 in flight; ``bench/outbound_cost.py`` also runs it with 32)."""
    bodies = bare_inputs(n)
    async with aiohttp.ClientSession() as session:
        await post_all(session, url, bodies[:200], 1)  # warm the connection pool
        started, cpu = time.perf_counter(), time.process_time()
        await post_all(session, url, bodies, in_flight)
        return Rate(n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6)


class Pipeline:
    """A running gateway with the outbox and the example provider sending to ``url`` (with
    no ``url`` the provider answers in memory)."""

    def __init__(self, url: str | None):
        from switchboard_example import plugin as example

        from gateway.app import Gateway
        from gateway.config import parse_config
        from gateway.outbound import Outbox
        from gateway.registry import Registry

        self.state = Path(tempfile.mkdtemp(prefix="sb-bench-outbound-"))
        registry = Registry([example])
        raw = {"gateway": {"state_dir": str(self.state)}, "handler": {"kind": "none"},
               "providers": {"example": {"url": url}}}
        self.gateway = Gateway(parse_config(raw, registry, env={}), registry, services=[Outbox])
        self.outbox: Outbox = self.gateway.service(Outbox)
        self._checkpointer = sqlite3.connect(str(self.gateway.db.path), isolation_level=None,
                                             check_same_thread=False)

    async def start(self, tg: TaskGroup) -> None:
        from gateway.plugin import AccountKey

        await tg.start(self.gateway.run)
        await self.gateway.supervisor.wait_running(AccountKey("example", "default"))

    async def send(self, requests: list[Any], producers: int) -> None:
        """``deliver()`` every request from ``producers`` tasks; return once all are delivered
        and the WAL is checkpointed."""
        async def produce(share: list[Any]) -> None:
            for request in share:
                await self.outbox.deliver(request)

        async with anyio.create_task_group() as tg:
            for p in range(producers):
                tg.start_soon(produce, requests[p::producers])
        await self.outbox.join()
        await anyio.to_thread.run_sync(self._checkpointer.execute, "PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._checkpointer.close()
        shutil.rmtree(self.state, ignore_errors=True)


async def paired(url: str, n: int, producers: int, blocks: int) -> tuple[Rate, Rate]:
    """(pipeline, bare 32 in flight): alternating blocks in one event loop."""
    from gateway.outbound import DeliveryRequest

    bodies = bare_inputs(n)
    requests = [DeliveryRequest("example", body["target"], body["text"]) for body in bodies]
    warm = [DeliveryRequest("example", body["target"], body["text"]) for body in bodies[:200]]
    size = -(-n // blocks)
    pipeline = Pipeline(url)
    spent = {"pipeline": [0.0, 0.0], "bare": [0.0, 0.0]}  # wall seconds, CPU seconds
    try:
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            await pipeline.start(tg)
            await pipeline.send(warm, producers)  # warm up both the same way
            await post_all(session, url, bodies[:200], 32)
            turns = ("pipeline", "bare", "bare", "pipeline")
            for block in range(2 * blocks):
                which = turns[block % 4]
                first = (block // 2) * size
                started, cpu = time.perf_counter(), time.process_time()
                if which == "pipeline":
                    await pipeline.send(requests[first:first + size], producers)
                else:
                    await post_all(session, url, bodies[first:first + size], 32)
                spent[which][0] += time.perf_counter() - started
                spent[which][1] += time.process_time() - cpu
            pipeline.gateway.request_stop()
    finally:
        pipeline.close()
    pipe, bare = spent["pipeline"], spent["bare"]
    return Rate(n / pipe[0], pipe[1] / n * 1e6), Rate(n / bare[0], bare[1] / n * 1e6)


async def pipeline_only(url: str | None, n: int, producers: int) -> Rate:
    """The pipeline alone (``--profile``, ``bench/outbound_cost.py``; no ``url``: the example
    provider answers in memory, which leaves the outbox's own cost)."""
    requests = pipeline_inputs(n)
    pipeline = Pipeline(url)
    try:
        async with anyio.create_task_group() as tg:
            await pipeline.start(tg)
            await pipeline.send(requests[:200], producers)
            started, cpu = time.perf_counter(), time.process_time()
            await pipeline.send(requests, producers)
            rate = Rate(n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6)
            pipeline.gateway.request_stop()
    finally:
        pipeline.close()
    return rate


def chunker_throughput(runs: int = 3) -> dict[str, float]:
    from gateway.outbound.chunking import chunk_markdown, chunk_plain, utf16_len

    text = mixed_markdown(10 * 1024 * 1024)
    size_mb = len(text.encode()) / 1e6
    out: dict[str, float] = {}
    for name, fn, measure in (("markdown", chunk_markdown, len), ("markdown_utf16", chunk_markdown, utf16_len),
                              ("plain", chunk_plain, len)):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            fn(text, 4000, measure=measure)
            times.append(time.perf_counter() - started)
        out[name] = size_mb / statistics.median(times)
    return out


def mixed_markdown(size: int) -> str:
    """bench/chunking.py's deterministic generator (prose, lists, fences, emoji, CJK)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from chunking import generate  # type: ignore[import-not-found]

    return generate(size)  # type: ignore[no-any-return]


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakes" / "http_sink.py")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "PORT":
        proc.kill()
        raise SystemExit("the fake provider did not start")
    return proc, f"http://127.0.0.1:{line[1]}/send"


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=10, help="blocks per contestant and run (ABBA order)")
    parser.add_argument("--producers", type=int, default=TARGETS)
    parser.add_argument("--profile", action="store_true", help="cProfile one pipeline run and print the top")
    parser.add_argument("--skip-chunker", action="store_true")
    args = parser.parse_args()

    from gateway.daemon import tune_gc

    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tune_gc()
    fake, url = start_fake()
    try:
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            rate = run(pipeline_only, url, args.messages, args.producers)
            profiler.disable()
            print(f"pipeline (profiled): {rate.per_s:,.0f} msgs/s")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        rows: list[tuple[Rate, Rate, Rate]] = []
        for n in range(args.runs):
            b1 = run(bare_loop, url, args.messages, 1)
            pipe, b32 = run(paired, url, args.messages, args.producers, args.blocks)
            rows.append((b1, b32, pipe))
            print(f"run {n + 1}: bare 1 in flight {b1.per_s:,.0f}/s; bare 32 in flight {b32.per_s:,.0f}/s "
                  f"({b32.cpu_us:.0f} us CPU/msg), pipeline {pipe.per_s:,.0f}/s ({pipe.cpu_us:.0f} us CPU/msg); "
                  f"ratio {pipe.per_s / b32.per_s:.2f}", flush=True)
    finally:
        fake.terminate()
        fake.wait(timeout=10)

    def median(index: int, field: str) -> float:
        return statistics.median(getattr(r[index], field) for r in rows)

    b1, b32, pipe = median(0, "per_s"), median(1, "per_s"), median(2, "per_s")
    cpu_b32, cpu_pipe = median(1, "cpu_us"), median(2, "cpu_us")
    ratios = sorted(r[2].per_s / r[1].per_s for r in rows)
    lines = [
        f"# bench/outbound.py -- {args.messages:,} messages per contestant, {args.blocks} alternating blocks each "
        f"(ABBA), medians of {args.runs} runs, uvloop, fake provider (aiohttp) in another process",
        f"bare aiohttp, 1 in flight:     {b1:>8,.0f} msgs/s",
        f"bare aiohttp, 32 in flight:    {b32:>8,.0f} msgs/s   {cpu_b32:>5.0f} us CPU per message (this process)",
        f"pipeline + durable outbox:     {pipe:>8,.0f} msgs/s   {cpu_pipe:>5.0f} us CPU per message "
        f"({TARGETS} targets, 1 account, {args.producers} producers, 32 lanes)",
        f"ratio pipeline / bare 32:      {statistics.median(ratios):>8.2f}   (median of the per-run ratios; "
        f"each run: {', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.70)",
        f"ratio pipeline / bare 1:       {pipe / b1:>8.2f}",
        f"CPU ratio bare 32 / pipeline:  {cpu_b32 / cpu_pipe:>8.2f}   (client CPU per message)",
    ]
    if not args.skip_chunker:
        chunk = chunker_throughput()
        lines.append("chunker, 10 MB mixed markdown, limit 4000: "
                     + ", ".join(f"{name} {mbs:,.1f} MB/s" for name, mbs in chunk.items()))
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / "outbound.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
