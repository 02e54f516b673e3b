"""Run outputs: atomic writes, metrics.parquet schema, summary.json, failed/diverged runs, determinism."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from pandas.testing import assert_frame_equal

from fedbench import outputs
from fedbench.config import compose as compose_cfg
from fedbench.outputs import (
    METRIC_COLUMNS,
    WALL_CLOCK_COLUMNS,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    config_hash,
    metrics_frame,
)
from fedbench.runner import run_experiment
from fedbench.simulation import Simulation

# 5 clients, 2 per round, 3 rounds, evaluated after rounds 2 and 3; about a second per run.
TINY = [
    "rounds=3",
    "eval_every=2",
    "num_clients=5",
    "clients_per_round=2",
    "partition=iid",
    "model=logreg",
    "progress=false",
]
INT_COLUMNS = {"round", "num_selected", "uplink_bytes", "downlink_bytes", "uplink_bytes_cum", "downlink_bytes_cum"}
EVAL_COLUMNS = ["test_acc", "test_loss", "client_acc_mean", "client_acc_std", "client_acc_p10", "client_acc_min"]
LOGREG_DIGITS_PARAMS = 8 * 8 * 10 + 10


def tiny(*extra: str):
    keys = {e.split("=")[0] for e in extra}
    return compose_cfg(*[o for o in TINY if o.split("=")[0] not in keys], *extra)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# ---- atomic writes -------------------------------------------------------------------------------
def test_atomic_writes_complete_content(tmp_path):
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01" * 5000)
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01" * 5000
    atomic_write_text(tmp_path / "t.txt", "x" * 10000 + "\nend")
    atomic_write_text(tmp_path / "t.txt", "short")  # overwrite: nothing of the old content is left
    assert (tmp_path / "t.txt").read_text() == "short"
    obj = {"b": [1, 2.5, None], "a": {"path": tmp_path, "nan": "x"}}
    atomic_write_json(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text()
    assert text.endswith("\n")
    assert json.loads(text) == {"a": {"nan": "x", "path": str(tmp_path)}, "b": [1, 2.5, None]}
    df = pd.DataFrame({"round": np.arange(1, 4, dtype=np.int64), "x": [0.5, np.nan, 1.5]})
    atomic_write_parquet(tmp_path / "m.parquet", df)
    assert_frame_equal(pd.read_parquet(tmp_path / "m.parquet"), df)
    assert listing(tmp_path) == ["m.parquet", "o.json", "sub", "t.txt"]
    assert listing(tmp_path / "sub") == ["b.bin"]


def test_atomic_write_file_mode_follows_umask(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    # mkstemp creates 0600 files; the atomic writer must give the same mode as a normal open()
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


class _Unprintable:
    def __str__(self):
        raise RuntimeError("cannot serialise")


def _fail_replace(*args, **kwargs):
    raise OSError("disk on fire")


def _fail_fsync(fd):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "failure",
    ["os.replace", "fsync KeyboardInterrupt", "bad bytes", "json serialisation", "parquet serialisation"],
)
def test_failed_atomic_write_keeps_previous_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"status": "running"})
    before = target.read_bytes()
    if failure == "os.replace":
        monkeypatch.setattr(outputs.os, "replace", _fail_replace)
        with pytest.raises(OSError, match="disk on fire"):
            atomic_write_json(target, {"status": "completed"})
    elif failure == "fsync KeyboardInterrupt":
        monkeypatch.setattr(outputs.os, "fsync", _fail_fsync)
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(target, "{}")
    elif failure == "bad bytes":
        with pytest.raises(TypeError):
            atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    elif failure == "json serialisation":
        with pytest.raises(RuntimeError, match="cannot serialise"):
            atomic_write_json(target, {"status": _Unprintable()})
    else:
        bad = pd.DataFrame({"x": [1, "a", 2.5]})  # mixed object column: pyarrow refuses it
        with pytest.raises(Exception):  # noqa: B017  pyarrow's error type varies across versions
            atomic_write_parquet(target, bad)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert listing(tmp_path) == ["summary.json"], "stray temp file left behind"


def test_metrics_frame_columns_and_dtypes():
    rows = [
        {
            "round": 1,
            "num_selected": 2,
            "train_loss": 1.0,
            "uplink_bytes": 8,
            "downlink_bytes": 8,
            "uplink_bytes_cum": 8,
            "downlink_bytes_cum": 8,
            "train_time_s": 0.1,
            "wall_time_s": 0.2,
            "zz": 1,
        },
        {
            "round": 2,
            "num_selected": 2,
            "train_loss": 0.5,
            "uplink_bytes": 8,
            "downlink_bytes": 8,
            "uplink_bytes_cum": 16,
            "downlink_bytes_cum": 16,
            "train_time_s": 0.1,
            "wall_time_s": 0.4,
            "test_acc": 0.5,
            "test_loss": 2.0,
            "eval_time_s": 0.01,
            "aa": 3.0,
        },
    ]
    df = metrics_frame(rows)
    assert list(df.columns) == METRIC_COLUMNS + ["aa", "zz"]
    for c in df.columns:
        assert df[c].dtype == ("int64" if c in INT_COLUMNS else "float64"), c
    assert np.isnan(df.loc[0, "test_acc"]) and df.loc[1, "test_acc"] == 0.5
    assert df["client_acc_mean"].isna().all()


# ---- a completed run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """The same tiny config run twice, into two directories."""
    cfg = tiny()
    base = tmp_path_factory.mktemp("tiny_pair")
    summaries = [run_experiment(cfg, base / name) for name in ("a", "b")]
    return cfg, [base / "a", base / "b"], summaries


def test_run_writes_all_files(tiny_pair):
    _, (a, _), _ = tiny_pair
    assert listing(a) == [
        "checkpoint.pt",
        "client_acc.csv",
        "config.yaml",
        "curves.png",
        "metrics.parquet",
        "partition.json",
        "summary.json",
    ]
    assert (a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads((a / "partition.json").read_text())
    assert sum(stats["sizes"]) == 1437 and len(stats["sizes"]) == 5
    # the last evaluation's per-client accuracies: one row per client, summarised by the last row
    per_client = pd.read_csv(a / "client_acc.csv")
    assert per_client["client"].tolist() == list(range(5)) and per_client["num_samples"].tolist() == stats["sizes"]
    last = pd.read_parquet(a / "metrics.parquet").iloc[-1]
    assert last["client_acc_mean"] == pytest.approx(per_client["acc"].mean())
    assert last["client_acc_min"] == pytest.approx(per_client["acc"].min())


def test_metrics_parquet_schema(tiny_pair):
    _, (a, _), _ = tiny_pair
    df = pd.read_parquet(a / "metrics.parquet")
    assert list(df.columns[: len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    for c in df.columns:
        assert df[c].dtype == ("int64" if c in INT_COLUMNS else "float64"), f"{c}: {df[c].dtype}"
    assert df["round"].tolist() == [1, 2, 3]
    assert (df["num_selected"] == 2).all()
    assert np.isfinite(df["train_loss"]).all() and np.isfinite(df["train_time_s"]).all()
    assert df["wall_time_s"].is_monotonic_increasing


def test_eval_columns_nan_on_rounds_without_evaluation(tiny_pair):
    _, (a, _), _ = tiny_pair
    df = pd.read_parquet(a / "metrics.parquet").set_index("round")
    for c in [*EVAL_COLUMNS, "eval_time_s"]:
        assert np.isnan(df.loc[1, c]), f"{c} should be NaN on round 1 (eval_every=2)"
        assert np.isfinite(df.loc[2, c]) and np.isfinite(df.loc[3, c]), f"{c}: rounds 2 and 3 are evaluated"
    assert ((df.loc[[2, 3], "test_acc"] >= 0) & (df.loc[[2, 3], "test_acc"] <= 1)).all()
    assert (df.loc[[2, 3], "client_acc_min"] <= df.loc[[2, 3], "client_acc_mean"]).all()


def test_bytes_columns(tiny_pair):
    _, (a, _), (s, _) = tiny_pair
    df = pd.read_parquet(a / "metrics.parquet")
    assert s["num_params"] == LOGREG_DIGITS_PARAMS
    per_round = 2 * LOGREG_DIGITS_PARAMS * 4  # clients_per_round * num_params * fp32
    assert (df["uplink_bytes"] == per_round).all()
    assert (df["downlink_bytes"] == per_round).all()
    assert df["uplink_bytes_cum"].tolist() == df["uplink_bytes"].cumsum().tolist() == [per_round * r for r in (1, 2, 3)]
    assert df["downlink_bytes_cum"].tolist() == df["downlink_bytes"].cumsum().tolist()


def test_summary_json(tiny_pair):
    cfg, (a, b), (returned, _) = tiny_pair
    s = read_summary(a)
    assert json.loads(json.dumps(returned, default=str)) == s
    assert s["status"] == "completed" and s["error"] is None
    assert s["seed"] == 0 and s["rounds_completed"] == 3
    assert re.fullmatch(r"[0-9a-f]{64}", s["config_hash"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert s["config_hash"] == config_hash(resolved)
    assert s["config_hash"] == config_hash(yaml.safe_load((a / "config.yaml").read_text()))
    assert s["config_hash"] == read_summary(b)["config_hash"]
    assert s["config_hash"] != config_hash(OmegaConf.to_container(tiny("seed=1"), resolve=True))
    assert s["versions"]["torch"] == torch.__version__
    assert {"python", "numpy", "fedbench"} <= set(s["versions"])
    assert s["run_dir"] == str(a) and s["wall_time_s"] > 0 and s["started_at"] <= s["finished_at"]

    df = pd.read_parquet(a / "metrics.parquet")
    ev = df.dropna(subset=["test_acc"])
    last = ev.iloc[-1]
    final = s["final"]
    assert final["round"] == 3
    assert final["test_acc"] == last["test_acc"] and final["test_loss"] == last["test_loss"]
    assert final["uplink_bytes_cum"] == last["uplink_bytes_cum"]
    assert not set(WALL_CLOCK_COLUMNS) & set(final)
    best = s["best"]
    assert best["test_acc"] == ev["test_acc"].max()
    assert best["test_acc_round"] == int(ev.loc[ev["test_acc"].idxmax(), "round"])
    assert best["test_loss"] == ev["test_loss"].min()
    assert best["test_loss_round"] == int(ev.loc[ev["test_loss"].idxmin(), "round"])
    assert "sizes" not in s["partition"] and s["partition"]["num_clients"] == 5


def test_same_config_gives_identical_metrics(tiny_pair):
    _, (a, b), (sa, sb) = tiny_pair
    da = pd.read_parquet(a / "metrics.parquet").drop(columns=WALL_CLOCK_COLUMNS)
    db = pd.read_parquet(b / "metrics.parquet").drop(columns=WALL_CLOCK_COLUMNS)
    assert_frame_equal(da, db, check_exact=True)
    assert (a / "partition.json").read_text() == (b / "partition.json").read_text()
    assert (a / "config.yaml").read_text() == (b / "config.yaml").read_text()
    assert sa["final"] == sb["final"] and sa["best"] == sb["best"]


# ---- diverged runs --------------------------------------------------------------------------------
def test_huge_lr_diverges_without_raising(tmp_path):
    summary = run_experiment(tiny("algorithm.lr=1e37"), tmp_path)
    s = read_summary(tmp_path)
    assert summary["status"] == s["status"] == "diverged"
    assert "NaN/Inf" in s["error"]
    assert s["rounds_completed"] < 3
    if s["rounds_completed"]:
        assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == s["rounds_completed"]


def test_divergence_keeps_the_rounds_before_it(tmp_path, monkeypatch):
    server_update = Simulation.server_update

    def nan_in_round_3(self, aggregate):
        new, m = server_update(self, aggregate)
        if self.round + 1 == 3:
            new = torch.full_like(new, math.nan)
        return new, m

    monkeypatch.setattr(Simulation, "server_update", nan_in_round_3)
    summary = run_experiment(tiny("rounds=5", "eval_every=1"), tmp_path)
    assert summary["status"] == "diverged"
    s = read_summary(tmp_path)
    assert s["status"] == "diverged" and "round 3" in s["error"] and "NaN/Inf" in s["error"]
    assert s["rounds_completed"] == 2
    df = pd.read_parquet(tmp_path / "metrics.parquet")
    assert df["round"].tolist() == [1, 2]
    assert np.isfinite(df["test_acc"]).all()
    assert s["final"]["round"] == 2 and s["final"]["test_acc"] == df["test_acc"].iloc[-1]
    assert (tmp_path / "curves.png").is_file()


# ---- failed runs ----------------------------------------------------------------------------------
def test_partition_failure_at_setup_is_recorded(tmp_path):
    cfg = tiny(
        "partition=dirichlet_class",
        "partition.alpha=0.001",
        "partition.min_size=60",
        "num_clients=20",
        "client_metrics=false",
    )
    summary = run_experiment(cfg, tmp_path)
    s = read_summary(tmp_path)
    assert summary["status"] == s["status"] == "failed"
    assert "min_size" in s["error"] and "dirichlet" in s["error"]
    assert s["rounds_completed"] == 0 and s["final"] == {} and s["best"] == {}
    assert listing(tmp_path) == ["config.yaml", "summary.json"]


def test_invalid_config_is_recorded_as_failed(tmp_path):
    summary = run_experiment(OmegaConf.to_container(tiny("partition=dirichlet_class", "partition.alpha=-1")), tmp_path)
    assert summary["status"] == "failed"
    s = read_summary(tmp_path)
    assert s["status"] == "failed" and s["error"].startswith("config error: partition.alpha=")
    assert s["seed"] == 0 and s["rounds_completed"] == 0


def test_exception_in_a_round_is_recorded(tmp_path, monkeypatch):
    step = Simulation.step

    def boom_in_round_2(self):
        if self.round == 1:
            raise RuntimeError("boom")
        return step(self)

    monkeypatch.setattr(Simulation, "step", boom_in_round_2)
    summary = run_experiment(tiny(), tmp_path)
    assert summary["status"] == "failed"
    s = read_summary(tmp_path)
    assert s["status"] == "failed" and s["error"] == "RuntimeError: boom"
    assert "boom_in_round_2" in s["traceback"]
    assert s["rounds_completed"] == 1
    assert pd.read_parquet(tmp_path / "metrics.parquet")["round"].tolist() == [1]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "stray temp file"


def test_keyboard_interrupt_is_recorded_then_reraised(tmp_path, monkeypatch):
    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Simulation, "step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny(), tmp_path)
    s = read_summary(tmp_path)
    assert s["status"] == "interrupted" and "at once" in s["error"] and s["signal"] == "SIGINT"
    assert "finished_at" in s


# ---- callbacks ------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.events: list[tuple] = []

    def on_start(self, sim):
        self.events.append(("start", sim.round))

    def on_round(self, sim, metrics):
        self.events.append(("round", metrics["round"]))

    def on_end(self, sim, summary):
        self.events.append(("end", summary["status"]))


def test_callbacks_see_every_round(tmp_path):
    rec = _Recorder()
    summary = run_experiment(tiny(), tmp_path, callbacks=[rec])
    assert summary["status"] == "completed"
    assert rec.events == [("start", 0), ("round", 1), ("round", 2), ("round", 3), ("end", "completed")]


def test_empty_callback_list_means_no_callbacks(tmp_path, monkeypatch):
    import fedbench.logger

    def no_defaults_expected(*args, **kwargs):
        raise AssertionError("default callbacks built although callbacks=[] was passed")

    monkeypatch.setattr(fedbench.logger, "make_callbacks", no_defaults_expected)
    summary = run_experiment(tiny(), tmp_path, callbacks=[])
    assert summary["status"] == "completed", summary["error"]


def test_config_hash_ignores_presentation_keys():
    base = {"seed": 0, "rounds": 3, "progress": True, "logger": {"name": "none"}}
    quiet = {**base, "progress": False, "logger": {"name": "wandb"}}
    assert config_hash(base) == config_hash(quiet)
    assert config_hash(base) != config_hash({**base, "rounds": 4})


def test_load_runs_joins_runs_with_their_config(tiny_pair):
    from fedbench.outputs import load_runs

    _, (a, b), _ = tiny_pair
    df = load_runs(a.parent)
    assert sorted(df["run_dir"].unique()) == sorted([str(a), str(b)])
    assert len(df) == 6 and set(df["status"]) == {"completed"}
    assert (df["partition.name"] == "iid").all() and (df["seed"] == 0).all()
    assert df.groupby("run_dir")["round"].apply(list).tolist() == [[1, 2, 3], [1, 2, 3]]
    with pytest.raises(FileNotFoundError):
        load_runs(a.parent / "nothing-here")
