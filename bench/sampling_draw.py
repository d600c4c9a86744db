"""Microbenchmark of one sampling draw: softmax + torch.multinomial against training.generate.sample_next.

    python -m bench.sampling_draw          # 288 rows (32 prompts x 9) x 512 tokens, 1 thread, CPU

Prints milliseconds per draw (median of 5 repeats of 50 draws each) and the load average.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from training.generate import sample_next


def ms_per_call(fn: Callable[[], object], n: int = 50, repeats: int = 5) -> float:
    """Median over repeats of the mean milliseconds per call."""
    fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e3)
    return statistics.median(runs)


def main() -> None:
    """Time both draws on the same logits."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(288, 512)
    multinomial = ms_per_call(lambda: torch.multinomial(logits.softmax(-1), 1, generator=gen))
    ours = ms_per_call(lambda: sample_next(logits, 1.0, 1.0, gen))
    print(
        f"288 x 512 logits, 1 thread, load {os.getloadavg()[0]:.1f}: softmax + multinomial "
        f"{multinomial:.2f} ms, sample_next {ours:.2f} ms ({multinomial / ours:.1f}x)"
    )


if __name__ == "__main__":
    main()
