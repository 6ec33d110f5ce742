"""Outbound cost in CPU instructions per message: a figure the machine's noise cannot move.

``bench/outbound.py`` measures messages per second, which on a shared VM drifts by tens of
percent within seconds. This counts the instructions the client process executes per
message under valgrind's callgrind, for the same three contestants:

* ``bare``: the bare aiohttp loop, 32 in flight, to the fake provider;
* ``pipeline``: ``deliver()`` through the durable outbox and the example provider to the
  same fake (32 producers, 32 lanes);
* ``outbox``: the same pipeline with the example provider answering in memory (no HTTP):
  the outbox's own cost.

Each contestant runs twice, with 2,000 and 6,000 messages, and the per-message figure is
the difference over 4,000, less the same difference for building its inputs, so start-up
and set-up cancel out. Instructions are not time (cache misses and system calls are left
out; SQLite's writes are system calls), but they rank changes to the hot path reliably: two
runs of the same code agree within about 1 %.

    .venv/bin/python bench/outbound_cost.py [--only bare,pipeline,outbox]

Needs valgrind (Debian: ``apt-get install valgrind``); takes about seven minutes on 2 cores.
A full run writes bench/results/outbound_cost.txt.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 2_000, 6_000

#: Run in the child under callgrind: ``<mode> <n> <url> [inputs]``.
CHILD = """
import logging, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import structlog
import outbound
from gateway.daemon import tune_gc
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
tune_gc()
mode, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4:  # only build the inputs: subtracted from the run
    (outbound.bare_inputs if mode == "bare" else outbound.pipeline_inputs)(n)
elif mode == "bare":
    outbound.run(outbound.bare_loop, url, n, 32)
else:
    outbound.run(outbound.pipeline_only, url if mode == "pipeline" else None, n, outbound.TARGETS)
"""


def instructions(mode: str, n: int, url: str, inputs_only: bool) -> int:
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"))
    args = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code,
            mode, str(n), url] + (["inputs"] if inputs_only else [])
    out = subprocess.run(args, capture_output=True, text=True, cwd=tempfile.gettempdir())
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{mode} with {n} messages failed under valgrind:\n{out.stderr[-3000:]}")
    return int(found.group(1))


def per_message(mode: str, url: str, pool: ThreadPoolExecutor) -> float:
    runs = {(n, inputs): pool.submit(instructions, mode, n, url, inputs)
            for n in (SMALL, LARGE) for inputs in (False, True)}
    total = runs[LARGE, False].result() - runs[SMALL, False].result()
    inputs = runs[LARGE, True].result() - runs[SMALL, True].result()
    return (total - inputs) / (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="bare,pipeline,outbox")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(ROOT / "bench"))
    from outbound import start_fake  # type: ignore[import-not-found]

    fake, url = start_fake()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            cost = {mode: per_message(mode, url, pool) for mode in args.only.split(",")}
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    names = {"bare": "bare aiohttp, 32 in flight", "pipeline": "pipeline + durable outbox",
             "outbox": "outbox alone (no HTTP)"}
    lines = [f"# bench/outbound_cost.py -- client instructions per message under callgrind "
             f"(({LARGE:,} - {SMALL:,} messages) / {LARGE - SMALL:,}, less building the inputs)"]
    lines += [f"{names[mode] + ':':30s} {value:>10,.0f}" for mode, value in cost.items()]
    if "bare" in cost and "pipeline" in cost:
        lines.append(f"{'ratio bare / pipeline:':30s} {cost['bare'] / cost['pipeline']:>10.3f}   "
                     f"(what the msgs/s ratio would be if time followed instructions)")
    if {"bare", "pipeline", "outbox"} <= cost.keys():
        lines.append(f"{'pipeline - bare - outbox:':30s} {cost['pipeline'] - cost['bare'] - cost['outbox']:>10,.0f}   "
                     f"(the provider's code around the HTTP call, and the two interleaved)")
    text = "\n".join(lines) + "\n"
    print(text)
    if set(args.only.split(",")) == set(names):
        out = ROOT / "bench" / "results" / "outbound_cost.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


if __name__ == "__main__":
    main()
