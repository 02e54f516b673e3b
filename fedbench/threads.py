"""How many torch CPU threads a run uses (``threads=``), given how the sweep runs it.

``threads=N`` (N > 0) is used as given. ``threads=0`` (auto) divides the machine's cores among
the runs that share it, as read from Hydra's launcher (the ``hydra.launcher`` node):

- no Hydra, a single run, or the basic launcher (one run at a time): every available core;
- the joblib launcher, ``n_jobs=k`` runs at once: ``max(1, cpus // k)``, with joblib's conventions
  (``n_jobs=-1``: one run per core, so 1 thread; ``n_jobs=-k``: ``cpus + 1 - k`` runs at once);
- the submitit launchers (``submitit_local``, ``submitit_slurm``): ``cpus_per_task`` when set
  (at most the cores this process may use), else ``cpus // tasks_per_node``, at least 1. On
  SLURM the job only sees the cores it was given, so "cpus" there is the job's allocation;
  ``submitit_local`` starts every run of the sweep at once and pins nothing, so set
  ``cpus_per_task`` to ``cores // runs``;
- any other launcher: every available core (what torch would pick), with a note to set
  ``threads``.

"cpus" is the number of cores this process may run on (``os.sched_getaffinity``, which honours
``taskset`` and SLURM's cgroup/affinity; ``os.cpu_count()`` where that is not available).

Everything here is a pure function of its arguments except :func:`available_cpus` and
:func:`current_launcher`, which read the process and Hydra's state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

BASIC, JOBLIB, SUBMITIT_LOCAL, SUBMITIT_SLURM, OTHER = "basic", "joblib", "submitit_local", "submitit_slurm", "other"

# Launcher class name (the last part of the node's ``_target_``) -> kind.
_KINDS = {
    "BasicLauncher": BASIC,  # hydra._internal.core_plugins.basic_launcher.BasicLauncher
    "JoblibLauncher": JOBLIB,  # hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher
    "LocalLauncher": SUBMITIT_LOCAL,  # hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher
    "SlurmLauncher": SUBMITIT_SLURM,  # hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher
}


def available_cpus() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def launcher_kind(launcher: Mapping[str, Any] | None) -> str:
    """``basic``, ``joblib``, ``submitit_local``, ``submitit_slurm`` or ``other``; ``None``
    (no Hydra, or a single run) is ``basic``."""
    if launcher is None:
        return BASIC
    target = str(launcher.get("_target_") or "")
    return _KINDS.get(target.rpartition(".")[2], OTHER)


def _int_or_none(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"hydra.launcher.{key}={value!r}: not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"hydra.launcher.{key}={value!r}: not an integer") from None


def joblib_n_jobs(n_jobs: int | None, cpus: int) -> int:
    """How many runs joblib runs at once for ``n_jobs`` on ``cpus`` cores (joblib's
    ``effective_n_jobs``: ``None`` is 1; a negative value is ``cpus + 1 + n_jobs``, at least 1)."""
    if n_jobs is None:
        return 1
    if n_jobs == 0:
        raise ValueError("hydra.launcher.n_jobs=0: joblib needs n_jobs != 0")
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return n_jobs


def launcher_parallelism(launcher: Mapping[str, Any] | None, cpus: int | None = None) -> int | None:
    """How many runs of the sweep share this machine's cores at once, as far as the launcher
    config says: 1 for the basic launcher (or no launcher), joblib's effective ``n_jobs``,
    ``tasks_per_node`` for submitit (SLURM gives each job its own cores; ``submitit_local`` starts
    every run at once, which the config does not say: see ``cpus_per_task``), ``None`` when
    unknown (another launcher)."""
    cpus = available_cpus() if cpus is None else cpus
    kind = launcher_kind(launcher)
    if kind == BASIC:
        return 1
    assert launcher is not None
    if kind == JOBLIB:
        return joblib_n_jobs(_int_or_none(launcher.get("n_jobs", -1), "n_jobs"), cpus)
    if kind in (SUBMITIT_LOCAL, SUBMITIT_SLURM):
        return max(1, _int_or_none(launcher.get("tasks_per_node"), "tasks_per_node") or 1)
    return None


def run_threads(requested: int, launcher: Mapping[str, Any] | None, cpus: int | None = None) -> tuple[int, str]:
    """The torch CPU thread count for a run, and a one-line reason.

    ``requested`` is the ``threads`` config value (0 = auto); ``launcher`` the ``hydra.launcher``
    node as a plain dict (``None`` for a single run or no Hydra); ``cpus`` the cores this process
    may use (default: :func:`available_cpus`).
    """
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"threads={requested!r}: expected an integer >= 0")
    if requested > 0:
        return requested, f"threads={requested} as set"
    cpus = available_cpus() if cpus is None else cpus
    if cpus < 1:
        raise ValueError(f"cpus={cpus!r}: expected >= 1")
    kind = launcher_kind(launcher)
    if kind == BASIC:
        return cpus, f"threads=0: one run at a time, all {cpus} available cores"
    assert launcher is not None
    if kind == JOBLIB:
        n_jobs = _int_or_none(launcher.get("n_jobs", -1), "n_jobs")
        k = joblib_n_jobs(n_jobs, cpus)
        n = max(1, cpus // k)
        return n, f"threads=0: joblib launcher, n_jobs={n_jobs} -> {k} runs at once on {cpus} cores, {n} each"
    if kind in (SUBMITIT_LOCAL, SUBMITIT_SLURM):
        per_task = _int_or_none(launcher.get("cpus_per_task"), "cpus_per_task")
        if per_task is not None and per_task > 0:
            n = min(per_task, cpus)
            capped = f" (capped at the {cpus} available)" if n < per_task else ""
            return n, f"threads=0: {kind} launcher, cpus_per_task={per_task}{capped}"
        tasks = max(1, _int_or_none(launcher.get("tasks_per_node"), "tasks_per_node") or 1)
        n = max(1, cpus // tasks)
        return n, f"threads=0: {kind} launcher, no cpus_per_task: {cpus} cores / tasks_per_node={tasks} -> {n}"
    target = launcher.get("_target_")
    return cpus, f"threads=0: launcher {target} not known, all {cpus} available cores (set threads= to share them)"


def current_launcher() -> dict[str, Any] | None:
    """The ``hydra.launcher`` node of the running Hydra job as a plain dict, or ``None`` outside
    Hydra and for a single (non ``-m``) run, where no launcher runs jobs side by side."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or hc.get("launcher") is None:
        return None
    try:
        node = OmegaConf.to_container(hc.launcher, resolve=True)
    except Exception:  # noqa: BLE001  an interpolation the job cannot resolve: the keys read here are plain
        node = OmegaConf.to_container(hc.launcher, resolve=False)
    return node if isinstance(node, dict) else None
