"""Time every aggregation rule and pre-aggregation of ``fedbench.aggregator`` on CPU.

For n in {10, 50, 100} clients and d in {100,000, 1,600,000} parameters: a float32 stack of
``n - f`` honest N(0, 1) rows and ``f = n // 10`` rows scaled by 100 (so distance rules have
something to reject), with f lowered to the largest the rule allows if needed. Each cell is the
median of ``--repeat`` calls after one untimed warm-up call. MDA is skipped where ``C(n, f)`` is
above its cap. Prints a markdown table and writes it to ``--out``.

    python experiments/perf/bench_aggregators.py                # 2 threads, a few minutes
    python experiments/perf/bench_aggregators.py --repeat 5 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

import fedbench.aggregator as agg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_round import cpu_model  # noqa: E402

SIZES = [(10, 100_000), (10, 1_600_000), (50, 100_000), (50, 1_600_000), (100, 100_000), (100, 1_600_000)]

# rule -> (largest f it allows for n, call)
Rule = tuple[Callable[[int], int], Callable[[torch.Tensor, int], object]]
RULES: dict[str, Rule] = {
    "mean": (lambda n: n, lambda u, f: agg.mean(u)),
    "median": (lambda n: n, lambda u, f: agg.median(u)),
    "trimmed_mean": (lambda n: (n - 1) // 2, lambda u, f: agg.trimmed_mean(u, f=f)),
    "meamed": (lambda n: (n - 1) // 2, lambda u, f: agg.meamed(u, f=f)),
    "pairwise_sq_distances": (lambda n: n, lambda u, f: agg.pairwise_sq_distances(u)),
    "krum": (lambda n: (n - 3) // 2, lambda u, f: agg.krum(u, f=f)),
    "multikrum": (lambda n: (n - 3) // 2, lambda u, f: agg.multikrum(u, f=f)),
    "bulyan": (lambda n: (n - 3) // 4, lambda u, f: agg.bulyan(u, f=f)),
    "mda": (lambda n: n - 1, lambda u, f: agg.mda(u, f=f)),
    "geomed": (lambda n: n, lambda u, f: agg.geomed(u)),
    "cclip (1 iteration)": (lambda n: n, lambda u, f: agg.cclip(u, tau=1.0)),
    "cclip (3 iterations)": (lambda n: n, lambda u, f: agg.cclip(u, tau=1.0, iterations=3)),
    "norm_bound": (lambda n: n, lambda u, f: agg.norm_bound(u, tau=1.0)),
    "fltrust": (lambda n: n, lambda u, f: agg.fltrust(u, root=u[0])),
    "dnc (1 iteration)": (lambda n: n - 1, lambda u, f: agg.dnc(u, f=f, generator=torch.Generator().manual_seed(0))),
    "pre: bucketing (s=2)": (lambda n: n, lambda u, f: agg.bucketing(u, s=2, generator=torch.Generator())),
    "pre: nnm": (lambda n: n - 1, lambda u, f: agg.nnm(u, f=f)),
    "pre: clip": (lambda n: n, lambda u, f: agg.clip(u, tau=1.0)),
    "pre: arc": (lambda n: n - 1, lambda u, f: agg.arc(u, f=f)),
}


def stack(n: int, d: int, f: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n * 7 + d)
    u = torch.randn(n, d, generator=g)
    u[:f] *= 100.0
    return u


def seconds(call: Callable[[], object], repeat: int) -> float:
    call()  # warm-up: allocator, thread pool
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("aggregators.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cells: dict[str, list[str]] = {name: [] for name in RULES}
    notes = []
    for n, d in SIZES:
        u = stack(n, d, n // 10)
        for name, (largest_f, call) in RULES.items():
            f = min(n // 10, largest_f(n))
            if name == "mda" and math.comb(n, f) > agg.MDA_MAX_SUBSETS:
                cells[name].append(f"skipped: C({n},{f}) = {math.comb(n, f):.1e}")
                continue
            cell = fmt(seconds(lambda call=call, f=f, u=u: call(u, f), args.repeat))
            cells[name].append(cell + ("" if f == n // 10 or name in ("mean", "median") else f" (f={f})"))
            print(f"n={n:>3} d={d:>9,} {name:<24} {cell}", flush=True)
        res = agg.geomed_solve(u)
        notes.append(f"geomed at n={n}, d={d:,}: {res.iterations} Weiszfeld iterations (converged: {res.converged})")
        del u

    header = "| rule | " + " | ".join(f"n={n}, d={d:,}" for n, d in SIZES) + " |"
    lines = [header, "|" + "---|" * (len(SIZES) + 1)]
    lines += [f"| {name} | " + " | ".join(row) + " |" for name, row in cells.items()]
    table = "\n".join(lines)
    meta = (
        f"{date.today()}, torch {torch.__version__}, {args.threads} threads, {cpu_model()}; median of {args.repeat} "
        "after a warm-up; float32; f = n // 10 (the largest the rule allows if smaller, shown in brackets)."
    )
    text = f"# Aggregator timings (`bench_aggregators.py`)\n\n{meta}\n\n{table}\n\n"
    text += "\n".join(f"- {x}" for x in notes)
    print("\n" + table)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
