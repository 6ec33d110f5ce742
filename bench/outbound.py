"""Outbound benchmark: the whole pipeline with the durable outbox against a bare aiohttp loop.

A fake provider (``tests/fakes/http_sink.py``, aiohttp + uvloop) runs in another process.
Each run, in this order and on the same fake:

* bare loop, 1 in flight: ``ClientSession.post(json=...)`` + ``resp.json()``, one at a time;
* bare loop, 32 in flight: the same with 32 workers sharing one session, run just before
  and just after the pipeline (their mean is the reference: the shared machine drifts);
* pipeline: a real :class:`Gateway` with the :class:`Outbox` and the example provider
  (``url`` = the fake), 10,000 ``deliver()`` calls spread over 32 targets of one account
  (32 producers, one per target, like 32 concurrent API clients), timed from the first
  ``deliver()`` to the last message committed as delivered. Per-target FIFO leaves 32
  lanes in flight: the same concurrency as the 32-worker bare loop.

The JSON body is the example provider's (account, target, text, reply_to, delivery_id).
Everything runs on uvloop, as the daemon does. Medians of 5 runs; the chunker's throughput on
10 MB of mixed markdown is printed too. Results go to bench/results/outbound.txt.

    .venv/bin/python bench/outbound.py [--messages 10000] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
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

TARGETS = 32
TEXT = "Deploy finished: build {i} is live on production (3 services, 0 errors) - see the dashboard."


def payload(i: int) -> dict[str, Any]:
    return {"account": "default", "target": f"chat:{i % TARGETS}", "text": TEXT.format(i=i), "reply_to": None,
            "delivery_id": f"bench{i}:0"}


class Rate(NamedTuple):
    per_s: float  # messages per wall-clock second
    cpu_us: float  # CPU time of this process per message


async def bare_loop(url: str, n: int, in_flight: int) -> Rate:
    bodies = [payload(i) for i in range(n)]
    async with aiohttp.ClientSession() as session:
        async def post(body: dict[str, Any]) -> None:
            async with session.post(url, json=body) as resp:
                await resp.json(content_type=None)

        for body in bodies[:200]:  # warm the connection pool
            await post(body)
        it = iter(bodies)

        async def worker() -> None:
            for body in it:
                await post(body)

        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        return Rate(n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6)


async def pipeline(url: str, n: int, producers: int) -> Rate:
    from switchboard_example import plugin as example

    from gateway.app import Gateway
    from gateway.config import parse_config
    from gateway.outbound import DeliveryRequest, Outbox
    from gateway.plugin import AccountKey
    from gateway.registry import Registry

    state = tempfile.mkdtemp(prefix="sb-bench-outbound-")
    registry = Registry([example])
    raw = {"gateway": {"state_dir": state}, "handler": {"kind": "none"},
           "providers": {"example": {"url": url}}}
    gateway = Gateway(parse_config(raw, registry, env={}), registry, services=[Outbox])
    outbox: Outbox = gateway.service(Outbox)
    requests = [DeliveryRequest("example", p["target"], p["text"]) for p in (payload(i) for i in range(n))]
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        await gateway.supervisor.wait_running(AccountKey("example", "default"))
        for request in requests[:200]:  # warm up like the bare loop
            await outbox.deliver(request)
        await outbox.join()

        async def produce(share: list[DeliveryRequest]) -> None:
            for request in share:
                await outbox.deliver(request)

        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as producers_tg:
            for p in range(producers):
                producers_tg.start_soon(produce, requests[p::producers])
        await outbox.join()
        rate = Rate(n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6)
        gateway.request_stop()
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


def run(fn: Any, *args: Any) -> Rate:
    return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
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
            rate = run(pipeline, url, args.messages, args.producers)
            profiler.disable()
            print(f"pipeline (profiled): {rate.per_s:,.0f} msgs/s")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        rows: list[tuple[Rate, Rate, Rate]] = []
        for n in range(args.runs):
            b1 = run(bare_loop, url, args.messages, 1)
            before = run(bare_loop, url, args.messages, 32)
            pipe = run(pipeline, url, args.messages, args.producers)
            after = run(bare_loop, url, args.messages, 32)
            # The shared machine drifts: the pipeline is compared with the bare loop run just
            # before and just after it.
            b32 = Rate((before.per_s + after.per_s) / 2, (before.cpu_us + after.cpu_us) / 2)
            rows.append((b1, b32, pipe))
            print(f"run {n + 1}: bare 1 in flight {b1.per_s:,.0f}/s, bare 32 in flight {before.per_s:,.0f}/s and "
                  f"{after.per_s:,.0f}/s ({b32.cpu_us:.0f} us CPU/msg), pipeline {pipe.per_s:,.0f}/s "
                  f"({pipe.cpu_us:.0f} us CPU/msg); ratio {pipe.per_s / b32.per_s:.2f}", flush=True)
    finally:
        fake.terminate()
        fake.wait(timeout=10)

    def median(index: int, field: str) -> float:
        return statistics.median(getattr(r[index], field) for r in rows)

    b1, b32, pipe = median(0, "per_s"), median(1, "per_s"), median(2, "per_s")
    cpu_b32, cpu_pipe = median(1, "cpu_us"), median(2, "cpu_us")
    ratios = [r[2].per_s / r[1].per_s for r in rows]
    lines = [
        f"# bench/outbound.py -- {args.messages:,} messages, medians of {args.runs} runs, uvloop, "
        "fake provider (aiohttp) in another process",
        f"bare aiohttp, 1 in flight:     {b1:>8,.0f} msgs/s",
        f"bare aiohttp, 32 in flight:    {b32:>8,.0f} msgs/s   {cpu_b32:>5.0f} us CPU per message (this process)",
        f"pipeline + durable outbox:     {pipe:>8,.0f} msgs/s   {cpu_pipe:>5.0f} us CPU per message "
        f"({TARGETS} targets, 1 account, {args.producers} producers, 32 lanes)",
        f"ratio pipeline / bare 32:      {pipe / b32:>8.2f}   (median of the per-run ratios: "
        f"{statistics.median(ratios):.2f}; goal >= 0.70)",
        f"ratio pipeline / bare 1:       {pipe / b1:>8.2f}",
        f"CPU ratio bare 32 / pipeline:  {cpu_b32 / cpu_pipe:>8.2f}   (client CPU per message: steadier than "
        "wall-clock rates on a shared machine)",
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
