"""Seconds per federated round on the McMahan et al. 2017 "2NN" workload, side by side.

Contenders, all timed in ONE process, interleaved round by round (see README.md):

1. ``vmap``        fedbench, engine=vmap        (``Simulation.step()``, evaluation never runs;
                   the step is traced in the warm-up rounds, engine.trace=true)
1a. ``vmap_eager`` the same with engine.trace=false (``torch.func`` dispatch every step)
1b. ``vmap_compiled`` the same with engine.compile=true (compilation happens in the warm-up rounds)
2. ``sequential``  fedbench, engine=sequential  (same)
3. ``plain``       a plain PyTorch loop: one ``nn.Sequential``, ``torch.optim.SGD``, clients one
                   after another, reset from the global weights per client, batch 10
4. ``floor``       the same 6000 samples per round at batch 100 on one model (60 steps/round):
                   the arithmetic floor, with no per-client models at all

The fedbench contenders run ``algorithm=fedavg`` unless ``--algorithm`` names another (fedprox,
scaffold, feddyn, fednova, with that option's default keys): the local rule then gains the
algorithm's terms (FedProx's and FedDyn's linear term, SCAFFOLD's and FedDyn's per-client
constants) and the round its server-side work, while ``plain`` and ``floor`` stay plain SGD, so
the ratios show what the algorithm costs on top of FedAvg's plain loop.

Usage::

    python experiments/perf/bench_round.py [--rounds 20] [--threads 2] [--repeats 1] \
        [--algorithm fedavg] [--out results/perf/round.json] [--profile]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---- the workload (McMahan et al. 2017, MNIST 2NN, IID, C=0.1, E=1, B=10) --------------------------
NUM_TRAIN = 60000
INPUT_SHAPE = (1, 28, 28)
HIDDEN = (200, 200)
NUM_CLASSES = 10
NUM_CLIENTS = 100
CLIENTS_PER_ROUND = 10
LOCAL_EPOCHS = 1
BATCH = 10
FLOOR_BATCH = 100
LR = 0.05
SEED = 0
WARMUP_ROUNDS = 2

TARGETS = [  # (name, numerator, denominator, max ratio)
    ("vmap/plain", "vmap", "plain", 0.5),
    ("vmap/floor", "vmap", "floor", 1.5),
    ("sequential/plain", "sequential", "plain", 1.1),
    ("vmap_compiled/plain", "vmap_compiled", "plain", 0.5),
    ("vmap_compiled/floor", "vmap_compiled", "floor", 1.5),
    ("vmap_eager/floor", "vmap_eager", "floor", None),  # no target: shows what tracing buys
]
CONTENDERS = ("vmap", "vmap_eager", "vmap_compiled", "sequential", "plain", "floor")


# ---- fedbench contenders -------------------------------------------------------------------------
def algorithms() -> list[str]:
    """The ``algorithm`` config group's options (fedavg, fedprox, scaffold, ...)."""
    from fedbench.config import CONF_DIR

    return sorted(p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml"))


def compose_run(
    engine: str,
    total_rounds: int,
    compile: bool = False,
    device: str = "cpu",
    trace: bool = True,
    algorithm: str = "fedavg",
):
    """The validated fedbench RunConfig for the workload, composed with Hydra like the CLI does."""
    from fedbench.config import compose, validate

    overrides = [
        "dataset=synthetic",
        f"dataset.input_shape=[{','.join(map(str, INPUT_SHAPE))}]",
        f"dataset.num_train={NUM_TRAIN}",
        f"dataset.num_classes={NUM_CLASSES}",
        "model=mlp",
        f"model.hidden=[{','.join(map(str, HIDDEN))}]",
        "partition=iid",
        f"algorithm={algorithm}",
        f"algorithm.local_epochs={LOCAL_EPOCHS}",
        f"algorithm.batch_size={BATCH}",
        f"algorithm.lr={LR}",
        "algorithm.momentum=0.0",
        f"engine={engine}",
        f"engine.compile={str(compile).lower()}",
        f"engine.trace={str(trace).lower()}",
        f"num_clients={NUM_CLIENTS}",
        f"clients_per_round={CLIENTS_PER_ROUND}",
        # Evaluation is excluded: it would run when round % eval_every == 0 or on the last round;
        # eval_every and rounds are both larger than any round we run (checked in FedbenchRound).
        f"rounds={total_rounds + 1000}",
        "eval_every=1000000000",
        "client_metrics=false",
        f"seed={SEED}",
        f"device={device}",
        "threads=0",  # torch.set_num_threads is called once, by this script
        "progress=false",
        "logger=none",
    ]
    return validate(compose(*overrides))


class FedbenchRound:
    """One fedbench Simulation; ``round()`` runs ``sim.step()`` and returns its work counts."""

    def __init__(
        self,
        engine: str,
        total_rounds: int,
        compile: bool = False,
        device: str = "cpu",
        trace: bool = True,
        algorithm: str = "fedavg",
    ):
        from fedbench.engine import group_by_steps
        from fedbench.simulation import Simulation

        self.name = engine + ("_compiled" if compile else "" if trace else "_eager")
        self.sim = Simulation(compose_run(engine, total_rounds, compile, device, trace, algorithm))
        assert self.sim.engine.name == engine, (self.sim.engine.name, engine)
        self.last: dict[str, int] = {}
        train = self.sim.engine.train
        run = self.sim.run

        def counted(global_params, schedules, const=None):  # records the work actually handed to the engine
            steps = [s.steps for s in schedules]
            self.last = {
                "clients": len(schedules),
                "sgd_steps": int(sum(steps)),
                "samples": int(sum(int(s.lengths.sum()) for s in schedules)),
                "max_batch": int(max(int(s.lengths.max()) for s in schedules if s.steps)),
            }
            if engine == "vmap":
                groups = group_by_steps(steps, run.engine.max_pad_fraction, run.engine.max_group_size)
                self.last["vmap_groups"] = len(groups)
                self.last["vmap_batched_steps"] = int(sum(max(steps[i] for i in g) for g in groups))
            return train(global_params, schedules, const)

        self.sim.engine.train = counted  # instance attribute: fedbench's code is untouched

    def round(self) -> tuple[float, dict[str, int]]:
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = self.sim.step()
        sync(self.sim.params.device)
        dt_, cpu = time.perf_counter() - t0, time.process_time() - c0
        if "test_acc" in metrics or "eval_time_s" in metrics:
            raise AssertionError(f"{self.name}: round {metrics['round']} ran evaluation; it must not be timed")
        return dt_, cpu, {**self.last, "train_time_s": metrics["train_time_s"]}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a round's wall time includes all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- plain PyTorch contenders --------------------------------------------------------------------
def make_mlp() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(INPUT_SHAPE)
    for h in HIDDEN:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def sgd_pass(model, opt, x, y, perm: torch.Tensor, batch: int) -> tuple[int, int, int]:
    """Plain ``torch.optim.SGD`` over ``perm`` in minibatches; returns (steps, samples, largest batch)."""
    steps = samples = largest = 0
    for s in range(0, len(perm), batch):
        idx = perm[s : s + batch]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        steps, samples, largest = steps + 1, samples + len(idx), max(largest, len(idx))
    return steps, samples, largest


class OneModelRound:
    """Shared set-up of the plain PyTorch contenders: one MLP from the fedbench initial weights,
    ``torch.optim.SGD``, client shards as index tensors, and their own seeded generators."""

    def __init__(self, x, y, parts, init_state, seed: int):
        self.x, self.y = x, y
        self.parts = [torch.as_tensor(p, device=x.device) for p in parts]
        self.model = make_mlp().to(x.device)
        self.model.load_state_dict(init_state)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.SGD(self.params, lr=LR)
        self.gen = torch.Generator().manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)


