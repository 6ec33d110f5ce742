"""Reload benchmark: 1,000 running accounts, change one in the file, time until it runs again.

The file watcher, the debounce, validation of all 1,000 accounts, the plan and the restart
are all in the measured path (file write -> the changed account `running` again). Also
counts how many accounts were restarted (must be exactly one per change). Results go to
bench/results/reload.txt. Goal (issue 3): median under debounce + 50 ms.

    .venv/bin/python bench/reload.py [--accounts 1000] [--changes 9] [--debounce-ms 300 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import Gateway  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.daemon import tune_gc  # noqa: E402
from gateway.plugin import AccountConfig, AccountContext, AccountKey, ConfigSpec, PluginMeta, ProviderPlugin  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.reload import Reloader  # noqa: E402


class BenchAccount(AccountConfig):
    version: int = 0


class Connect:
    async def run_account(self, ctx: AccountContext) -> None:
        ctx.started()
        await anyio.sleep_forever()


def render(state_dir: str, accounts: int, debounce_ms: int, versions: dict[int, int]) -> str:
    lines = [f'[gateway]\nstate_dir = "{state_dir}"\n[gateway.reload]\ndebounce_ms = {debounce_ms}\n'
             '[handler]\nkind = "none"\n']
    for i in range(accounts):
        lines.append(f"[providers.bench.accounts.acct-{i}]\nversion = {versions.get(i, 0)}\n")
    return "".join(lines)


async def run(accounts: int, changes: int, debounce_ms: int) -> tuple[list[float], list[int]]:
    tune_gc()
    plugin = ProviderPlugin(id="bench", meta=PluginMeta(label="Bench"), gateway=Connect(),
                            config=ConfigSpec(model=BenchAccount))
    registry = Registry([plugin])
    workdir = Path(tempfile.mkdtemp(prefix="sb-reload-"))
    path = workdir / "switchboard.toml"
    versions: dict[int, int] = {}
    path.write_text(render(str(workdir / "state"), accounts, debounce_ms, versions))
    gateway = Gateway(load_config(path, registry), registry, services=[Reloader])
    latencies: list[float] = []
    restarted: list[int] = []
    status = gateway.status
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        with status.subscribe() as changes_feed:
            while status.counts_by_state()["running"] < accounts:
                await changes_feed.receive()
        reloader = gateway.service(Reloader)
        for n in range(changes):
            target = (n * 97) % accounts
            key = AccountKey("bench", f"acct-{target}")
            before = {k: status.get_field(k, "starts") for k in status.keys()}
            versions[target] = versions.get(target, 0) + 1
            text = render(str(workdir / "state"), accounts, debounce_ms, versions)
            with status.subscribe() as feed:
                t0 = time.perf_counter()
                path.write_text(text)
                while not (status.get_field(key, "starts") == before[key] + 1
                           and status.get_field(key, "state") == "running"):
                    await feed.receive()
                latencies.append((time.perf_counter() - t0) * 1000)
            with anyio.fail_after(10):
                while reloader.pending:
                    await anyio.sleep(0.01)
            restarted.append(sum(1 for k in status.keys() if status.get_field(k, "starts") != before[k]))
        gateway.request_stop()
    return latencies, restarted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=9)
    parser.add_argument("--debounce-ms", type=int, nargs="+", default=[300, 50])
    args = parser.parse_args()
    lines = [f"Reload benchmark: {args.accounts:,} running accounts, one account changed per write, "
             f"{args.changes} writes per row (file write -> account running again)",
             f"{'debounce':>9} {'median':>9} {'min':>8} {'max':>8} {'median - debounce':>18} {'restarted per change':>21}"]
    for debounce in args.debounce_ms:
        latencies, restarted = anyio.run(run, args.accounts, args.changes, debounce, backend="asyncio",
                                         backend_options={"use_uvloop": True})
        med = statistics.median(latencies)
        lines.append(f"{debounce:>7}ms {med:>7.1f}ms {min(latencies):>6.1f}ms {max(latencies):>6.1f}ms "
                     f"{med - debounce:>16.1f}ms {str(sorted(set(restarted))):>21}")
    lines.append("goal: median under debounce + 50 ms; exactly 1 account restarted per change")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reload.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
