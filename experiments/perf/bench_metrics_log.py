"""Per-round cost of recording metrics as a run grows: the old way (rewrite metrics.parquet after
every round) against ``MetricsLog`` (append one JSON line; the parquet is written once at the
end). Side by side in one process, on rows with the real column set.

    python experiments/perf/bench_metrics_log.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

from fedbench.outputs import METRIC_COLUMNS, MetricsLog, atomic_write_parquet, metrics_frame


def row(r: int) -> dict:
    out = {c: 0.5 + r * 1e-4 for c in METRIC_COLUMNS}
    out.update(round=r, num_selected=10, uplink_bytes=1000, downlink_bytes=1000)
    out.update(uplink_bytes_cum=1000 * r, downlink_bytes_cum=1000 * r)
    return out


def timed(fn, repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows: list[dict] = []
        log = MetricsLog(tmp / "metrics.jsonl")
        probes = {10, args.rounds // 10, args.rounds}
        print(f"{'round':>6} {'rewrite parquet ms':>19} {'append jsonl ms':>16} {'ratio':>7}  (medians of 5)")
        for r in range(1, args.rounds + 1):
            rows.append(row(r))
            if r in probes:
                old = median(timed(lambda: atomic_write_parquet(tmp / "metrics.parquet", metrics_frame(rows))))
            new = timed(lambda: log.append(rows[-1]))[0]
            if r in probes:
                new = median([new, *timed(lambda: log.append(rows[-1]), 4)])
                print(f"{r:6d} {old * 1e3:19.3f} {new * 1e3:16.4f} {old / new:7.0f}x")
        log.close()
        t0 = time.perf_counter()
        atomic_write_parquet(tmp / "metrics.parquet", metrics_frame(rows))
        print(f"final metrics.parquet of {args.rounds} rounds, written once: {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