class PlainRound(OneModelRound):
    """What a naive simulator does: per selected client, reset one model to the global weights,
    run a plain ``torch.optim.SGD`` loop over the client's shuffled samples in batches of 10 (index
    gathers ``x[idx]`` from the in-memory training tensor, no DataLoader), then average the
    clients' weights (weighted by client size, as FedAvg)."""

    name = "plain"

    def __init__(self, x, y, parts, init_state, seed: int):
        super().__init__(x, y, parts, init_state, seed)
        self.global_w = [p.detach().clone() for p in self.params]

    def round(self) -> tuple[float, dict[str, int]]:
        t0, c0 = time.perf_counter(), time.process_time()
        selected = self.np_rng.choice(len(self.parts), CLIENTS_PER_ROUND, replace=False)
        acc = [torch.zeros_like(w) for w in self.global_w]
        steps = samples = total = max_batch = 0
        for c in selected:
            idx_c = self.parts[c]
            n = len(idx_c)
            with torch.no_grad():  # reset the model to the global weights
                for p, w in zip(self.params, self.global_w):
                    p.copy_(w)
            for _ in range(LOCAL_EPOCHS):
                perm = idx_c[torch.randperm(n, generator=self.gen).to(idx_c.device)]
                k, m, b = sgd_pass(self.model, self.opt, self.x, self.y, perm, BATCH)
                steps, samples, max_batch = steps + k, samples + m, max(max_batch, b)
            with torch.no_grad():
                for a, p in zip(acc, self.params):
                    a.add_(p, alpha=n)
            total += n
        with torch.no_grad():
            self.global_w = [a / total for a in acc]
        sync(self.x.device)
        dt_, cpu = time.perf_counter() - t0, time.process_time() - c0
        return dt_, cpu, {"clients": len(selected), "sgd_steps": steps, "samples": samples, "max_batch": max_batch}


