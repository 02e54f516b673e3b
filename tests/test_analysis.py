"""fedbench.analysis: load_runs, varying_keys and summarize on hand-built run directories whose
statistics are worked out by hand below."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import base_config, dead_pid, write_run

from fedbench.analysis import (
    STATUSES,
    ci95_halfwidth,
    find_run_dirs,
    fixed_config,
    flatten_config,
    load_runs,
    run_finals,
    summarize,
    varying_keys,
)

T_975_DF1 = 12.706204736174707  # scipy.stats.t.ppf(0.975, 1)
T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)

# alpha=0.1: three completed seeds, evaluated on rounds 2 and 4
ACC_01 = {0: [None, 0.5, None, 0.6], 1: [None, 0.6, None, 0.7], 2: [None, 0.95, None, 0.9]}
# alpha=1.0: two completed seeds
ACC_1 = {0: [None, 0.7, None, 0.8], 1: [None, 0.8, None, 0.9]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep folder: 5 completed runs over alpha x seed, plus one run of every other status (a
    failed one without rows whose config.yaml has only the user's keys, a stale one, a diverged
    one, an interrupted one), and folders that must be ignored (.hydra/, .previous/)."""
    root = tmp_path_factory.mktemp("sweep")
    job = 0

    def run(alpha, seed, **kw):
        nonlocal job
        if kw.pop("user_keys_only", False):  # failed before its config was resolved
            cfg = {"partition": {"alpha": alpha}, "seed": seed}
        else:
            cfg = base_config(**{"partition.alpha": alpha, "seed": seed})
            # keys that never change results vary too: varying_keys must not report them
            cfg["progress"] = bool(job % 2)
            cfg["logger"]["name"] = "wandb" if job % 3 == 0 else "none"
        d = write_run(root / f"{job}_partition.alpha={alpha},seed={seed}", cfg, **kw)
        job += 1
        return d

    for seed, acc in ACC_01.items():
        run(0.1, seed, acc=acc)
    for seed, acc in ACC_1.items():
        run(1.0, seed, acc=acc)
    run(0.1, 3, status="failed", user_keys_only=True, error="ValueError: boom")
    run(0.1, 4, status="running", pid=dead_pid(), acc=[None, 0.99])  # killed: stale, must not count
    run(0.1, 5, status="diverged", acc=[None, 0.2], error="loss is nan")
    run(1.0, 2, status="interrupted", acc=[None, 0.99, None], resumed_from=1)
    # clutter: Hydra's folder, an older run moved aside, a folder without runs
    (root / "0_partition.alpha=0.1,seed=0" / ".hydra").mkdir()
    write_run(root / "1_partition.alpha=0.1,seed=1" / ".previous" / "old", base_config(), acc=[0.1])
    (root / "empty").mkdir()
    return root


@pytest.fixture(scope="module")
def df(sweep) -> pd.DataFrame:
    with pytest.warns(UserWarning, match=r"load_runs: 1 of 9 runs have no metric rows \(1 failed\)"):
        return load_runs(sweep)


# ---- load_runs -----------------------------------------------------------------------------------
def test_load_runs_one_row_per_run_and_round(df, sweep):
    assert df["run_dir"].nunique() == 9
    assert not df["run_dir"].str.contains(".previous", regex=False).any()
    # natural order of the job folders, rounds in order within each run
    assert df.drop_duplicates("run_dir")["run_dir"].map(lambda p: int(Path(p).name.split("_")[0])).tolist() == list(
        range(9)
    )
    counts = df.groupby("run_dir", sort=False).size().tolist()
    assert counts == [4, 4, 4, 4, 4, 1, 2, 2, 3]
    assert df["round"].dtype == "Int64"
    first = df[df["run_dir"] == str(sweep / "0_partition.alpha=0.1,seed=0")]
    assert first["round"].tolist() == [1, 2, 3, 4]
    assert first["test_acc"].tolist()[1::2] == [0.5, 0.6] and first["test_acc"].isna().tolist()[::2] == [True, True]
    assert first["uplink_bytes_cum"].tolist() == [1000, 2000, 3000, 4000]


