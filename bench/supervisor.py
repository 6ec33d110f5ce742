"""Supervisor benchmark: start N no-op accounts, measure time to running, memory, snapshot cost.

Each size runs in a fresh subprocess (clean RSS), 5 times; medians are printed and written to
bench/results/supervisor.txt. Goals (issue 2): 10,000 accounts all running in < 2 s,
< 10 KB resident per account, a full status snapshot in < 50 ms.

    .venv/bin/python bench/supervisor.py [--sizes 1000 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(n: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import anyio

    from gateway.app import Gateway
    from gateway.config import parse_config
    from gateway.daemon import tune_gc
    from gateway.plugin import AccountContext, PluginMeta, ProviderPlugin
    from gateway.registry import Registry

    class Noop:
        async def run_account(self, ctx: AccountContext) -> None:
            ctx.started()
            await anyio.sleep_forever()

    tune_gc()  # as the daemon does
    plugin = ProviderPlugin(id="noop", meta=PluginMeta(label="No-op"), gateway=Noop())
    registry = Registry([plugin])
    state = tempfile.mkdtemp(prefix="sb-bench-")
    t0 = time.perf_counter()
    config = parse_config({"gateway": {"state_dir": state},
                           "providers": {"noop": {"accounts": {f"acct-{i}": {} for i in range(n)}}}}, registry, env={})
    parse_s = time.perf_counter() - t0

    async def main() -> dict[str, float]:
        gateway = Gateway(config, registry, services=[])
        all_running = anyio.Event()
        counts = gateway.status.counts_by_state

        async def watch() -> None:
            with gateway.status.subscribe() as changes:
                async for _ in changes:
                    if counts()["running"] == n:
                        all_running.set()
                        return

        async with anyio.create_task_group() as tg:
            await tg.start(gateway.supervisor.run)
            tg.start_soon(watch)
            await anyio.sleep(0)
            base_rss = rss_kb()
            start = time.perf_counter()
            gateway.supervisor.start_many(config.accounts.values())
            await all_running.wait()
            start_s = time.perf_counter() - start
            per_account_kb = (rss_kb() - base_rss) / n
            snap_times = []
            for _ in range(5):
                t = time.perf_counter()
                snapshot = {"gateway": dict(gateway.status.gateway), "accounts": gateway.status.snapshot(),
                            "issues": [i.to_dict() for i in gateway.status.issues()]}
                snap_times.append(time.perf_counter() - t)
            assert len(snapshot["accounts"]) == n
            t = time.perf_counter()
            json.dumps(snapshot)
            json_s = time.perf_counter() - t
            t = time.perf_counter()
            stragglers = await gateway.supervisor.shutdown()
            stop_s = time.perf_counter() - t
            assert not stragglers
            tg.cancel_scope.cancel()
        base_start, base_stop = await bare_anyio(n)
        return {"parse_s": parse_s, "start_s": start_s, "kb_per_account": per_account_kb,
                "snapshot_ms": statistics.median(snap_times) * 1000, "json_ms": json_s * 1000, "stop_s": stop_s,
                "bare_start_s": base_start, "bare_stop_s": base_stop}

    async def bare_anyio(count: int) -> tuple[float, float]:
        """The floor in the same process: one anyio task per account, its own scope and events."""
        async def task(scope: anyio.CancelScope, done: anyio.Event, up: anyio.Event) -> None:
            try:
                with scope:
                    up.set()
                    await anyio.sleep_forever()
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            t = time.perf_counter()
            items = []
            for _ in range(count):
                item = (anyio.CancelScope(), anyio.Event(), anyio.Event())
                tg.start_soon(task, *item)
                items.append(item)
            for _, _, up in items:
                if not up.is_set():
                    await up.wait()
            started = time.perf_counter() - t
            t = time.perf_counter()
            for scope, _, _ in items:
                scope.cancel()
            for _, done, _ in items:
                if not done.is_set():
                    await done.wait()
            return started, time.perf_counter() - t

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child)))
        return
    rows = []
    for n in args.sizes:
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", str(n)], check=True,
                                          capture_output=True, text=True).stdout.strip().splitlines()[-1])
                for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append((n, med))
    lines = [f"Supervisor benchmark (no-op plugin, uvloop, median of {args.runs} runs, fresh process each)",
             f"{'accounts':>9} {'config parse':>13} {'start->all running':>19} {'bare anyio':>11} {'ratio':>6} "
             f"{'RSS/account':>12} {'snapshot':>9} {'snapshot JSON':>14} {'stop all':>9} {'bare stop':>10}"]
    for n, m in rows:
        lines.append(f"{n:>9,} {m['parse_s']:>12.3f}s {m['start_s']:>18.3f}s {m['bare_start_s']:>10.3f}s "
                     f"{m['start_s'] / m['bare_start_s']:>5.1f}x {m['kb_per_account']:>9.2f} KB "
                     f"{m['snapshot_ms']:>7.1f}ms {m['json_ms']:>12.1f}ms {m['stop_s']:>8.3f}s {m['bare_stop_s']:>9.3f}s")
    lines.append("goals at 10,000: start < 2 s, < 10 KB/account, snapshot < 50 ms")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "supervisor.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