class FloorRound(OneModelRound):
    """The arithmetic floor: the same number of samples (10 clients x 600) per round, in batches of
    100 on one model that is never reset or copied (60 SGD steps per round)."""

    name = "floor"

    def round(self) -> tuple[float, dict[str, int]]:
        t0, c0 = time.perf_counter(), time.process_time()
        selected = self.np_rng.choice(len(self.parts), CLIENTS_PER_ROUND, replace=False)
        steps = samples = max_batch = 0
        for _ in range(LOCAL_EPOCHS):
            pool = torch.cat([self.parts[c] for c in selected])
            perm = pool[torch.randperm(len(pool), generator=self.gen).to(pool.device)]
            k, m, b = sgd_pass(self.model, self.opt, self.x, self.y, perm, FLOOR_BATCH)
            steps, samples, max_batch = steps + k, samples + m, max(max_batch, b)
        sync(self.x.device)
        dt_, cpu = time.perf_counter() - t0, time.process_time() - c0
        return dt_, cpu, {"clients": len(selected), "sgd_steps": steps, "samples": samples, "max_batch": max_batch}


# ---- checks, machine info, output ------------------------------------------------------------------
def expected_counts(sizes: np.ndarray) -> dict[str, int]:
    """Per-round work implied by the workload, for equal-size (IID) clients."""
    n = int(sizes[0])
    assert (sizes == n).all(), f"IID clients should be equal-sized, got sizes {sorted(set(sizes.tolist()))}"
    per_client = LOCAL_EPOCHS * math.ceil(n / BATCH)
    samples = CLIENTS_PER_ROUND * LOCAL_EPOCHS * n
    return {
        "samples": samples,
        "sgd_steps": CLIENTS_PER_ROUND * per_client,
        "floor_sgd_steps": math.ceil(samples / FLOOR_BATCH),
    }


def check_counts(name: str, got: dict[str, int], want: dict[str, int]) -> None:
    assert got["clients"] == CLIENTS_PER_ROUND, (name, got)
    assert got["samples"] == want["samples"], f"{name}: {got['samples']} samples/round, expected {want['samples']}"
    steps = want["floor_sgd_steps"] if name == "floor" else want["sgd_steps"]
    batch = FLOOR_BATCH if name == "floor" else BATCH
    assert got["sgd_steps"] == steps, f"{name}: {got['sgd_steps']} SGD steps/round, expected {steps}"
    assert got["max_batch"] == batch, f"{name}: batch {got['max_batch']}, expected {batch}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(device: str) -> str:
    return f" + {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""


