"""The threads rule (fedbench/threads.py) and sweeps through Hydra's joblib and submitit_local
launchers (docs/sweeps.md), run as real ``fedbench -m`` subprocesses."""

from __future__ import annotations

import os

import pytest

from fedbench import threads
from fedbench.threads import available_cpus, joblib_n_jobs, launcher_kind, launcher_parallelism, run_threads

BASIC = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}


def joblib(n_jobs, **extra):
    """The joblib launcher node as ``OmegaConf.to_container`` gives it inside a job."""
    return {
        "_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        "n_jobs": n_jobs,
        "backend": None,
        "prefer": "processes",
        "pre_dispatch": "2*n_jobs",
        **extra,
    }


def submitit(kind: str, cpus_per_task=None, tasks_per_node=1, **extra):
    cls = {"local": "LocalLauncher", "slurm": "SlurmLauncher"}[kind]
    return {
        "_target_": f"hydra_plugins.hydra_submitit_launcher.submitit_launcher.{cls}",
        "submitit_folder": "/tmp/sweep/.submitit/%j",
        "timeout_min": 60,
        "cpus_per_task": cpus_per_task,
        "gpus_per_node": None,
        "tasks_per_node": tasks_per_node,
        "mem_gb": None,
        "nodes": 1,
        "name": "fedbench",
        **extra,
    }


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("launcher", [None, BASIC, joblib(4), submitit("slurm", 2), {"_target_": "x.RayLauncher"}])
def test_a_requested_count_wins(launcher):
    assert run_threads(3, launcher, cpus=16) == (3, "threads=3 as set")
    assert run_threads(64, launcher, cpus=2)[0] == 64  # the user's word, even above the core count


@pytest.mark.parametrize("launcher", [None, BASIC])
def test_one_run_at_a_time_gets_every_core(launcher):
    n, why = run_threads(0, launcher, cpus=12)
    assert n == 12
    assert "12" in why and "one run at a time" in why


def test_default_cpus_are_the_cores_this_process_may_use():
    assert run_threads(0, None)[0] == available_cpus()
    if hasattr(os, "sched_getaffinity"):
        assert available_cpus() == len(os.sched_getaffinity(0))


def test_available_cpus_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cpus() == 1


@pytest.mark.parametrize(
    ("n_jobs", "cpus", "threads_each"),
    [
        (2, 16, 8),
        (3, 16, 5),  # floor
        (4, 4, 1),
        (8, 4, 1),  # more jobs than cores: still 1
        (1, 16, 16),
        (-1, 16, 1),  # joblib: -1 = one job per core
        (-2, 16, 1),  # 15 jobs at once
        (-9, 16, 2),  # 16 + 1 - 9 = 8 jobs at once
        (-15, 16, 8),  # 2 jobs at once
        (-16, 16, 16),  # 1 job
        (-40, 16, 16),  # joblib clamps at 1 job
        (None, 16, 16),  # joblib: None = 1 job
        ("2", 8, 4),  # a string from the command line
    ],
)
def test_joblib_divides_the_cores_among_n_jobs(n_jobs, cpus, threads_each):
    n, why = run_threads(0, joblib(n_jobs), cpus=cpus)
    assert n == threads_each
    assert why.startswith("threads=0: joblib launcher") and f"n_jobs={n_jobs}" in why


def test_joblib_default_n_jobs_is_minus_one():
    node = joblib(0)
    del node["n_jobs"]
    assert run_threads(0, node, cpus=8)[0] == 1


def test_joblib_n_jobs_conventions():
    assert joblib_n_jobs(None, 8) == 1
    assert joblib_n_jobs(3, 8) == 3
    assert joblib_n_jobs(-1, 8) == 8
    assert joblib_n_jobs(-3, 8) == 6
    assert joblib_n_jobs(-100, 8) == 1
    with pytest.raises(ValueError, match="n_jobs=0"):
        joblib_n_jobs(0, 8)
    with pytest.raises(ValueError, match="n_jobs=0"):
        run_threads(0, joblib(0), cpus=8)


@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_submitit_uses_cpus_per_task(kind):
    n, why = run_threads(0, submitit(kind, cpus_per_task=4), cpus=32)
    assert n == 4
    assert f"submitit_{kind} launcher" in why and "cpus_per_task=4" in why


@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_submitit_cpus_per_task_is_capped_at_the_cores_available(kind):
    n, why = run_threads(0, submitit(kind, cpus_per_task=8), cpus=2)
    assert n == 2 and "capped" in why


@pytest.mark.parametrize(
    ("tasks_per_node", "cpus", "threads_each"), [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (None, 6, 6)]
)
@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_submitit_without_cpus_per_task_divides_by_tasks_per_node(kind, tasks_per_node, cpus, threads_each):
    n, why = run_threads(0, submitit(kind, tasks_per_node=tasks_per_node), cpus=cpus)
    assert n == threads_each
    assert "no cpus_per_task" in why


def test_submitit_cpus_per_task_zero_counts_as_unset():
    assert run_threads(0, submitit("slurm", cpus_per_task=0, tasks_per_node=2), cpus=8)[0] == 4


