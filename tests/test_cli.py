"""The ``fedbench`` and ``fedbench-plot`` commands, run as subprocesses in a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fedbench.outputs import atomic_write_parquet, metrics_frame

TINY = ["rounds=2", "num_clients=5", "clients_per_round=2", "partition=iid", "model=logreg"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_FILES = ("metrics.parquet", "summary.json", "config.yaml", "partition.json", "curves.png")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)  # the test is about what users see by default
    env["WANDB_MODE"] = "disabled"
    env["PYTHONWARNINGS"] = "ignore"
    # tiny models gain nothing from intra-op threads, and several commands run side by side
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def run_cli(args: list[str], cwd: Path, cmd: list[str] | None = None, timeout: float = 120):
    cmd = cmd if cmd is not None else [sys.executable, "-m", "fedbench"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env(), check=False
    )


def plot_cmd() -> list[str]:
    exe = shutil.which("fedbench-plot")
    return [exe] if exe else [sys.executable, "-m", "fedbench.plot"]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_completed_run(run_dir: Path, rounds: int) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing in {run_dir}"
    s = summary(run_dir)
    assert s["status"] == "completed", s
    assert s["error"] is None and s["rounds_completed"] == rounds
    df = pd.read_parquet(run_dir / "metrics.parquet")
    assert df["round"].tolist() == list(range(1, rounds + 1))
    assert (run_dir / "curves.png").read_bytes()[:8] == PNG_MAGIC
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["rounds"] == rounds and cfg["model"]["name"] == "logreg" and "hydra" not in cfg
    assert "sizes" in json.loads((run_dir / "partition.json").read_text())
    return s


def assert_one_config_error_line(proc, key: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got:\n{proc.stderr}"
    assert lines[0].startswith("fedbench: config error: "), lines[0]
    assert key in lines[0], f"{key!r} not named in {lines[0]!r}"
    return lines[0]


# ---- the slow commands, started in the background --------------------------------------------------
class Job:
    """A ``fedbench`` command started in the background in ``base/name``; logs go next to it."""

    def __init__(self, base: Path, name: str, args: list[str], cmd: list[str]):
        self.cwd = base / name
        self.cwd.mkdir()
        self._logs = (base / f"{name}.stdout", base / f"{name}.stderr")
        with self._logs[0].open("w") as out, self._logs[1].open("w") as err:
            self.proc = subprocess.Popen([*cmd, *args], cwd=self.cwd, stdout=out, stderr=err, text=True, env=_env())
        self._result: subprocess.CompletedProcess | None = None

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
            out, err = (f.read_text() for f in self._logs)
            self._result = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# alpha=0.001 over 20 clients on digits (1437 train samples): min_size=60 cannot be met, so the
# partitioner gives up at setup (PartitionError -> failed run); min_size=0 runs.
FAILING_SWEEP = [
    "rounds=2",
    "num_clients=20",
    "clients_per_round=2",
    "model=logreg",
    "client_metrics=false",
    "partition=dirichlet_class",
    "partition.alpha=0.001",
    "partition.min_size=60,0",
]


def _job_specs(base: Path) -> dict[str, tuple[list[str], list[str]]]:
    python_m = [sys.executable, "-m", "fedbench"]
    specs = {
        "python_m": ([*TINY, f"hydra.run.dir={base / 'python_m' / 'out' / 'run'}"], python_m),
        "seed_sweep": (["-m", "seed=0,1", *TINY, f"hydra.sweep.dir={base / 'seed_sweep' / 'sweep'}"], python_m),
        "failing_sweep": (["-m", *FAILING_SWEEP, f"hydra.sweep.dir={base / 'failing_sweep' / 'sweep'}"], python_m),
    }
    # The README's install puts the console script on PATH; a missing one fails the test below.
    exe = shutil.which("fedbench")
    if exe is not None:
        specs["console"] = ([*TINY, "seed=3", f"hydra.run.dir={base / 'console' / 'run'}"], [exe])
    return specs


class Jobs:
    """The slow commands (each pays seconds of imports), each used by one test. In a plain pytest
    run they all start at once so they share the cores; under pytest-xdist, where the tests of
    this module may land on different workers, each starts when its test asks for it."""

    def __init__(self, base: Path):
        self.base = base
        self.specs = _job_specs(base)
        self.started: dict[str, Job] = {}
        if "PYTEST_XDIST_WORKER" not in os.environ:
            for name in self.specs:
                self.start(name)

    def start(self, name: str) -> Job:
        if name not in self.started:
            args, cmd = self.specs[name]
            self.started[name] = Job(self.base, name, args, cmd)
        return self.started[name]

    __getitem__ = start

    def kill(self) -> None:
        for job in self.started.values():
            job.kill()


@pytest.fixture(scope="module", autouse=True)
def jobs(tmp_path_factory):
    """Autouse, so that (outside xdist) the slow commands run while the quick tests do."""
    started = Jobs(tmp_path_factory.mktemp("cli_jobs"))
    try:
        yield started
    finally:
        started.kill()


# ---- config errors: exit 2 before any run ----------------------------------------------------------
BAD_OVERRIDES = [
    (["partition=dirichlet_class", "partition.alpha=-1"], "partition.alpha"),
    (["clients_per_round=50", "num_clients=10"], "clients_per_round"),
    (["algorithm.lr=-1"], "algorithm.lr"),
    (["dataset=nope"], "dataset"),
    (["partition.foo=1"], "partition.foo"),
    (["rounds=abc"], "rounds"),
    (["dataset.name=nope"], "dataset.name"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_override_exits_2_with_one_line(tmp_path, overrides, key):
    base = [o for o in TINY if o.split("=")[0] not in {x.split("=")[0] for x in overrides}]
    if any(o.startswith("partition.") for o in overrides):
        base = [o for o in base if o != "partition=iid"]
    proc = run_cli([*base, *overrides, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = assert_one_config_error_line(proc, key)
    if "nope" in overrides[-1]:
        assert "nope" in line and "digits" in line and "synthetic" in line
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.rglob("metrics.parquet"))


def test_config_error_messages_name_value_and_allowed(tmp_path):
    proc = run_cli(["partition.alpha=-1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = assert_one_config_error_line(proc, "partition.alpha")
    assert "-1" in line and "allowed" in line and "> 0" in line


def test_unknown_key_override_says_unknown_key(tmp_path):
    proc = run_cli(["partition.foo=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = assert_one_config_error_line(proc, "partition.foo")
    assert "=None" not in line
    assert "unknown key" in line


def test_moved_key_override_says_where_it_went(tmp_path):
    proc = run_cli(["algorithm.server_momentum=0.9", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = assert_one_config_error_line(proc, "algorithm.server_momentum")
    assert "moved" in line and "server_opt.momentum" in line


def test_list_value_for_float_key_is_one_line(tmp_path):
    proc = run_cli(["partition.alpha=[1,2]", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert_one_config_error_line(proc, "partition.alpha")


@pytest.mark.parametrize("flag", ["-m", "--multirun"])
def test_sweep_with_one_bad_value_is_rejected_before_any_run(tmp_path, flag):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            flag,
            *[o for o in TINY if o != "partition=iid"],
            "partition=dirichlet_class",
            "partition.alpha=0.5,-1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    line = assert_one_config_error_line(proc, "partition.alpha")
    assert "-1" in line
    assert not sweep.exists()
    assert not list(tmp_path.rglob("metrics.parquet"))
    assert "Launching" not in proc.stdout + proc.stderr


# ---- fedbench-plot -------------------------------------------------------------------------------
def fake_run(run_dir: Path, shift: float) -> Path:
    """A run directory with a 4-round metrics.parquet, evaluated on even rounds."""
    rows = []
    for r in range(1, 5):
        row = {"round": r, "num_selected": 2, "train_loss": 1 / r + shift, "uplink_bytes": 8, "downlink_bytes": 8}
        row |= {"uplink_bytes_cum": 8 * r, "downlink_bytes_cum": 8 * r, "train_time_s": 0.1, "wall_time_s": r / 10}
        if r % 2 == 0:
            row |= {"test_acc": 0.5 + r / 10 - shift, "test_loss": 1 / r + shift, "eval_time_s": 0.01}
        rows.append(row)
    run_dir.mkdir(parents=True)
    atomic_write_parquet(run_dir / "metrics.parquet", metrics_frame(rows))
    return run_dir


def test_plot_two_runs(tmp_path):
    a, b = fake_run(tmp_path / "a", 0.0), fake_run(tmp_path / "b", 0.1)
    (b / ".hydra").mkdir()
    (b / ".hydra" / "overrides.yaml").write_text("- seed=1\n- rounds=4\n")
    out = tmp_path / "figs" / "fig.png"
    proc = run_cli([str(a), str(b), "-o", str(out)], cwd=tmp_path, cmd=plot_cmd())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 1000
    assert listing(out.parent) == ["fig.png"], "stray temp file"
    assert str(out) in proc.stdout


@pytest.mark.parametrize("problem", ["nothing to plot", "label count"])
def test_plot_bad_input_exits_2(tmp_path, problem):
    good = fake_run(tmp_path / "good", 0.0)
    out = tmp_path / "fig.png"
    if problem == "nothing to plot":  # a folder without runs, and a run without metric rows
        empty = tmp_path / "empty_run"
        empty.mkdir()
        (good / "metrics.parquet").unlink()
        (good / "summary.json").write_text('{"status": "failed"}')
        args, expected = [str(good), str(empty)], ["nothing to plot", f"{empty} (no runs)", f"{good} (no metric rows)"]
    else:
        args, expected = [str(good), "--labels", "x", "y"], ["--labels", "1 labels, got 2"]
    proc = run_cli([*args, "-o", str(out)], cwd=tmp_path, cmd=plot_cmd())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("fedbench-plot: ") and "\n" not in line
    for part in expected:
        assert part in line
    if problem == "label count":
        assert str(good) not in line
    assert not out.exists()


def test_help_exits_0(tmp_path):
    exe = shutil.which("fedbench")
    proc = run_cli(["--help"], cwd=tmp_path, cmd=[exe] if exe else None)
    assert proc.returncode == 0, proc.stderr
    assert "partition" in proc.stdout and "dirichlet_class" in proc.stdout
    assert list(tmp_path.iterdir()) == []
    # fedbench's own help, not Hydra's template: outputs, resume, exit codes
    for words in ("metrics.parquet", "Resume:", "rerun=true", "Exit status", "143", "fedbench-report"):
        assert words in proc.stdout
    assert "Powered by Hydra" not in proc.stdout


def test_cfg_job_validates_what_it_prints(tmp_path):
    bad = run_cli(["--cfg", "job", "partition.alpha=-1"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().startswith("fedbench: config error: partition.alpha=-1.0: out of range")
    # a user config dir (-cd) adds options; the check sees them, and still rejects unknown ones
    user = tmp_path / "myconf" / "model"
    user.mkdir(parents=True)
    (user / "tinymlp.yaml").write_text("name: mlp\nhidden: [16]\n")
    ok = run_cli(["-cd", "myconf", "--cfg", "job", "model=tinymlp"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "hidden:\n  - 16" in ok.stdout
    unknown = run_cli(["-cd", "myconf", "--cfg", "job", "model=nosuch"], cwd=tmp_path)
    assert unknown.returncode == 2 and "model=nosuch: unknown model option; allowed: " in unknown.stderr
    assert "logreg, mlp, " in unknown.stderr and unknown.stderr.rstrip().endswith(", tinymlp")


# ---- end to end ----------------------------------------------------------------------------------
def test_python_m_fedbench_runs_tiny_config(jobs):
    job = jobs["python_m"]
    proc = job.result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_completed_run(job.cwd / "out" / "run", rounds=2)
    assert "fedbench: completed after 2 rounds" in proc.stdout
    assert listing(job.cwd) == ["out"], "wrote outside hydra.run.dir"


def test_console_script_runs_tiny_config(jobs):
    assert "console" in jobs.specs, "the `fedbench` console script is not on PATH after `pip install -e .`"
    job = jobs["console"]
    proc = job.result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert check_completed_run(job.cwd / "run", rounds=2)["seed"] == 3
    assert listing(job.cwd) == ["run"], "wrote outside hydra.run.dir"


def test_multirun_two_seeds(jobs):
    job = jobs["seed_sweep"]
    proc = job.result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dirs = run_dirs(job.cwd / "sweep")
    assert len(dirs) == 2, dirs
    seeds = sorted(check_completed_run(d, rounds=2)["seed"] for d in dirs)
    assert seeds == [0, 1]
    assert "sweep finished: 2 completed" in proc.stdout
    assert len({summary(d)["config_hash"] for d in dirs}) == 2
    assert listing(job.cwd) == ["sweep"], "wrote outside hydra.sweep.dir"


def test_failing_run_in_sweep_is_recorded_and_sweep_goes_on(jobs):
    job = jobs["failing_sweep"]
    proc = job.result()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    dirs = run_dirs(job.cwd / "sweep")
    assert len(dirs) == 2, dirs
    by_min = {yaml.safe_load((d / "config.yaml").read_text())["partition"]["min_size"]: d for d in dirs}
    failed, ok = summary(by_min[60]), summary(by_min[0])
    assert failed["status"] == "failed"
    assert failed["rounds_completed"] == 0
    assert "min_size" in failed["error"] and "partition" in failed["error"]
    assert not (by_min[60] / "metrics.parquet").exists()
    # the failing run was the sweep's first job, and the second one still ran
    assert ok["status"] == "completed" and ok["error"] is None
    assert (by_min[0] / "metrics.parquet").is_file()
    assert "sweep finished: 1 completed, 1 failed" in proc.stdout
    assert failed["error"] in proc.stderr


def test_ctrl_c_records_the_run_as_interrupted(tmp_path):
    import signal
    import time

    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedbench", "rounds=100000", "progress=false", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    log = run_dir / "metrics.jsonl"
    while not (log.exists() and log.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted by SIGINT" in err and "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
    assert summary["rounds_completed"] >= 1 and summary["checkpoint_round"] == summary["rounds_completed"]
    assert len(pd.read_parquet(run_dir / "metrics.parquet")) == summary["rounds_completed"]
