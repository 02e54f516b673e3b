"""Known-answer tests for fedbench.analysis written against the survivors of its first mutation run
(docs/testing.md); every expected value is worked out by hand in a comment or computed from the
definition with numpy/scipy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import base_config, dead_pid, write_run

from fedbench.analysis import fixed_config, load_runs, summarize, varying_keys


def _iid() -> dict:
    cfg = base_config(**{"partition.name": "iid"})
    del cfg["partition"]["alpha"]  # an iid partition has no alpha
    return cfg


@pytest.fixture
def mixed(tmp_path: Path) -> dict[str, Path]:
    """a: completed, alpha 0.5, one round; b: completed iid (no alpha), one round; c: failed before
    its first round, config with the user's keys only, rounds_completed null; d: a killed run
    (stale) of an iid partition with two metric rows but rounds_completed null (not ended)."""
    return {
        "a": write_run(tmp_path / "a", base_config(**{"partition.alpha": 0.5}), acc=[0.5]),
        "b": write_run(tmp_path / "b", _iid(), acc=[0.6]),
        "c": write_run(
            tmp_path / "c", {"partition": {"alpha": 0.5}, "seed": 2}, status="failed", rounds_completed=None
        ),
        "d": write_run(
            tmp_path / "d", _iid(), status="running", pid=dead_pid(), acc=[0.4, 0.45], rounds_completed=None
        ),
    }


def test_varying_keys_a_run_with_metric_rows_trained_whatever_rounds_completed_says(mixed):
    with pytest.warns(UserWarning, match="1 failed"):
        df = load_runs(mixed["a"], mixed["c"], mixed["d"])
    assert df.drop_duplicates("run_dir")["status"].tolist() == ["completed", "failed", "stale"]
    # d has metric rows, so it trained with a full config: its missing alpha is a value (NaN != 0.5);
    # c has none: its missing keys are not values. partition.name: dirichlet_class, iid -> varies.
    assert varying_keys(df) == ["partition.name", "partition.alpha"]


def test_varying_keys_without_metrics_reads_rounds_completed(mixed):
    # one row per run, no "round" column: a run trained iff rounds_completed > 0 (null -> 0).
    # a, b: 1 round each -> b's missing alpha counts (0.5, NaN); c: null -> its NaNs do not count.
    runs = load_runs(mixed["a"], mixed["b"], mixed["c"], metrics=False)
    assert "round" not in runs.columns and runs["rounds_completed"].tolist()[:2] == [1, 1]
    assert varying_keys(runs) == ["partition.name", "partition.alpha"]
    # d (stale, rounds_completed null) does not count either: alpha is 0.5 in a and c only
    runs = load_runs(mixed["a"], mixed["c"], mixed["d"], metrics=False)
    assert varying_keys(runs) == ["partition.name"]
    # fixed keys: one value across the runs that count (c's missing keys are ignored)
    fixed = fixed_config(runs)
    assert fixed["model.name"] == "mlp" and fixed["partition.alpha"] == 0.5 and "partition.name" not in fixed


def test_varying_keys_without_round_or_rounds_completed_every_missing_value_counts():
    # a frame built by hand (no bookkeeping columns): every run counts, so NaN is a second value
    df = pd.DataFrame({"run_dir": ["r0", "r1", "r2"], "partition.alpha": [0.5, np.nan, 0.5], "lr": [0.1, 0.1, 0.1]})
    assert varying_keys(df) == ["partition.alpha"]
    assert fixed_config(df) == {"lr": 0.1}


def test_fixed_config_of_one_run_and_of_a_null_key(tmp_path):
    cfg = base_config(**{"attack": None, "partition.alpha": 0.3})
    write_run(tmp_path / "only", cfg, acc=[0.5])
    fixed = fixed_config(load_runs(tmp_path))
    # one run: every config key is fixed, with its own value; a null key is fixed at None
    assert fixed["partition.alpha"] == 0.3 and fixed["algorithm.lr"] == 0.05 and fixed["seed"] == 0
    assert "attack" in fixed and fixed["attack"] is None
    assert fixed["model.hidden"] == "[32, 16]"


def test_summarize_groups_sorted_by_key_not_by_discovery(tmp_path):
    # discovered in the order alpha 1.0, 0.1, 0.5 (folder names); rows come out sorted by alpha
    for i, (alpha, acc) in enumerate([(1.0, 0.9), (0.1, 0.5), (0.5, 0.7), (0.1, 0.6)]):
        write_run(tmp_path / f"{i}_run", base_config(**{"partition.alpha": alpha, "seed": i}), acc=[acc])
    s = summarize(load_runs(tmp_path), by="partition.alpha")
    assert s["partition.alpha"].tolist() == [0.1, 0.5, 1.0]
    assert s["n_runs"].tolist() == [2, 1, 1]
    assert s["final_mean"].tolist() == pytest.approx([0.55, 0.7, 0.9])  # (0.5 + 0.6) / 2 = 0.55
    # counts are integers, not floats
    assert {c: str(s[c].dtype) for c in s.columns if c.startswith("n_")} == {
        c: "int64" for c in s.columns if c.startswith("n_")
    }


def _ci95(xs: list[float]) -> float:
    """Half-width of the 95% Student-t interval, from the definition (scipy's t quantile)."""
    from scipy import stats

    x = np.asarray(xs, dtype=np.float64)
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def test_run_finals_defaults_are_test_acc_and_the_last_evaluated_round(tmp_path):
    from fedbench.analysis import run_finals

    write_run(tmp_path / "a", base_config(), acc=[None, 0.5, 0.7, None, 0.6])
    write_run(tmp_path / "b", base_config(seed=1), acc=[0.2, 0.4])
    rf = run_finals(load_runs(tmp_path))
    # test_acc by default; last_k=1: the last evaluated round (a: round 5 -> 0.6, round 4 not evaluated)
    assert rf["run_dir"].tolist() == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert rf["final"].tolist() == pytest.approx([0.6, 0.4])
    assert rf["best"].tolist() == pytest.approx([0.7, 0.4])
    assert rf["rounds_to_target"].isna().all()  # no target
    with pytest.raises(KeyError) as err:
        run_finals(load_runs(tmp_path), metric="acc")
    assert err.value.args == ("no metric column 'acc'",)


def test_summarize_column_order_and_attrs(tmp_path):
    write_run(tmp_path / "a", base_config(), acc=[0.5, 0.7])
    write_run(tmp_path / "b", base_config(seed=1), acc=[0.6, 0.8])
    s = summarize(load_runs(tmp_path), by=["partition.alpha"], last_k=2, target=0.75)
    assert s.columns.tolist() == [
        "partition.alpha",
        "n_runs",
        *(f"n_{st}" for st in ("completed", "diverged", "failed", "interrupted", "stale", "running")),
        "n_seeds",
        "final_mean",
        "final_std",
        "final_ci95",
        "best_mean",
        "n_reached_target",
        "rounds_to_target_mean",
    ]
    assert s.attrs == {"metric": "test_acc", "by": ["partition.alpha"], "last_k": 2, "target": 0.75}
    # finals (last 2 rounds): a (0.5 + 0.7) / 2 = 0.6, b (0.6 + 0.8) / 2 = 0.7; only b reaches 0.75 (round 2)
    row = s.iloc[0]
    assert row["final_mean"] == pytest.approx(0.65) and row["final_ci95"] == pytest.approx(_ci95([0.6, 0.7]))
    assert row["n_reached_target"] == 1 and row["rounds_to_target_mean"] == 2.0


def test_run_finals_without_target_is_float_nan_and_a_loss_target_is_reached_at_equality(tmp_path):
    from fedbench.analysis import run_finals

    # test_loss 0.5, 0.3, 0.25: with target 0.3 the loss reaches it at round 2 (0.3 <= 0.3), not 3
    write_run(tmp_path / "a", base_config(), acc=[0.5, 0.7, 0.75], loss=[0.5, 0.3, 0.25])
    df = load_runs(tmp_path)
    rf = run_finals(df, metric="test_loss", target=0.3)
    assert rf["rounds_to_target"].tolist() == [2.0]
    assert rf["best"].tolist() == [0.25] and rf["final"].tolist() == [0.25]
    # no target: the column is NaN as a float (np.isnan on an object column of None raises)
    none = run_finals(df, metric="test_loss")
    assert none["rounds_to_target"].dtype == np.float64 and np.isnan(none["rounds_to_target"].to_numpy()).all()


def test_ci95_halfwidth_known_values_and_non_finite_std():
    from scipy import stats

    from fedbench.analysis import ci95_halfwidth

    # t_{0.975, 4} * 0.2 / sqrt(5)
    assert ci95_halfwidth(0.2, 5) == pytest.approx(stats.t.ppf(0.975, 4) * 0.2 / math.sqrt(5))
    assert ci95_halfwidth(0.2, 5) == pytest.approx(_ci95([0.0, 0.0, 0.0, 0.0, 0.2 * math.sqrt(5)]))
    # a non-finite std gives NaN, not inf * t
    assert math.isnan(ci95_halfwidth(math.inf, 3))
    assert math.isnan(ci95_halfwidth(math.nan, 3))
    assert math.isnan(ci95_halfwidth(0.0, 1)) and math.isnan(ci95_halfwidth(0.0, 0))


def test_config_columns_come_from_attrs_then_from_names(tmp_path):
    for i, alpha in enumerate([0.1, 0.5]):
        write_run(tmp_path / f"{i}", base_config(**{"partition.alpha": alpha}), acc=[0.5])
    df = load_runs(tmp_path)
    df["note"] = ["first", "second"]  # a column the user added: not in attrs["config_columns"]
    assert varying_keys(df) == ["partition.alpha"]
    # without config_columns in attrs, a column named in attrs["metric_columns"] is not config either
    hand = pd.DataFrame({"run_dir": ["r0", "r1"], "attack_success": [0.1, 0.9], "partition.alpha": [0.1, 0.5]})
    hand.attrs = {"metric_columns": ["attack_success"]}
    assert varying_keys(hand) == ["partition.alpha"]


def test_varying_keys_and_fixed_config_of_a_frame_without_run_dir():
    # one row per run, no run_dir column: every row is a run
    df = pd.DataFrame({"partition.alpha": [0.5, 0.1], "algorithm.lr": [0.1, 0.1]})
    assert varying_keys(df) == ["partition.alpha"]
    assert fixed_config(df) == {"algorithm.lr": 0.1}


def test_a_summary_or_config_that_is_not_a_mapping(tmp_path):
    a = write_run(tmp_path / "a", base_config(), acc=[0.5])
    (a / "summary.json").write_text("[1, 2]")  # valid JSON, not an object
    b = write_run(tmp_path / "b", base_config(seed=1), acc=[0.6])
    (b / "config.yaml").write_text("- just\n- a list\n")  # valid YAML, not a mapping
    df = load_runs(tmp_path)
    runs = df.drop_duplicates("run_dir").set_index("run_dir")
    assert runs.loc[str(a), "status"] == "unknown"
    assert runs.loc[str(a), "error"] == "unreadable summary.json: not a JSON object"
    # b: the run is kept with its summary; its config gives no columns (the seed comes from summary.json)
    assert runs.loc[str(b), "status"] == "completed" and runs.loc[str(b), "seed"] == 1
    assert pd.isna(runs.loc[str(b), "partition.alpha"]) and runs.loc[str(a), "partition.alpha"] == 0.5


def test_load_runs_reads_a_run_named_twice_once(tmp_path):
    a = write_run(tmp_path / "a", base_config(), acc=[0.5, 0.6])
    write_run(tmp_path / "b", base_config(seed=1), acc=[0.7])
    # a named alone, inside its parent, and again: 2 runs, 3 metric rows (2 + 1), each once
    assert len(load_runs(a, tmp_path, a, metrics=False)) == 2
    df = load_runs(a, tmp_path)
    assert df["run_dir"].tolist() == [str(a), str(a), str(tmp_path / "b")]


def test_load_runs_error_messages(tmp_path):
    with pytest.raises(TypeError, match=r"^load_runs needs at least one path$"):
        load_runs()
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_runs(tmp_path / "x", tmp_path / "y")
    assert str(err.value) == f"no runs (folders holding summary.json) under {tmp_path / 'x'}, {tmp_path / 'y'}"


def test_load_runs_seed_from_config_before_summary_and_integer_columns(tmp_path):
    import json

    a = write_run(tmp_path / "a", base_config(seed=3), acc=[0.5, 0.6])
    summary = json.loads((a / "summary.json").read_text())
    (a / "summary.json").write_text(json.dumps(summary | {"seed": 5}))
    write_run(tmp_path / "b", None, status="failed", seed=7)  # no config.yaml: the seed from summary.json
    with pytest.warns(UserWarning, match="1 failed"):
        df = load_runs(tmp_path)
    assert df["seed"].tolist() == [3, 3, 7]  # config.yaml's seed wins over summary.json's
    runs = load_runs(tmp_path, metrics=False)
    # rounds_completed 2 and 0, resumed_from null in both: nullable integers
    assert str(runs["rounds_completed"].dtype) == "Int64" and runs["rounds_completed"].tolist() == [2, 0]
    assert str(runs["resumed_from"].dtype) == "Int64" and runs["resumed_from"].isna().all()


def test_load_runs_attrs_without_metrics_and_runs_that_all_lack_metrics(tmp_path):
    write_run(tmp_path / "a", {"seed": 0, "rounds": 3}, status="failed", error="boom")
    write_run(tmp_path / "b", {"seed": 1, "rounds": 3}, status="interrupted")
    runs = load_runs(tmp_path, metrics=False)
    assert runs.attrs == {"config_columns": ["seed", "rounds"], "metric_columns": [], "runs_without_metrics": {}}
    # no run has a metric row: one all-NA row per run, the counts by status in attrs
    with pytest.warns(UserWarning) as rec:
        df = load_runs(tmp_path)
    assert [str(w.message) for w in rec] == [
        "load_runs: 2 of 2 runs have no metric rows (1 failed, 1 interrupted); each is one row with NA metrics"
    ]
    # stacklevel=2: the warning points at the caller's line, not at analysis.py (under mutmut, the
    # trampoline's frames sit in between, so only "not analysis.py" can be checked in both trees)
    assert Path(rec[0].filename).name != "analysis.py"
    assert df["run_dir"].tolist() == [str(tmp_path / "a"), str(tmp_path / "b")] and df["round"].isna().all()
    assert df.attrs["runs_without_metrics"] == {"failed": 1, "interrupted": 1}


def test_load_runs_a_lone_run_without_metrics(tmp_path):
    write_run(tmp_path / "only", {"seed": 0}, status="failed", error="boom")
    with pytest.warns(UserWarning, match="1 failed"):
        df = load_runs(tmp_path)
    assert len(df) == 1 and df["round"].isna().all() and df["status"].tolist() == ["failed"]


def test_load_runs_keeps_rounds_in_order_in_long_runs(tmp_path):
    # a run without rows first, then two runs of 40 rounds: rows must stay run by run, round by round
    # (enough rows that an unstable sort of the run index would shuffle rounds within a run)
    write_run(tmp_path / "0_failed", {"seed": 9}, status="failed")
    for i in (1, 2):
        write_run(tmp_path / f"{i}_run", base_config(seed=i), acc=[0.01 * r for r in range(1, 41)])
    with pytest.warns(UserWarning, match="1 failed"):
        df = load_runs(tmp_path)
    assert (
        df["run_dir"].tolist()
        == [str(tmp_path / "0_failed")] + [str(tmp_path / "1_run")] * 40 + [str(tmp_path / "2_run")] * 40
    )
    assert pd.isna(df["round"].iloc[0]) and df["round"].iloc[1:].tolist() == list(range(1, 41)) * 2
    assert df["test_acc"].iloc[1:41].tolist() == pytest.approx([0.01 * r for r in range(1, 41)])


def test_load_runs_config_key_named_like_a_metric_column(tmp_path):
    write_run(tmp_path / "a", base_config(round=99), acc=[0.5, 0.6])
    df = load_runs(tmp_path)
    assert df["round"].tolist() == [1, 2] and df["config.round"].tolist() == [99, 99]
    assert "config.round" in df.attrs["config_columns"] and "round" not in df.attrs["config_columns"]
    assert "round" in df.attrs["metric_columns"]


def test_sweep_jobs_in_natural_order(tmp_path):
    # job 2 before job 10 (a string sort would put "10_..." first)
    for job in (10, 2, 1):
        write_run(tmp_path / f"{job}_seed={job}", base_config(seed=job), acc=[0.5])
    df = load_runs(tmp_path, metrics=False)
    assert df["seed"].tolist() == [1, 2, 10]
