"""Seconds per round of each fedbench engine, for a model and several clients-per-round values.

Where ``bench_round.py`` measures the issue's fixed 2NN workload against plain PyTorch loops, this
script shows how the engines scale with the number of clients trained per round, on any built-in
model and on CPU or GPU. Every round is ``Simulation.step()`` without evaluation; engines are
interleaved round by round after two warm-up rounds (in which vmap traces and compile compiles).

Usage::

    python experiments/perf/bench_engines.py --model cnn_mnist --clients 10,50 --device cuda
    python experiments/perf/bench_engines.py --model mlp --engines sequential,vmap+eager,vmap --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from fedbench.config import compose, validate
from fedbench.simulation import Simulation


def build(engine: str, args, clients: int) -> Simulation:
    name, _, flag = engine.partition("+")
    overrides = [
        "dataset=synthetic",
        "dataset.input_shape=[1,28,28]",
        f"dataset.num_train={args.num_clients * args.samples}",
        f"model={args.model}",
        "partition=iid",
        "algorithm.local_epochs=1",
        f"algorithm.batch_size={args.batch}",
        "algorithm.lr=0.05",
        f"engine={name}",
        f"engine.compile={str(flag == 'compile').lower()}",
        f"engine.trace={str(flag != 'eager').lower()}",
        f"num_clients={args.num_clients}",
        f"clients_per_round={clients}",
        f"rounds={args.rounds + 1000}",  # never the last round, so never evaluated
        "eval_every=1000000000",
        "client_metrics=false",
        f"device={args.device}",
        "threads=0",
        "progress=false",
        "logger=none",
    ]
    return Simulation(validate(compose(*overrides)))


def timed_round(sim: Simulation) -> float:
    t0 = time.perf_counter()
    sim.step()
    if sim.params.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="cnn_mnist", help="a built-in model (default cnn_mnist)")
    ap.add_argument("--clients", default="10,50", help="clients per round, comma-separated (default 10,50)")
    ap.add_argument(
        "--engines",
        default="sequential,vmap",
        help="comma-separated; 'vmap+compile': compiled step, 'vmap+eager': untraced step (default sequential,vmap)",
    )
    ap.add_argument("--num-clients", type=int, default=100)
    ap.add_argument("--samples", type=int, default=600, help="samples per client (default 600, as MNIST/100)")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per engine (default 3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    engines = args.engines.split(",")
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} CPU threads"
    print(
        f"{args.model}, {args.num_clients} clients x {args.samples} samples, E=1, B={args.batch}, "
        f"torch {torch.__version__}, {where}"
    )
    print(f"{'clients/round':>14}" + "".join(f"{e:>16}" for e in engines) + "   (s/round; x = vs sequential)")
    rows = []
    for clients in map(int, args.clients.split(",")):
        sims = {e: build(e, args, clients) for e in engines}
        for sim in sims.values():
            for _ in range(2):
                timed_round(sim)
        times: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(args.rounds):
            for e, sim in sims.items():
                times[e].append(timed_round(sim))
        med = {e: statistics.median(ts) for e, ts in times.items()}
        base = med.get("sequential")
        cells = "".join(f"{med[e]:>9.3f}" + (f" {base / med[e]:>5.1f}x" if base else "      ") for e in engines)
        print(f"{clients:>14}{cells}")
        rows.append({"clients_per_round": clients, "s_per_round": med})
        del sims
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "device": where, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