def git_rev() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "fedbench"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return (rev + ("+dirty(fedbench/)" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_pressure_us() -> int | None:
    """Total microseconds in which some task waited for a CPU (Linux PSI), or None."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_steal_s() -> float | None:
    """Total seconds that the hypervisor ran something else on this VM's CPUs (``/proc/stat``)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def profile(contenders: dict, rounds: int, top: int = 15) -> dict[str, str]:
    """torch.profiler tables (self CPU time) for ``rounds`` rounds of each contender."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    tables = {}
    for name, c in contenders.items():
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(rounds):
                c.round()
        tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    return tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per contender per repeat (default 20)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu; the targets are for 2 CPU cores)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="repeats of --rounds interleaved rounds (default 1); s/round is the median over all timed rounds",
    )
    ap.add_argument(
        "--algorithm",
        default="fedavg",
        choices=algorithms(),
        help="algorithm=NAME for the fedbench contenders, with its default keys; plain and floor stay plain "
        "SGD (default fedavg)",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="JSON output (default results/perf/round.json, or results/perf/round_NAME.json with --algorithm NAME "
        "other than fedavg)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile 2 rounds of each contender with torch.profiler and print top ops",
    )
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--rounds, --repeats and --threads must be >= 1")
    if args.out is None:
        args.out = "results/perf/round" + ("" if args.algorithm == "fedavg" else f"_{args.algorithm}") + ".json"

    torch.set_num_threads(args.threads)
    total_rounds = WARMUP_ROUNDS + args.rounds * args.repeats + (2 if args.profile else 0)

    t_setup = time.perf_counter()
    alg = args.algorithm
    vm = FedbenchRound("vmap", total_rounds, device=args.device, algorithm=alg)
    ve = FedbenchRound("vmap", total_rounds, device=args.device, trace=False, algorithm=alg)
    vc = FedbenchRound("vmap", total_rounds, compile=True, device=args.device, algorithm=alg)
    sq = FedbenchRound("sequential", total_rounds, device=args.device, algorithm=alg)
    data, parts = vm.sim.data, vm.sim.parts
    init_state = {k: v.detach().clone() for k, v in vm.sim.model.state_dict().items()}
    # Same tensors, same partition, same initial weights as the fedbench runs.
    assert torch.equal(vm.sim.data.x_train, sq.sim.data.x_train) and torch.equal(vm.sim.params, sq.sim.params)
    plain = PlainRound(data.x_train, data.y_train, parts, init_state, SEED)
    floor = FloorRound(data.x_train, data.y_train, parts, init_state, SEED)
    contenders = {"vmap": vm, "vmap_eager": ve, "vmap_compiled": vc, "sequential": sq}
    contenders |= {"plain": plain, "floor": floor}
    want = expected_counts(vm.sim.sizes)
    d_params = vm.sim.layout.dim
    setup_s = time.perf_counter() - t_setup

    print(
        f"fedbench round benchmark: MLP 784-{'-'.join(map(str, HIDDEN))}-{NUM_CLASSES} ({d_params:,} params), "
        f"{NUM_CLIENTS} clients x {int(vm.sim.sizes[0])} samples (iid), {CLIENTS_PER_ROUND} clients/round, "
        f"E={LOCAL_EPOCHS}, B={BATCH}, lr={LR}; fedbench contenders: algorithm={alg}"
        + ("" if alg == "fedavg" else " (plain and floor: plain SGD, FedAvg)")
    )
    print(
        f"per round: {want['sgd_steps']} SGD steps at batch {BATCH} (floor: {want['floor_sgd_steps']} at batch "
        f"{FLOOR_BATCH}) on {want['samples']} samples; torch {torch.__version__}, {args.threads} threads, "
        f"{cpu_model()}{gpu_name(args.device)}; setup {setup_s:.1f}s"
    )

    # Warm-up (not timed), then timed rounds interleaved ABCD, BCDA, ... (rotated each round).
    warmup_s = {name: 0.0 for name in contenders}
    for _ in range(WARMUP_ROUNDS):
        for name, c in contenders.items():
            dt_, _, counts = c.round()
            warmup_s[name] += dt_
            check_counts(name, counts, want)
    # The vmap step graphs traced so far (engine.trace_after steps of a shape run untraced first).
    traced_graphs = len(getattr(vm.sim.engine._train_step, "graphs", {}))
    print(
        f"vmap: {traced_graphs} traced step graph(s) after warm-up; "
        f"vmap_compiled: warm-up incl. compilation {warmup_s['vmap_compiled']:.1f}s"
    )

    times: dict[str, list[list[float]]] = {n: [] for n in CONTENDERS}
    cpu_times: dict[str, list[list[float]]] = {n: [] for n in CONTENDERS}
    stalls: dict[str, list[list[float | None]]] = {n: [] for n in CONTENDERS}
    extra: dict[str, dict[str, int]] = {}
    order = list(CONTENDERS)
    gc.collect()
    load_before = load_average()
    psi0, steal0, t_bench = cpu_pressure_us(), cpu_steal_s(), time.perf_counter()
    for rep in range(args.repeats):
        for n in CONTENDERS:
            times[n].append([])
            cpu_times[n].append([])
            stalls[n].append([])
        for r in range(args.rounds):
            k = (rep * args.rounds + r) % len(order)
            for name in order[k:] + order[:k]:
                p0 = cpu_pressure_us()
                t, cpu, counts = contenders[name].round()
                p1 = cpu_pressure_us()
                check_counts(name, counts, want)
                times[name][rep].append(t)
                cpu_times[name][rep].append(cpu)
                stalls[name][rep].append((p1 - p0) / 1e6 / t if p0 is not None and p1 is not None else None)
                extra[name] = {k_: v for k_, v in counts.items() if k_ != "train_time_s"}
    bench_s = time.perf_counter() - t_bench
    psi1, steal1 = cpu_pressure_us(), cpu_steal_s()
    steal = (steal1 - steal0) / (bench_s * (os.cpu_count() or 1)) if steal0 is not None and steal1 is not None else None
    # Share of the timing window in which some runnable task on this machine waited for a CPU
    # (Linux PSI). Near 0 on a quiet machine; high means other processes competed for the cores.
    stall = (psi1 - psi0) / 1e6 / bench_s if psi0 is not None and psi1 is not None else None

    flat = {n: [t for ts in times[n] for t in ts] for n in CONTENDERS}
    # Headline: the median round over all timed rounds of all repeats (robust to bursts of load
    # from other processes); the mean per repeat (median over repeats) is reported next to it.
    s_round = {n: statistics.median(flat[n]) for n in CONTENDERS}
    per_repeat = {n: [statistics.fmean(ts) for ts in times[n]] for n in CONTENDERS}
    mean_round = {n: statistics.median(per_repeat[n]) for n in CONTENDERS}
    cpu_round = {n: statistics.median([t for ts in cpu_times[n] for t in ts]) for n in CONTENDERS}
    flat_stall = [x for n in CONTENDERS for xs in stalls[n] for x in xs if x is not None]
    contended = sum(x > 0.10 for x in flat_stall)
    ratios = {label: s_round[a] / s_round[b] for label, a, b, _ in TARGETS}
    # Ratio within each interleaved group of rounds (timed a second or so apart), then the median:
    # the estimate least affected by drifts in machine load.
    paired = {label: statistics.median(x / y for x, y in zip(flat[a], flat[b])) for label, a, b, _ in TARGETS}
    # Ratio of the fastest rounds: the small-op loops switch between a fast and a slow OpenMP regime
    # (README.md, "Two regimes"); their fastest rounds are the fair baseline.
    best = {label: min(flat[a]) / min(flat[b]) for label, a, b, _ in TARGETS}

    print(
        f"\n{'contender':<14}{'s/round':>9}{'ms/step':>9}{'CPU s/round':>13}{'mean s/round':>14}{'min..max round':>18}"
    )
    for n in CONTENDERS:
        print(
            f"{n:<14}{s_round[n]:>9.4f}{1e3 * s_round[n] / extra[n]['sgd_steps']:>9.3f}{cpu_round[n]:>13.4f}"
            f"{mean_round[n]:>14.4f}{min(flat[n]):>10.4f}..{max(flat[n]):.4f}"
        )
    print(f"\n{'ratio':<20}{'measured':>9}{'paired':>9}{'best':>9}{'target':>9}  result")
    results = {}
    for label, _, _, limit in TARGETS:
        ok = None if limit is None else ratios[label] <= limit
        results[label] = {
            "ratio": ratios[label],
            "paired_median_ratio": paired[label],
            "best_round_ratio": best[label],
            "target_max": limit,
            "pass": ok,
        }
        print(
            f"{label:<20}{ratios[label]:>8.3f}x{paired[label]:>8.3f}x{best[label]:>8.3f}x"
            f"{'-' if limit is None else '<= ' + str(limit) + 'x':>9}  "
            f"{'-' if ok is None else 'PASS' if ok else 'MISS'}"
        )
    print(
        f"\ns/round: median over {args.repeats} x {args.rounds} interleaved timed rounds (CPU s/round: same, "
        f"process CPU time); mean s/round: median over repeats of the mean round; ms/step: per SGD step "
        f"(floor: batch {FLOOR_BATCH}); measured = ratio of s/round; paired = median of per-round ratios; "
        "best = ratio of the fastest rounds."
    )
    print(f"timing took {bench_s:.1f}s; load average before {load_before}", end="")
    if stall is not None:
        print(
            f"; CPU pressure (PSI some) during timing {100 * stall:.0f}%, "
            f"{contended}/{len(flat_stall)} timed rounds contended (>10%)",
            end="",
        )
    print()
    if steal is not None:
        print(f"CPU steal (hypervisor) during timing: {100 * steal:.1f}% of the machine's CPU time")
    if flat_stall and contended > 0.1 * len(flat_stall):
        print(
            f"WARNING: other processes competed for the CPUs in {contended}/{len(flat_stall)} timed rounds; with "
            f"--threads equal to the core count this can inflate times many-fold. Rerun on a quiet machine."
        )

    tables = {}
    if args.profile:
        tables = profile(contenders, 2)
        for name, table in tables.items():
            print(f"\n=== torch.profiler, 2 rounds of {name}, sorted by self CPU time ===\n{table}")

    out = {
        "benchmark": "fedbench round time, McMahan 2NN",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_model": cpu_model(), "nproc": os.cpu_count(), "platform": platform.platform()},
        "device": args.device + gpu_name(args.device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "fedbench_git": git_rev(),
        "threads": args.threads,
        "workload": {
            "model": f"mlp 784-{'-'.join(map(str, HIDDEN))}-{NUM_CLASSES}",
            "params": d_params,
            "dataset": "synthetic",
            "input_shape": list(INPUT_SHAPE),
            "num_train": NUM_TRAIN,
            "num_clients": NUM_CLIENTS,
            "samples_per_client": int(vm.sim.sizes[0]),
            "partition": "iid",
            "clients_per_round": CLIENTS_PER_ROUND,
            "local_epochs": LOCAL_EPOCHS,
            "batch_size": BATCH,
            "floor_batch_size": FLOOR_BATCH,
            "lr": LR,
            "algorithm": alg,
            "algorithm_config": asdict(vm.sim.run.algorithm),
            "server_opt": asdict(vm.sim.run.server_opt),
            "seed": SEED,
            "per_round": want,
        },
        "method": {
            "rounds": args.rounds,
            "repeats": args.repeats,
            "warmup_rounds": WARMUP_ROUNDS,
            "interleaving": "per round, order rotated each round (ABCD, BCDA, CDAB, ...)",
            "fedbench_timing": "wall time of Simulation.step(); eval_every=1e9 and rounds beyond the last "
            "timed round, so no round evaluates (asserted)",
            "s_per_round": "median wall time over all timed rounds (repeats x rounds); ratios use it",
            "cpu_s_per_round": "same, from time.process_time() (CPU time of all threads of this process)",
            "mean_s_per_round": "median over repeats of the mean wall time over the repeat's rounds",
            "round_cpu_pressure": "per round, share of its wall time in which some task waited for a CPU "
            "(Linux /proc/pressure/cpu); > 0.1 means other processes competed",
            "paired_median_ratio": "median over timed rounds of the ratio of the two contenders' times "
            "in the same interleaved group",
        },
        "s_per_round": s_round,
        "cpu_s_per_round": cpu_round,
        "mean_s_per_round": mean_round,
        "mean_s_per_round_per_repeat": per_repeat,
        "round_times_s": times,
        "round_cpu_times_s": cpu_times,
        "load_average_before": load_before,
        "cpu_pressure_during_timing": stall,
        "round_cpu_pressure": stalls,
        "contended_rounds": contended,
        "cpu_steal_during_timing": steal,
        "work_per_round": extra,
        "ratios": results,
        "setup_s": setup_s,
        "warmup_s": warmup_s,
        "vmap_traced_graphs_after_warmup": traced_graphs,
        "bench_s": bench_s,
    }
    if tables:
        out["profile_tables"] = tables
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