def test_load_runs_dotted_config_columns(df):
    row = df.iloc[0]
    assert row["partition.alpha"] == 0.1 and row["partition.name"] == "dirichlet_class"
    assert row["algorithm.lr"] == 0.05 and row["seed"] == 0 and row["dataset.test_fraction"] == 0.2
    assert row["model.hidden"] == "[32, 16]"  # lists become strings
    assert row["logger.name"] == "wandb"
    assert row["config_hash"] == "hash-0_partition.alpha=0.1,seed=0"
    assert row["partition_stats.num_clients"] == 5 and row["partition_stats.mean_label_entropy"] == 1.5
    assert pd.isna(row["resumed_from"]) and pd.isna(row["error"])
    assert set(df.attrs["config_columns"]) >= {"partition.alpha", "seed", "algorithm.lr", "progress"}
    assert "status" not in df.attrs["config_columns"] and "round" not in df.attrs["config_columns"]


def test_load_runs_statuses_and_runs_without_metrics(df):
    statuses = df.drop_duplicates("run_dir")["status"].value_counts().to_dict()
    assert statuses == {"completed": 5, "failed": 1, "stale": 1, "diverged": 1, "interrupted": 1}
    assert df.attrs["runs_without_metrics"] == {"failed": 1}
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1 and pd.isna(failed["round"].iloc[0]) and pd.isna(failed["test_acc"].iloc[0])
    assert failed["error"].iloc[0] == "ValueError: boom" and failed["seed"].iloc[0] == 3
    assert failed["partition.alpha"].iloc[0] == 0.1 and pd.isna(failed["algorithm.lr"].iloc[0])
    assert failed["rounds_completed"].iloc[0] == 0
    resumed = df.loc[df["status"] == "interrupted", "resumed_from"]
    assert resumed.dtype == "Int64" and resumed.tolist() == [1, 1, 1]


