"""Throughput of the outbound chunkers on mixed markdown (0.1, 1 and 10 MB, limit 4000).

Run: .venv/bin/python bench/chunking.py   (writes bench/results/chunking.txt)

The input is generated deterministically: paragraphs, lists, fenced code blocks with ```,
~~~, ```` and indented markers, emoji (ZWJ sequences, flags, skin tones) and CJK text.
Sizes and MB/s are in UTF-8 megabytes (10^6 bytes). Compare against BASELINES.md: the
original markdown chunker ran at 0.28 MB/s on 10 MB because it was quadratic.
"""

from __future__ import annotations

import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.outbound.chunking import chunk_markdown, chunk_plain, utf16_len  # noqa: E402

LIMIT = 4000
SIZES_MB = (0.1, 1.0, 10.0)
RESULTS = Path(__file__).resolve().parent / "results" / "chunking.txt"

WORDS = ("the gateway sends every message through the outbox and retries transient errors "
         "with backoff while permanent ones go to dead letters").split()
WORDS += ["(as documented)", "(see below)", ":(", "1)", "f(x)"]
EMOJI = ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F1E9\U0001F1EA", "\u2764\ufe0f",
         "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F680"]
CJK = ["\u4e2d\u6587", "\u6d88\u606f", "\u7f51\u5173", "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4"]
FENCES = [("```", "python"), ("~~~", ""), ("````", "md"), ("  ```", "js"), ("~~~~", "sh")]


def _sentence(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(6, 18)):
        roll = rng.random()
        words.append(rng.choice(EMOJI) if roll < 0.06 else rng.choice(CJK) if roll < 0.12
                     else rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


def _block(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return " ".join(_sentence(rng) for _ in range(rng.randint(1, 6)))
    if kind < 0.65:
        return "\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(2, 8)))
    marker, info = rng.choice(FENCES)
    indent = marker[: len(marker) - len(marker.lstrip())]
    lines = []
    for i in range(rng.randint(3, 120 if rng.random() < 0.9 else 600)):
        lines.append(f"{indent}    result_{i} = compute({i}, name='{rng.choice(WORDS)}')  # "
                     + rng.choice(EMOJI + CJK + WORDS))
    return f"{marker}{info}\n" + "\n".join(lines) + f"\n{marker}"


def generate(size_bytes: int, seed: int = 661) -> str:
    """Deterministic mixed markdown of at least size_bytes UTF-8 bytes."""
    rng = random.Random(seed)
    blocks: list[str] = []
    total = 0
    while total < size_bytes:
        block = _block(rng)
        blocks.append(block)
        total += len(block.encode()) + 2
    return "\n\n".join(blocks)


def _prefix(text: str, size_bytes: int) -> str:
    """The first size_bytes UTF-8 bytes of text, cut at a character boundary."""
    return text.encode()[:size_bytes].decode(errors="ignore")


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    full = generate(int(SIZES_MB[-1] * 1_000_000))
    inputs = {mb: _prefix(full, int(mb * 1_000_000)) for mb in SIZES_MB}
    rss_inputs_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cases: list[tuple[str, Callable[[str], list[str]]]] = [
        ("chunk_plain, len", lambda t: chunk_plain(t, LIMIT)),
        ("chunk_markdown, len", lambda t: chunk_markdown(t, LIMIT)),
        ("chunk_markdown, utf16_len", lambda t: chunk_markdown(t, LIMIT, measure=utf16_len)),
    ]
    header = f"{'function (limit 4000)':<28}" + "".join(f"{f'{mb:g} MB':>12}" for mb in SIZES_MB)
    header += f"{'alloc peak, 10 MB':>20}"
    lines = [header, "-" * len(header)]
    print("\n".join(lines), flush=True)
    for name, fn in cases:
        row = f"{name:<28}"
        for mb, text in inputs.items():
            runs = 3 if mb >= 10 else 5
            seconds = _median_seconds(lambda text=text: fn(text), runs)
            row += f"{len(text.encode()) / 1e6 / seconds:>7.1f} MB/s"
        tracemalloc.start()  # one more, untimed run: memory the call itself allocates
        fn(inputs[SIZES_MB[-1]])
        row += f"{tracemalloc.get_traced_memory()[1] / 1e6:>17.0f} MB"
        tracemalloc.stop()
        lines.append(row)
        print(row, flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    chunks = chunk_markdown(inputs[SIZES_MB[-1]], LIMIT)
    lines += [
        "",
        f"peak RSS of the process: {peak_mb:.0f} MB ({rss_inputs_mb:.0f} MB once the inputs were"
        " generated); alloc peak = tracemalloc peak of one call, output chunks included",
        f"10 MB input: {len(full):,} characters, {len(chunks):,} markdown chunks, "
        f"{full.count(chr(10) + '```') + full.count(chr(10) + '~~~'):,} fence lines",
        f"python {sys.version.split()[0]}; MB/s = UTF-8 MB of input per second, median of "
        "5 runs (3 at 10 MB)",
    ]
    report = "\n".join(lines) + "\n"
    print("\n".join(lines[len(cases) + 2:]))
    print(f"written to {RESULTS}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
