"""What makes repeated CUDA runs of the default experiment differ? A bisection, not a test.

Runs the default experiment twice per variant on one device and reports whether the two runs'
metrics are bit-identical, and if not, the first round and column that differ:

- ``untraced``               engine.trace=false
- ``untraced-cudnn-det``     the same with ``torch.backends.cudnn.deterministic = True``
- ``traced``                 engine.trace_after=0: make_fx graph + fuse_bmm_updates + drop_identity_views
- ``traced-nofuse``          traced, without fuse_bmm_updates (per-client gradients written, then added)
- ``traced-noviews``         traced, without drop_identity_views

On an H200 (torch 2.11), two untraced 15-round runs (the default ``trace_after=64`` does not trace
within 15 rounds of the default experiment) were bit-identical on one machine and differed from
round 4 on by 1e-7 in train_loss on another; see README.md, Determinism. Usage::

    python experiments/perf/cuda_determinism.py [--device cuda] [--rounds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

import fedbench.engine.trace as trace
from fedbench.config import compose
from fedbench.outputs import WALL_CLOCK_COLUMNS
from fedbench.runner import run_experiment

VARIANTS = {  # name: (overrides, patches of fedbench.engine.trace, cudnn.deterministic)
    "untraced": (["engine.trace=false"], {}, False),
    "untraced-cudnn-det": (["engine.trace=false"], {}, True),
    "traced": (["engine.trace_after=0"], {}, False),
    "traced-nofuse": (["engine.trace_after=0"], {"fuse_bmm_updates": lambda gm: 0}, False),
    "traced-noviews": (["engine.trace_after=0"], {"drop_identity_views": lambda gm: 0}, False),
}


def metrics(device: str, rounds: int, overrides: list[str], out: Path) -> pd.DataFrame:
    cfg = compose(f"device={device}", f"rounds={rounds}", "progress=false", *overrides)
    summary = run_experiment(cfg, out, callbacks=[])
    if summary["status"] != "completed":
        raise SystemExit(f"run failed: {summary['error']}")
    df = pd.read_parquet(out / "metrics.parquet")
    return df[[c for c in df.columns if c not in WALL_CLOCK_COLUMNS]]


def first_difference(a: pd.DataFrame, b: pd.DataFrame) -> str:
    for i in range(len(a)):
        for col in a.columns:
            x, y = a[col].iloc[i], b[col].iloc[i]
            if not (x == y or (pd.isna(x) and pd.isna(y))):
                return f"round {int(a['round'].iloc[i])}, {col}: {x!r} vs {y!r}"
    return "none"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (overrides, patches, cudnn_det) in VARIANTS.items():
            with contextlib.ExitStack() as stack:
                if patches:
                    stack.enter_context(mock.patch.multiple(trace, **patches))
                saved = torch.backends.cudnn.deterministic
                torch.backends.cudnn.deterministic = cudnn_det
                stack.callback(setattr, torch.backends.cudnn, "deterministic", saved)
                a, b = (metrics(args.device, args.rounds, overrides, Path(tmp) / f"{name}-{k}") for k in "ab")
            same = a.equals(b)
            print(f"{name:<20} identical={same!s:<6} first difference: {first_difference(a, b)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
