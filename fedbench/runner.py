"""Run one experiment into a directory and never lose what it did.

:func:`run_experiment` validates the config, builds the :class:`~fedbench.simulation.Simulation`,
runs its rounds and writes the outputs described in :mod:`fedbench.outputs`. A user mistake, an
exception or NaN/Inf ends the run with ``summary.json`` saying so (``failed`` or ``diverged``);
it does not propagate, so a sweep goes on.
"""

from __future__ import annotations

import math
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedbench.config import ConfigError, validate
from fedbench.outputs import (
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    config_hash,
    git_commit,
    metrics_frame,
    versions,
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    evals = [r for r in rows if not math.isnan(r.get("test_acc", math.nan))]
    if not evals:
        return {}
    best = max(evals, key=lambda r: r["test_acc"])
    low = min(evals, key=lambda r: r["test_loss"])
    return {
        "test_acc": best["test_acc"],
        "test_acc_round": int(best["round"]),
        "test_loss": low["test_loss"],
        "test_loss_round": int(low["round"]),
    }


def _final(rows: list[dict[str, Any]]) -> dict[str, Any]:
    evals = [r for r in rows if not math.isnan(r.get("test_acc", math.nan))]
    last = dict(evals[-1]) if evals else {}
    for k in ("train_time_s", "eval_time_s", "wall_time_s"):
        last.pop(k, None)
    return last


def client_acc_csv(sizes, acc) -> str:
    """The last evaluation's accuracy of the global model on each client's own training data
    (empty for clients without data)."""
    lines = ["client,num_samples,acc"]
    lines += [f"{c},{int(n)},{'' if math.isnan(a) else repr(float(a))}" for c, (n, a) in enumerate(zip(sizes, acc))]
    return "\n".join(lines) + "\n"


def run_experiment(cfg: DictConfig | dict, run_dir: str | Path, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Run the experiment ``cfg`` (a composed config) into ``run_dir``; returns the summary.

    ``callbacks=None`` uses the config's (progress bar, logger); a list replaces them.
    ``config_hash`` covers everything that can change results (not ``progress`` or ``logger``).
    """
    from fedbench.simulation import Diverged, Simulation

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "status": "running",
        "error": None,
        "seed": resolved.get("seed"),
        "config_hash": config_hash(resolved),
        "versions": versions(),
        "git_commit": git_commit(),
        "started_at": _now(),
        "run_dir": str(run_dir),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    rows: list[dict[str, Any]] = []
    sim = None
    default_callbacks = callbacks is None
    callbacks = list(callbacks or [])
    try:
        run = validate(cfg)
        sim = Simulation(run)
        summary |= {
            "engine": sim.engine.name,
            "engine_note": sim.engine_note or None,
            "device": str(sim.device),
            "num_params": sim.layout.dim,
            "partition": {k: v for k, v in sim.partition_stats.items() if k not in ("sizes", "label_hist")},
        }
        atomic_write_json(run_dir / "partition.json", sim.partition_stats)
        if default_callbacks:
            from fedbench.logger import make_callbacks

            callbacks = make_callbacks(run, run_dir, resolved)
        for cb in callbacks:
            cb.on_start(sim)
        while sim.round < run.rounds:
            metrics = sim.step()
            metrics["wall_time_s"] = time.perf_counter() - t0
            rows.append(metrics)
            atomic_write_parquet(run_dir / "metrics.parquet", metrics_frame(rows))
            for cb in callbacks:
                cb.on_round(sim, metrics)
        summary["status"] = "completed"
    except Diverged as e:
        summary |= {"status": "diverged", "error": str(e)}
    except ConfigError as e:
        summary |= {"status": "failed", "error": f"config error: {e}"}
    except KeyboardInterrupt:
        summary |= {"status": "failed", "error": "interrupted (KeyboardInterrupt)"}
        raise
    except Exception as e:  # noqa: BLE001  a failed run is recorded, the sweep goes on
        summary |= {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    finally:
        if rows:
            atomic_write_parquet(run_dir / "metrics.parquet", metrics_frame(rows))
        if sim is not None and getattr(sim, "client_acc", None) is not None:
            atomic_write_text(run_dir / "client_acc.csv", client_acc_csv(sim.sizes, sim.client_acc))
        summary |= {
            "rounds_completed": len(rows),
            "final": _final(rows),
            "best": _best(rows),
            "wall_time_s": time.perf_counter() - t0,
            "finished_at": _now(),
        }
        atomic_write_json(run_dir / "summary.json", summary)
        if rows:
            try:
                from fedbench.plot import plot_runs

                plot_runs([run_dir], run_dir / "curves.png")
            except Exception as e:  # noqa: BLE001  a plot must never cost the results
                summary["plot_error"] = f"{type(e).__name__}: {e}"
                atomic_write_json(run_dir / "summary.json", summary)
        for cb in callbacks:
            cb.on_end(sim, summary)
    return summary