def test_an_unknown_launcher_gets_every_core_and_says_so():
    n, why = run_threads(0, {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}, cpus=8)
    assert n == 8 and "RayLauncher" in why and "not known" in why
    assert run_threads(0, {}, cpus=3)[0] == 3


def test_launcher_kind_reads_the_class_name():
    assert launcher_kind(None) == threads.BASIC
    assert launcher_kind(BASIC) == threads.BASIC
    assert launcher_kind(joblib(2)) == threads.JOBLIB
    assert launcher_kind(submitit("local")) == threads.SUBMITIT_LOCAL
    assert launcher_kind(submitit("slurm")) == threads.SUBMITIT_SLURM
    assert launcher_kind({"_target_": "my.pkg.JoblibLauncher"}) == threads.JOBLIB  # a subclass path
    assert launcher_kind({"_target_": "x.y.Other"}) == threads.OTHER


def test_launcher_parallelism():
    assert launcher_parallelism(None, 8) == 1
    assert launcher_parallelism(BASIC, 8) == 1
    assert launcher_parallelism(joblib(3), 8) == 3
    assert launcher_parallelism(joblib(-1), 8) == 8
    assert launcher_parallelism(joblib(-2), 8) == 7
    assert launcher_parallelism(submitit("slurm", cpus_per_task=4, tasks_per_node=2), 8) == 2
    assert launcher_parallelism(submitit("local"), 8) == 1
    assert launcher_parallelism({"_target_": "x.RayLauncher"}, 8) is None


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None])
def test_requested_must_be_a_count(bad):
    with pytest.raises(ValueError, match="threads="):
        run_threads(bad, None, cpus=4)


def test_bad_launcher_values_name_the_key():
    with pytest.raises(ValueError, match=r"hydra\.launcher\.n_jobs='many'"):
        run_threads(0, joblib("many"), cpus=4)
    with pytest.raises(ValueError, match=r"hydra\.launcher\.cpus_per_task=2\.5"):
        run_threads(0, submitit("slurm", cpus_per_task=2.5), cpus=4)
    with pytest.raises(ValueError, match="cpus=0"):
        run_threads(0, None, cpus=0)


def test_the_real_launcher_configs_have_the_fields_the_rule_reads():
    """The rule reads n_jobs, cpus_per_task and tasks_per_node: the installed plugins' schemas
    must have them, with the defaults the rule assumes."""
    from dataclasses import fields

    jl = pytest.importorskip("hydra_plugins.hydra_joblib_launcher.config")
    sl = pytest.importorskip("hydra_plugins.hydra_submitit_launcher.config")
    assert {f.name: f.default for f in fields(jl.JobLibLauncherConf)}["n_jobs"] == -1
    for conf in (sl.SlurmQueueConf, sl.LocalQueueConf):
        defaults = {f.name: f.default for f in fields(conf)}
        assert defaults["cpus_per_task"] is None and defaults["tasks_per_node"] == 1
        assert launcher_kind({"_target_": defaults["_target_"]}) in (threads.SUBMITIT_LOCAL, threads.SUBMITIT_SLURM)
    assert launcher_kind({"_target_": {f.name: f.default for f in fields(jl.JobLibLauncherConf)}["_target_"]}) == (
        threads.JOBLIB
    )


def test_current_launcher_outside_hydra_is_none():
    assert threads.current_launcher() is None


@pytest.fixture
def hydra_job():
    """Make HydraConfig hold fedbench's composed config, as it does inside a job; cleared after."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from fedbench.config import hydra_context

    def set_job(overrides: list[str], mode) -> None:
        with hydra_context():
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = mode
            cfg.hydra.sweep.dir = "/tmp/sweep"  # no ${now:} (its resolver lives in the Hydra app)
        HydraConfig.instance().set_config(cfg)

    yield set_job
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize(
    ("overrides", "expected", "threads_on_12_cores"),
    [
        ([], {"_target_": BASIC["_target_"]}, 12),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], {"n_jobs": 3}, 4),
        (
            ["hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=4", "hydra.launcher.partition=gpu"],
            {"cpus_per_task": 4, "partition": "gpu", "submitit_folder": "/tmp/sweep/.submitit/%j"},
            4,
        ),
    ],
)
def test_current_launcher_in_a_multirun_job_is_the_launcher_node(hydra_job, overrides, expected, threads_on_12_cores):
    from hydra.types import RunMode

    if overrides:
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    hydra_job(overrides, RunMode.MULTIRUN)
    node = threads.current_launcher()
    assert isinstance(node, dict) and node.items() >= expected.items()  # resolved: interpolations filled in
    assert run_threads(0, node, cpus=12)[0] == threads_on_12_cores


def test_current_launcher_in_a_single_run_is_none(hydra_job):
    """``fedbench hydra/launcher=joblib ...`` without -m runs one job in-process: no sharing."""
    from hydra.types import RunMode

    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    hydra_job(["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"], RunMode.RUN)
    assert threads.current_launcher() is None


# The launchers end to end (12-run sweeps, stopped and relaunched, threads per run): test_sweep_resume.py
