"""Where the stochastic codecs' uniforms come from, side by side in one process, against the 2NN round.

For QSGD, uniform and TernGrad (their default keys, as in bench_codecs.py), at n=10, d=199,210
(the 2NN of McMahan et al. 2017; bench_codecs.py's share column), this times the round's uplink stage with its uniforms

- ``pcg64``: materialised from numpy's PCG64, row ``i`` from ``SeedSequence(seed).spawn(n)[i]``,
  rows filled by the pool threads (fedbench's draws before ``fedbench/compress/draws.py``);
- ``splitmix``: SplitMix64 (``fedbench.compress.draws``), materialised as an ``(n, d)`` array;
- ``in-loop``: SplitMix64 computed inside the codec's kernel (what the stage does; TernGrad, which
  has no kernel, materialises it, so its ``splitmix`` and ``in-loop`` are one path);

interleaved with the 2NN round of ``bench_round.py``, and reports each as milliseconds and as a
share of the round's median.

    python experiments/perf/bench_draws.py [--threads 2] [--repeats 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codecs import stage_for, time_stage  # noqa: E402
from bench_round import compose_run  # noqa: E402

from fedbench.compress.draws import draw_uniforms  # noqa: E402
from fedbench.compress.quantize import rows_in_parallel  # noqa: E402
from fedbench.simulation import Simulation  # noqa: E402

CODECS = ("qsgd", "uniform", "terngrad")
N, D = 10, 199_210


def pcg64_uniforms(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    seeds = np.random.SeedSequence(generator.initial_seed()).spawn(n)
    out = np.empty((n, d), np.float32)

    def fill(i: int) -> None:
        np.random.Generator(np.random.PCG64(seeds[i])).random(out=out[i], dtype=np.float32)

    rows_in_parallel(fill, n)
    return torch.from_numpy(out)


SOURCES = {
    "pcg64": pcg64_uniforms,
    "splitmix": lambda n, d, g: draw_uniforms(n, d, g).tensor(),
    "in-loop": None,  # the codec's own draw()
}


def stage(codec: str, source: str):
    st = stage_for(codec, N, D)
    if source == "pcg64" or codec == "terngrad" and source == "splitmix":
        st.codec.draw = SOURCES[source]
    return st


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sim = Simulation(compose_run("vmap", total_rounds=10 * args.repeats * len(CODECS) * len(SOURCES)))
    for _ in range(3):
        sim.step()
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(0)) * 0.01
    rounds, table = [], {}
    for _ in range(args.repeats):
        for codec in CODECS:
            for source in SOURCES:
                if codec == "terngrad" and source == "in-loop":
                    continue
                t0 = time.perf_counter()
                sim.step()
                rounds.append(time.perf_counter() - t0)
                table.setdefault((codec, source), []).append(time_stage(stage(codec, source), x, 6))
    r = statistics.median(rounds)
    print(f"2NN round: median {r * 1e3:.1f} ms over {len(rounds)} rounds; {args.threads} threads")
    print("| codec | uniforms | stage (median of runs) | share of the round | runs (ms) |\n|---|---|---:|---:|---|")
    for (codec, source), v in table.items():
        m = statistics.median(v)
        runs = ", ".join(f"{t * 1e3:.1f}" for t in v)
        print(f"| {codec} | {source} | {m * 1e3:.2f} ms | {m / r:.1%} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
