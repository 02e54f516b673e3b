"""Resumable, idempotent runs with a truthful record: checkpoints, signals, SIGKILL, write errors,
reused folders. The signal and disk tests run the real ``fedbench`` command in a subprocess."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from pandas.testing import assert_frame_equal

from fedbench.checkpoint import CHECKPOINT, load_checkpoint
from fedbench.config import compose
from fedbench.outputs import METRICS_LOG, WALL_CLOCK_COLUMNS, MetricsLog, load_metrics, read_metrics_log, run_status
from fedbench.runner import run_experiment
from fedbench.simulation import train_loss

TINY = ["num_clients=5", "clients_per_round=2", "partition=iid", "model=logreg", "progress=false"]


def cfg(*extra: str):
    keys = {e.split("=")[0] for e in extra}
    return compose(*[o for o in TINY if o.split("=")[0] not in keys], *extra)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics_without_clock(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet").drop(columns=WALL_CLOCK_COLUMNS)


class SignalAt:
    """A callback that sends this process ``signum`` when round ``r`` ends."""

    def __init__(self, r: int, signum: int = signal.SIGTERM):
        self.r, self.signum = r, signum

    def on_start(self, sim):
        pass

    def on_round(self, sim, metrics):
        if metrics["round"] == self.r:
            os.kill(os.getpid(), self.signum)

    def on_end(self, sim, summary):
        pass


# ---- in-process: checkpoint contents and resume equivalence ----------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        ("algorithm=scaffold", "server_opt=adam"),  # per-client state, server state, optimizer state
        ("algorithm=feddyn", "server_opt=sgd", "server_opt.momentum=0.9"),
        ("uplink=topk", "uplink.fraction=0.1", "downlink=bf16"),  # codecs are stateless: nothing to save
        # the downlink's residual, PowerSGD's Q and which messages each client has
        ("uplink=powersgd", "downlink=powersgd", "downlink.cache_rounds=2"),
        ("downlink=stc", "downlink.k=20", "downlink.cache_rounds=2"),
    ],
)
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, extra):
    c = cfg("rounds=7", "eval_every=2", "checkpoint_every=2", *extra)
    whole = run_experiment(c, tmp_path / "whole", callbacks=[])
    assert whole["status"] == "completed"
    first = run_experiment(c, tmp_path / "split", callbacks=[SignalAt(3)])
    assert first["status"] == "interrupted" and first["signal"] == "SIGTERM"
    assert first["rounds_completed"] == 3 and first["checkpoint_round"] == 3  # checkpoint at the stop, not at 2
    assert "round 3" in first["error"]
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT, first["config_hash"])["round"] == 3
    second = run_experiment(c, tmp_path / "split", callbacks=[])
    assert second["status"] == "completed" and second["resumed_from"] == 3 and second["resume_count"] == 1
    assert_frame_equal(metrics_without_clock(tmp_path / "whole"), metrics_without_clock(tmp_path / "split"))
    assert not (tmp_path / "split" / METRICS_LOG).exists()  # the parquet holds every row now
    assert second["final"] == whole["final"]


def test_checkpoint_loads_without_unpickling_and_holds_the_state(tmp_path):
    s = run_experiment(cfg("rounds=4", "checkpoint_every=3", "algorithm=scaffold"), tmp_path, callbacks=[])
    payload = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # raises on any arbitrary object
    assert payload["format"] == "fedbench-checkpoint" and payload["round"] == 4  # the final one
    assert payload["config_hash"] == s["config_hash"]
    sim = payload["sim"]
    assert sim["round"] == 4 and sim["params"].shape == (650,)
    assert set(sim) >= {"params", "server_state", "algorithm", "client_state", "engine", "totals"}
    assert sim["totals"]["uplink_bytes_cum"] == s["final"]["uplink_bytes_cum"]


def test_a_finished_run_is_skipped_and_rerun_moves_it_aside(tmp_path):
    c = cfg("rounds=2")
    first = run_experiment(c, tmp_path, callbacks=[])
    again = run_experiment(c, tmp_path, callbacks=[])
    assert again["skipped"] and again["status"] == "completed" and again["started_at"] == first["started_at"]
    forced = run_experiment(cfg("rounds=2", "rerun=true"), tmp_path, callbacks=[])
    assert forced["status"] == "completed" and not forced.get("skipped")
    assert forced["config_hash"] == first["config_hash"]  # rerun does not change the run's identity
    old = tmp_path / ".previous" / "1"
    assert summary_of(old)["started_at"] == first["started_at"]
    assert (old / "metrics.parquet").exists() and (old / CHECKPOINT).exists()


def test_a_reused_folder_moves_the_older_run_aside(tmp_path):
    run_experiment(cfg("rounds=3", "eval_every=1"), tmp_path, callbacks=[])
    s = run_experiment(cfg("rounds=2", "model=mlp", "model.hidden=[8]"), tmp_path, callbacks=[])
    assert s["status"] == "completed" and s["moved_aside"] == str(tmp_path / ".previous" / "1")
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == 2  # not the older run's 3 rounds
    assert len(pd.read_parquet(tmp_path / ".previous" / "1" / "metrics.parquet")) == 3
    # a config that fails before its first round leaves no older file beside it either
    bad = run_experiment(cfg("rounds=2", "partition.alpha=-1", "partition=dirichlet_class"), tmp_path, callbacks=[])
    assert bad["status"] == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".previous", "config.yaml", "summary.json"]


@pytest.mark.parametrize(
    "content, says",
    [
        (b"not a checkpoint at all", "not a readable checkpoint"),
        ("foreign", "not a fedbench checkpoint"),
        ("pickle", "not a readable checkpoint"),  # an arbitrary object: weights_only refuses to build it
        ("other-config", "checkpoint of another config"),
    ],
)
def test_a_corrupt_or_foreign_checkpoint_is_a_one_line_error(tmp_path, content, says):
    c = cfg("rounds=4", "checkpoint_every=1")
    run_experiment(c, tmp_path, callbacks=[SignalAt(2)])
    ckpt = tmp_path / CHECKPOINT
    if content == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    elif content == "pickle":
        torch.save({"format": "fedbench-checkpoint", "x": Path("/")}, ckpt)
    elif content == "other-config":
        payload = torch.load(ckpt, weights_only=True)
        torch.save({**payload, "config_hash": "0" * 64}, ckpt)
    else:
        ckpt.write_bytes(content)
    s = run_experiment(c, tmp_path, callbacks=[])
    assert s["status"] == "failed" and says in s["error"] and "\n" not in s["error"]
    assert "rerun=true" in s["error"] and "traceback" not in s


def test_a_folder_held_by_a_live_run_is_refused_untouched(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = {"status": "running", "pid": sleeper.pid, "host": os.uname().nodename, "config_hash": "x"}
        (tmp_path / "summary.json").write_text(json.dumps(held))
        s = run_experiment(cfg("rounds=2"), tmp_path, callbacks=[])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert s["status"] == "failed" and f"pid {sleeper.pid}" in s["error"]
    assert summary_of(tmp_path) == held and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert run_status(held) == "stale"  # the process is gone now


# ---- metrics log ------------------------------------------------------------------------------------
def test_metrics_log_appends_one_line_per_round_and_reads_back_exactly(tmp_path):
    rows = [{"round": 1, "train_loss": 0.1 + 0.2, "test_acc": float("nan"), "uplink_bytes": 10}]
    log = MetricsLog(tmp_path / "m.jsonl", rows)
    inode = os.stat(tmp_path / "m.jsonl").st_ino
    log.append({"round": 2, "train_loss": 1 / 3, "test_acc": 0.5, "uplink_bytes": 10})
    log.sync()
    assert os.stat(tmp_path / "m.jsonl").st_ino == inode  # appended in place, not rewritten
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"round": 3, "train_lo')  # torn by a kill
    back = read_metrics_log(tmp_path / "m.jsonl")
    log.close()
    assert [r["round"] for r in back] == [1, 2]
    assert back[0]["train_loss"] == 0.1 + 0.2 and back[1]["train_loss"] == 1 / 3  # bit for bit
    assert back[0]["test_acc"] != back[0]["test_acc"]  # NaN survives


def test_train_loss_is_sample_weighted_over_clients_that_trained():
    losses = torch.tensor([1.0, 4.0, 0.0])
    assert train_loss(losses, [10, 30, 0]) == pytest.approx((10 * 1.0 + 30 * 4.0) / 40)  # 3.25, not 5/3
    assert train_loss(torch.zeros(2), [0, 0]) != train_loss(torch.zeros(2), [0, 0])  # NaN: nobody trained


def test_empty_clients_are_counted_and_announced(tmp_path, capfd):
    # 40 clients, tiny Dirichlet alpha without a minimum size: some clients get nothing
    c = cfg("rounds=1", "num_clients=40", "partition=dirichlet_class", "partition.alpha=0.05", "partition.min_size=0")
    s = run_experiment(c, tmp_path, callbacks=[])
    empty = json.loads((tmp_path / "partition.json").read_text())["empty_clients"]
    sizes = json.loads((tmp_path / "partition.json").read_text())["sizes"]
    assert empty == sum(n == 0 for n in sizes) > 0 and s["partition"]["empty_clients"] == empty
    err = capfd.readouterr().err
    assert f"left {empty} of 40 clients without data" in err and err.count("warning") == 1


# ---- real processes: signals, SIGKILL, disk full ---------------------------------------------------
SLOW = [*TINY, "rounds=100000", "eval_every=1", "checkpoint_every=3"]


def _start(run_dir: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fedbench", *SLOW, *extra, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for_rounds(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    log = run_dir / METRICS_LOG
    while time.monotonic() < deadline:
        if log.exists() and len(read_metrics_log(log)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"no {n} rounds within {timeout} s")


def test_sigkill_leaves_a_stale_run_that_a_relaunch_resumes_exactly(tmp_path):
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    proc = _start(run_dir, "rounds=60")
    _wait_for_rounds(run_dir, 8, proc)
    proc.kill()
    proc.communicate()
    s = summary_of(run_dir)
    assert s["status"] == "running" and run_status(s) == "stale" and s["pid"] == proc.pid
    logged = len(read_metrics_log(run_dir / METRICS_LOG))
    assert s["checkpoint_round"] >= 6 and logged >= s["checkpoint_round"]
    assert len(load_metrics(run_dir)) == logged  # readers see the rounds of a killed run
    # the same command again: resumes from the checkpoint, drops the rounds logged after it
    again = subprocess.run(
        [sys.executable, "-m", "fedbench", *SLOW, "rounds=60", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert f"resuming {run_dir} from its checkpoint at round {s['checkpoint_round']}" in again.stdout
    done = summary_of(run_dir)
    assert done["status"] == "completed" and done["resumed_from"] == s["checkpoint_round"]
    whole = run_experiment(cfg(*SLOW, "rounds=60"), tmp_path / "whole", callbacks=[])
    assert_frame_equal(metrics_without_clock(run_dir), metrics_without_clock(tmp_path / "whole"))
    assert done["config_hash"] == whole["config_hash"]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_checkpoint_and_record_the_round(tmp_path, signum, code):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # SIGINT must reach Python's handler (a shell may have started pytest with SIGINT ignored)
    proc = _start(run_dir, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_rounds(run_dir, 4, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    name = signal.Signals(signum).name
    assert "Traceback" not in err and f"interrupted by {name} after round" in err
    s = summary_of(run_dir)
    assert s["status"] == "interrupted" and s["signal"] == name
    r = s["rounds_completed"]
    assert r >= 4 and s["checkpoint_round"] == r and f"after round {r} " in s["error"]
    assert len(pd.read_parquet(run_dir / "metrics.parquet")) == r
    assert load_checkpoint(run_dir / CHECKPOINT, s["config_hash"])["round"] == r


def test_a_write_error_fails_the_run_in_one_line_and_keeps_what_was_written(tmp_path):
    """A real write error: the process may write no file larger than 40 kB (RLIMIT_FSIZE, with
    SIGXFSZ ignored, so write() fails with EFBIG as on a full disk). The CNN's checkpoint
    (~80 kB) is the first write that does not fit."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    run_dir = tmp_path / "full"
    run_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "fedbench", *TINY, "model=cnn_small", "rounds=5", "checkpoint_every=2"]
        + [f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"could not write {run_dir / CHECKPOINT}: File too large" in proc.stderr
    s = summary_of(run_dir)
    assert s["status"] == "failed" and s["error"] == f"could not write {run_dir / CHECKPOINT}: File too large"
    assert s["rounds_completed"] == 2 and "traceback" not in s
    assert len(load_metrics(run_dir)) == 2
    assert not list(run_dir.glob(".*.tmp"))  # no half-written temp file left behind


def test_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for key, extra in (("hydra.run.dir", []), ("hydra.sweep.dir", ["-m", "seed=0,1"])):
        proc = subprocess.run(
            [sys.executable, "-m", "fedbench", *extra, *TINY, "rounds=1", f"{key}={blocker}/out/${{now:%H}}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"fedbench: config error: {key}={blocker}/out/${{now:%H}}: {blocker} is a file, not a folder"
        ]