def test_load_runs_without_metrics_and_errors(sweep, tmp_path):
    runs = load_runs(sweep, metrics=False)
    assert len(runs) == 9 and "round" not in runs.columns and runs["run_dir"].is_unique
    assert varying_keys(runs) == ["partition.alpha"]  # the failed run's missing keys: rounds_completed == 0
    # a run folder and the sweep that holds it: each run once
    with pytest.warns(UserWarning):
        both = load_runs(sweep / "0_partition.alpha=0.1,seed=0", sweep)
    assert both["run_dir"].nunique() == 9
    with pytest.warns(UserWarning):
        assert load_runs([sweep / "0_partition.alpha=0.1,seed=0", sweep]).equals(both)  # a list works too
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_runs(sweep / "nothing-here")
    (tmp_path / "no_runs" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no_runs"):
        load_runs(tmp_path / "no_runs")


def test_load_runs_all_with_metrics_warns_nothing(tmp_path):
    write_run(tmp_path / "a", base_config(), acc=[0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = load_runs(tmp_path / "a")
    assert df.attrs["runs_without_metrics"] == {} and df["round"].tolist() == [1]


def test_load_runs_live_run_reads_metrics_log(tmp_path):
    """A running run (this process) has only metrics.jsonl; a run whose config says 1e-3 reads a float."""
    cfg = base_config(**{"algorithm.lr": "LR"})
    d = write_run(tmp_path / "live", cfg, status="running", acc=[None, 0.4, 0.5], pid=os.getpid(), jsonl=True)
    (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("LR", "1e-3"))
    df = load_runs(tmp_path)
    assert df["status"].unique().tolist() == ["running"]
    assert df["round"].tolist() == [1, 2, 3] and df["test_acc"].tolist()[1:] == [0.4, 0.5]
    assert df["algorithm.lr"].iloc[0] == 0.001


def test_load_runs_missing_or_unreadable_config_and_summary(tmp_path):
    d = write_run(tmp_path / "a", base_config(), acc=[0.5])
    (d / "config.yaml").write_text("{not: [valid")
    b = write_run(tmp_path / "b", base_config(seed=1), acc=[0.6])
    (b / "summary.json").write_text('{"status": "compl')
    write_run(tmp_path / "c", None, status="failed", error="config error: no such key", seed=7)
    with pytest.warns(UserWarning, match="1 failed"):
        df = load_runs(tmp_path)
    assert df["status"].tolist() == ["completed", "unknown", "failed"]
    assert pd.isna(df["partition.alpha"].iloc[0])  # unreadable config: no config columns, the run is kept
    assert "unreadable summary.json" in df["error"].iloc[1] and df["seed"].iloc[1] == 1
    # no config.yaml: status, error and the seed (from summary.json) still come through
    assert df["error"].iloc[2] == "config error: no such key" and df["seed"].iloc[2] == 7


def test_find_run_dirs_skips_dot_folders_below_root(sweep):
    dirs = find_run_dirs(sweep)
    assert len(dirs) == 9 and all(not any(p.startswith(".") for p in d.relative_to(sweep).parts) for d in dirs)
    old = sweep / "1_partition.alpha=0.1,seed=1" / ".previous"
    assert find_run_dirs(old) == [old / "old"]  # named explicitly, it is read


def test_flatten_config():
    assert flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None, "f": {}}) == {
        "a.b": 1,
        "a.c.d": "[1, 2]",
        "e": None,
        "f": "{}",
    }


# ---- varying_keys --------------------------------------------------------------------------------
def test_varying_keys_excludes_seed_and_neutral_keys(df):
    # seed, progress and logger.name vary too; the failed run's config lacks every key but the
    # user's: that is not a different value, since it never trained with a resolved config
    assert varying_keys(df) == ["partition.alpha"]
    assert varying_keys(df[df["status"] != "failed"]) == ["partition.alpha"]
    fixed = fixed_config(df)
    assert fixed["algorithm.lr"] == 0.05 and fixed["partition.name"] == "dirichlet_class"
    assert "partition.alpha" not in fixed and "seed" not in fixed


def test_varying_keys_key_missing_in_some_runs(tmp_path):
    iid = base_config(**{"partition.name": "iid"})
    del iid["partition"]["alpha"]  # an iid partition has no alpha: NaN in that run, and it varies
    write_run(tmp_path / "a", iid, acc=[0.5])
    write_run(tmp_path / "b", base_config(), acc=[0.5])
    df = load_runs(tmp_path)
    assert varying_keys(df) == ["partition.name", "partition.alpha"]
    # without attrs (e.g. after a merge), the config columns are guessed from their names
    df.attrs = {}
    assert varying_keys(df) == ["partition.name", "partition.alpha"]


# ---- summarize -----------------------------------------------------------------------------------
def _std(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_summarize_known_values(df):
    s = summarize(df, by="partition.alpha", target=0.65).set_index("partition.alpha")
    assert s.index.tolist() == [0.1, 1.0]
    a = s.loc[0.1]
    # counts: every status of the group, the failed run without rows and the stale run included
    assert a["n_runs"] == 6 and a["n_completed"] == 3 and a["n_failed"] == 1 and a["n_stale"] == 1
    assert a["n_diverged"] == 1 and a["n_interrupted"] == 0 and a["n_running"] == 0
    assert a["n_seeds"] == 3
    finals = [0.6, 0.7, 0.9]
    assert a["final_mean"] == pytest.approx(sum(finals) / 3)
    assert a["final_std"] == pytest.approx(_std(finals))
    assert a["final_std"] == pytest.approx(0.15275252316519466)
    assert a["final_ci95"] == pytest.approx(T_975_DF2 * _std(finals) / math.sqrt(3))
    assert a["best_mean"] == pytest.approx((0.6 + 0.7 + 0.95) / 3)
    # target 0.65: seed 0 never (0.5, 0.6), seed 1 at round 4, seed 2 at round 2
    assert a["n_reached_target"] == 2 and a["rounds_to_target_mean"] == pytest.approx(3.0)
    b = s.loc[1.0]
    assert b["n_runs"] == 3 and b["n_completed"] == 2 and b["n_interrupted"] == 1 and b["n_seeds"] == 2
    assert b["final_mean"] == pytest.approx(0.85)
    assert b["final_std"] == pytest.approx(math.sqrt(0.005))
    assert b["final_ci95"] == pytest.approx(T_975_DF1 * math.sqrt(0.005) / math.sqrt(2))
    assert b["n_reached_target"] == 2 and b["rounds_to_target_mean"] == pytest.approx(2.0)
    assert s["n_runs"].sum() == df["run_dir"].nunique()  # nothing dropped
    assert {f"n_{st}" for st in STATUSES} <= set(s.columns)


def test_summarize_groups_keys_of_mixed_types_in_order(df):
    # a key with numbers and strings (e.g. alpha and "iid" from two sweeps) and a missing value
    alpha = df["partition.alpha"].astype(object)
    alpha[df["status"] == "failed"] = np.nan
    alpha[(df["partition.alpha"] == 1.0).to_numpy()] = "iid"
    s = summarize(df.assign(**{"partition.alpha": alpha}), by="partition.alpha")
    assert s["partition.alpha"].tolist()[:2] == [0.1, "iid"] and pd.isna(s["partition.alpha"].iloc[2])
    assert s["n_runs"].tolist() == [5, 3, 1] and s["final_mean"].iloc[1] == pytest.approx(0.85)


def test_summarize_last_k_loss_and_all_statuses(df):
    s = summarize(df, by=["partition.alpha"], last_k=2).set_index("partition.alpha")
    assert s.loc[0.1, "final_mean"] == pytest.approx(((0.5 + 0.6) / 2 + (0.6 + 0.7) / 2 + (0.95 + 0.9) / 2) / 3)
    assert "rounds_to_target_mean" not in s.columns
    # a loss: best is the minimum, the target is reached going down (test_loss = 1 - test_acc here)
    lo = summarize(df, by="partition.alpha", metric="test_loss", target=0.35).set_index("partition.alpha")
    assert lo.loc[0.1, "best_mean"] == pytest.approx((0.4 + 0.3 + 0.05) / 3)
    assert lo.loc[0.1, "final_mean"] == pytest.approx((0.4 + 0.3 + 0.1) / 3)
    assert lo.loc[0.1, "n_reached_target"] == 2 and lo.loc[0.1, "rounds_to_target_mean"] == pytest.approx(3.0)
    # every status with a final value: adds the stale (0.99) and the diverged (0.2) runs
    every = summarize(df, by="partition.alpha", statuses=None).set_index("partition.alpha")
    assert every.loc[0.1, "n_seeds"] == 5
    assert every.loc[0.1, "final_mean"] == pytest.approx((0.6 + 0.7 + 0.9 + 0.99 + 0.2) / 5)


def test_summarize_default_groups_and_nan_keys(df):
    # default by = varying_keys
    assert summarize(df).equals(summarize(df, by=["partition.alpha"]))
    # a run whose config lacks the key forms its own (NaN) group: counted, not dropped
    nan_alpha = df.assign(**{"partition.alpha": df["partition.alpha"].where(df["status"] != "failed")})
    s = summarize(nan_alpha, by="partition.alpha")
    assert len(s) == 3 and s["n_runs"].tolist() == [5, 3, 1] and s["n_failed"].tolist() == [0, 0, 1]
    assert np.isnan(s["partition.alpha"].iloc[2]) and s["n_seeds"].iloc[2] == 0 and np.isnan(s["final_mean"].iloc[2])
    pooled = summarize(df, by=[])
    assert len(pooled) == 1 and pooled["n_runs"].iloc[0] == 9 and pooled["n_seeds"].iloc[0] == 5
    one = summarize(df[df["run_dir"].str.contains("alpha=1.0,seed=0")], by=[])
    assert one["n_seeds"].iloc[0] == 1 and np.isnan(one["final_std"].iloc[0]) and np.isnan(one["final_ci95"].iloc[0])


def test_run_finals_and_ci():
    assert math.isnan(ci95_halfwidth(0.1, 1))
    assert ci95_halfwidth(1.0, 3) == pytest.approx(T_975_DF2 / math.sqrt(3))
    with pytest.raises(ValueError, match="last_k"):
        run_finals(pd.DataFrame({"run_dir": [], "status": [], "round": [], "test_acc": []}), last_k=0)
