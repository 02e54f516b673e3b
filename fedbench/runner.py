"""Run one experiment into a directory, never lose what it did, and pick up where it stopped.

:func:`run_experiment` decides what to do with the directory (:mod:`fedbench.rundir`: start,
resume from ``checkpoint.pt``, skip a finished run of the same config, move an older run aside),
validates the config, builds the :class:`~fedbench.simulation.Simulation` and runs its rounds,
writing the outputs described in :mod:`fedbench.outputs`. Every run ends with a truthful
``summary.json``:

- ``completed`` / ``diverged`` (NaN/Inf) / ``failed`` (a config error, an exception, a write
  error such as a full disk; the error in one line);
- ``interrupted``: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, SLURM before a
  pre-emption) or SIGUSR2 (submitit/SLURM: the time limit is near) stops the run after the round
  in progress, writes a checkpoint and records the signal and round. A second signal stops at
  once, without a new checkpoint;
- ``running`` is left only by a run killed outright (SIGKILL, a machine going down); readers
  call it ``stale`` once its process is gone (:func:`fedbench.outputs.run_status`).

None of these propagates as an exception (except the second signal's ``KeyboardInterrupt``),
so a sweep goes on.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedbench.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from fedbench.config import ConfigError, validate
from fedbench.outputs import (
    METRICS_LOG,
    WALL_CLOCK_COLUMNS,
    MetricsLog,
    WriteError,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    config_hash,
    git_commit,
    load_metrics,
    metrics_frame,
    versions,
)
from fedbench.rundir import STOP_FILE, RunDirError, claim
from fedbench.threads import run_threads

# partition.json's per-client lists; summary.json's partition block keeps the scalars
PER_CLIENT = ("sizes", "label_hist", "client_noise", "client_rotation")


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
    for k in WALL_CLOCK_COLUMNS:
        last.pop(k, None)
    return last


def client_acc_csv(sizes, acc) -> str:
    """The last evaluation's accuracy of the global model on each client's own training data
    (empty for clients without data)."""
    lines = ["client,num_samples,acc"]
    lines += [f"{c},{int(n)},{'' if math.isnan(a) else repr(float(a))}" for c, (n, a) in enumerate(zip(sizes, acc))]
    return "\n".join(lines) + "\n"


class StopSignals:
    """SIGINT, SIGTERM and SIGUSR2 (submitit's and SLURM's "time limit near") ask the run to stop
    after the round in progress (the state between rounds is consistent, so that is where a
    checkpoint can be taken); a second signal raises ``KeyboardInterrupt`` at once. Installed
    only in the main thread (Python's rule).

    In a sweep, ``stop_file`` (``SWEEP_DIR/.stop``) carries the request to every run of the
    sweep, whichever process they run in: a signal writes it, and a run that finds it stops
    after its round as if signalled (joblib's and submitit's workers do not all receive the
    signal the user sent)."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, n))

    def __init__(self, stop_file: Path | None = None) -> None:
        self.signum: int | None = None
        self.stop_file = stop_file
        self.from_sweep = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.stop_file is not None and signum != getattr(signal, "SIGUSR2", None):  # a time limit is per run
            try:
                self.stop_file.write_text(signal.Signals(signum).name)
            except OSError:
                pass  # this run still stops; the others get the signal or finish
        print(
            f"fedbench: {signal.Signals(signum).name} received: stopping after this round and writing a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def requested(self) -> bool:
        if self.signum is None and self.stop_file is not None and self.stop_file.exists():
            try:
                self.signum = int(signal.Signals[self.stop_file.read_text().strip()])
            except (OSError, KeyError):
                self.signum = int(signal.SIGTERM)
            self.from_sweep = True
        return self.signum is not None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


def run_experiment(
    cfg: DictConfig | dict,
    run_dir: str | Path,
    callbacks: list[Any] | None = None,
    job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the experiment ``cfg`` (a composed config) into ``run_dir``; returns the summary.

    ``callbacks=None`` uses the config's (progress bar, logger); a list replaces them. ``job``
    describes the Hydra job when there is one: ``launcher`` (the ``hydra.launcher`` node, for the
    threads rule), ``sweep_dir`` (the stop file, the logger's group) and ``varying`` (this run's
    swept ``key=value`` pairs, the logger's tags).
    A finished run of the same config already in ``run_dir`` is not run again: its summary
    comes back with ``skipped: True``. ``config_hash`` covers everything that can change results.
    """
    import torch

    from fedbench.simulation import Diverged, Simulation

    run_dir = Path(run_dir)
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = config_hash(resolved)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        decision = claim(run_dir, chash, rerun=bool(resolved.get("rerun", False)))
    except RunDirError as e:  # another live run owns the folder: touch nothing in it
        return {"status": "failed", "error": str(e), "rounds_completed": 0, "run_dir": str(run_dir), "final": {}}
    if decision.action == "skip":
        return {**decision.previous, "skipped": True, "run_dir": str(run_dir)}
    previous = decision.previous or {}
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "status": "running",
        "error": None,
        "seed": resolved.get("seed"),
        "config_hash": chash,
        "versions": versions(),
        "git_commit": git_commit(),
        "started_at": previous.get("started_at", _now()) if decision.action == "resume" else _now(),
        "run_dir": str(run_dir),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "resumed_from": None,
        "resume_count": int(previous.get("resume_count", 0)),
    }
    if decision.moved_to is not None:
        summary["moved_aside"] = str(decision.moved_to)
    if decision.action == "resume" and "wandb_id" in previous:  # the resumed run continues its wandb run
        summary["wandb_id"] = previous["wandb_id"]
    rows: list[dict[str, Any]] = []
    sim = None
    log = None
    default_callbacks = callbacks is None
    callbacks = list(callbacks or [])
    threads_before = torch.get_num_threads()
    sweep_dir = (job or {}).get("sweep_dir")
    with StopSignals(Path(sweep_dir) / STOP_FILE if sweep_dir else None) as stop:
        try:
            atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
            atomic_write_json(run_dir / "summary.json", summary)
            run = validate(cfg)
            threads, summary["threads_rule"] = run_threads(run.threads, (job or {}).get("launcher"))
            torch.set_num_threads(threads)
            summary["threads"] = threads
            sim = Simulation(run)
            if decision.action == "resume":
                state = load_checkpoint(run_dir / CHECKPOINT, chash)
                rows = [r for r in load_metrics(run_dir).to_dict("records") if r["round"] <= state["round"]]
                if len(rows) != state["round"]:
                    raise CheckpointError(
                        f"{run_dir}: the metrics log has {len(rows)} rounds for a checkpoint at round "
                        f"{state['round']}; set rerun=true to start the run again"
                    )
                sim.load_state_dict(state["sim"])
                summary |= {"resumed_from": sim.round, "resume_count": summary["resume_count"] + 1}
                print(f"fedbench: resuming {run_dir} from its checkpoint at round {sim.round}", flush=True)
            if sim.engine_note:
                print(f"fedbench: engine=auto chose {sim.engine.name}: {sim.engine_note}", flush=True)
            empty = sim.partition_stats["empty_clients"]
            if empty:
                print(
                    f"fedbench: warning: the partition left {empty} of {run.num_clients} clients without data "
                    "(they train no steps and carry no weight; partition.json says which)",
                    file=sys.stderr,
                    flush=True,
                )
            log = MetricsLog(run_dir / METRICS_LOG, rows)
            summary |= {
                "engine": sim.engine.name,
                "engine_note": sim.engine_note or None,
                "device": str(sim.device),
                "num_params": sim.layout.dim,
                "partition": {k: v for k, v in sim.partition_stats.items() if k not in PER_CLIENT},
                "byzantine_clients": [int(c) for c in sim.attack.byzantine],
                "aggregator_f": sim.aggregator.f,
            }
            atomic_write_json(run_dir / "partition.json", sim.partition_stats)
            atomic_write_json(run_dir / "summary.json", summary)
            if default_callbacks:
                from fedbench.logger import make_callbacks

                callbacks = make_callbacks(run, run_dir, resolved, summary, job)
            for cb in callbacks:
                cb.on_start(sim)
            offset = rows[-1]["wall_time_s"] if rows else 0.0
            saved = sim.round

            def checkpoint() -> None:
                log.sync()  # the rows a checkpoint counts on are on disk before it is
                save_checkpoint(run_dir / CHECKPOINT, sim.state_dict(), chash)
                summary.update(checkpoint_round=sim.round, rounds_completed=len(rows))
                atomic_write_json(run_dir / "summary.json", summary)

            while sim.round < run.rounds and not stop.requested():
                metrics = sim.step()
                metrics["wall_time_s"] = offset + time.perf_counter() - t0
                rows.append(metrics)
                log.append(metrics)
                for cb in callbacks:
                    cb.on_round(sim, metrics)
                if run.checkpoint_every and sim.round % run.checkpoint_every == 0 and sim.round < run.rounds:
                    checkpoint()
                    saved = sim.round
            if sim.round > saved:
                checkpoint()
            if stop.signum is None:
                summary["status"] = "completed"
            else:
                kept = "checkpoint written" if sim.round else "no round had ended"
                via = " (sent to the sweep)" if stop.from_sweep else ""
                summary |= {
                    "status": "interrupted",
                    "signal": stop.name,
                    "error": f"interrupted by {stop.name}{via} after round {sim.round} ({kept}); "
                    "run the same command again to resume",
                }
        except Diverged as e:
            summary |= {"status": "diverged", "error": str(e)}
        except (ConfigError, CheckpointError) as e:
            summary |= {"status": "failed", "error": f"config error: {e}" if isinstance(e, ConfigError) else str(e)}
        except WriteError as e:
            summary |= {"status": "failed", "error": str(e)}
        except KeyboardInterrupt:
            name = stop.name or "SIGINT"
            summary |= {
                "status": "interrupted",
                "signal": name,
                "error": f"interrupted at once by a second {name} during round {len(rows) + 1}; "
                f"resume continues from the last checkpoint (round {summary.get('checkpoint_round', 0)})",
            }
            raise
        except Exception as e:  # noqa: BLE001  a failed run is recorded, the sweep goes on
            summary |= {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        finally:
            _finish(run_dir, summary, rows, sim, log, callbacks, t0)
            torch.set_num_threads(threads_before)
    return summary


def _finish(run_dir: Path, summary: dict[str, Any], rows: list, sim: Any, log: Any, callbacks: list, t0: float) -> None:
    """The final writes. Each is attempted on its own: a write that fails (disk full) turns the
    run ``failed`` with that error, and what was written before stays readable."""

    def attempt(write) -> bool:
        try:
            write()
        except OSError as e:
            if summary["status"] != "failed":
                summary.update(status="failed", error=str(e))
            return False
        return True

    if log is not None:
        log.close()
    # once the parquet holds every row, the log has done its job
    if rows and attempt(lambda: atomic_write_parquet(run_dir / "metrics.parquet", metrics_frame(rows))):
        attempt(lambda: (run_dir / METRICS_LOG).unlink(missing_ok=True))
    if sim is not None and getattr(sim, "client_acc", None) is not None:
        attempt(lambda: atomic_write_text(run_dir / "client_acc.csv", client_acc_csv(sim.sizes, sim.client_acc)))
    summary |= {
        "rounds_completed": len(rows),
        "final": _final(rows),
        "best": _best(rows),
        "wall_time_s": rows[-1]["wall_time_s"] if rows else time.perf_counter() - t0,
        "finished_at": _now(),
    }
    attempt(lambda: atomic_write_json(run_dir / "summary.json", summary))
    if rows and summary["status"] != "failed":
        try:
            from fedbench.plot import plot_runs

            plot_runs([run_dir], run_dir / "curves.png")
        except Exception as e:  # noqa: BLE001  a plot must never cost the results
            summary["plot_error"] = f"{type(e).__name__}: {e}"
            attempt(lambda: atomic_write_json(run_dir / "summary.json", summary))
    for cb in callbacks:
        cb.on_end(sim, summary)
