"""fedbench-report: figures, tables and report.md from hand-built sweeps, bad input, and one small
real sweep run through run_experiment."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from fake_runs import base_config, dead_pid, write_run

from fedbench.analysis import load_runs, summarize
from fedbench.report import fmt, is_numeric_axis, main, markdown_table, spans_decades, status_counts, t_band

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF"
T_975_DF1 = 12.706204736174707  # scipy.stats.t.ppf(0.975, 1)


def check_figure(out: Path, stem: str) -> None:
    assert (out / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC, stem
    assert (out / f"{stem}.pdf").read_bytes()[:4] == PDF_MAGIC, stem


def check_csv_matches(out: Path, expected: pd.DataFrame) -> None:
    csv = pd.read_csv(out / "summary.csv")
    assert list(csv.columns) == list(expected.columns)
    for col in expected.columns:
        want, got = expected[col].tolist(), csv[col].tolist()
        if pd.api.types.is_numeric_dtype(expected[col]):
            assert got == pytest.approx(want, rel=1e-12, nan_ok=True), col
        else:
            assert [str(g) for g in got] == [str(w) for w in want], col


@pytest.fixture(scope="module")
def robust_sweep(tmp_path_factory) -> Path:
    """aggregator x attack x lr x 2 seeds, completed, plus a failed run without rows and a stale one."""
    root = tmp_path_factory.mktemp("robust")
    job = 0
    for agg in ("mean", "median"):
        for attack in ("none", "signflip"):
            for lr in (0.001, 0.1, 1.0):
                for seed in (0, 1):
                    acc = [None, 0.5 + 0.1 * seed + 0.2 * lr, None, 0.6 + 0.1 * seed + 0.3 * lr]
                    cfg = base_config(
                        **{"aggregator.name": agg, "attack.name": attack, "algorithm.lr": lr, "seed": seed}
                    )
                    write_run(root / f"{job}_run", cfg, acc=acc)
                    job += 1
    cfg = base_config(**{"aggregator.name": "mean", "attack.name": "none", "algorithm.lr": 0.1, "seed": 2})
    write_run(root / f"{job}_run", cfg, status="failed", error="RuntimeError: out of memory")
    cfg = base_config(**{"aggregator.name": "mean", "attack.name": "none", "algorithm.lr": 0.1, "seed": 3})
    write_run(root / f"{job + 1}_run", cfg, status="running", pid=dead_pid(), acc=[None, 0.9])
    return root


def test_report_writes_figures_tables_and_counts(robust_sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(robust_sweep), "-o", str(out), "--target", "0.75"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    for stem in ("convergence", "final_vs_algorithm.lr", "test_acc_vs_uplink", "heatmap"):
        check_figure(out, stem)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "stray temp files"
    text = (out / "report.md").read_text()
    for part in (
        "| completed | 24 |",
        "| failed | 1 |",
        "| stale | 1 |",
        "| diverged | 0 |",
        "| interrupted | 0 |",
        "| total | 26 |",
        "1 run has no metric rows (1 failed)",
        "`algorithm.lr` (numeric): 0.001, 0.1, 1",
        "`aggregator.name` (categorical): mean, median",
        "`attack.name` (categorical): none, signflip",
        "![convergence](convergence.png)",
        "![heatmap](heatmap.png)",
        "RuntimeError: out of memory",
        "| dataset.name | digits |",
        "first round with test_acc >= 0.75",
    ):
        assert part in text, part
    assert "| algorithm.lr |" not in text.split("## Fixed config")[1]
    with pytest.warns(UserWarning):
        df = load_runs(robust_sweep)
    check_csv_matches(out, summarize(df, target=0.75))


def test_report_numbers_by_hand(tmp_path, capsys):
    """Two seeds of one config: final 0.7 and 0.9 -> mean 0.8, std sqrt(0.02), CI t_{0.975,1} * std / sqrt(2)."""
    sweep = tmp_path / "sweep"
    write_run(sweep / "0_seed=0", base_config(seed=0), acc=[0.5, 0.7])
    write_run(sweep / "1_seed=1", base_config(seed=1), acc=[0.8, 0.9])
    out = tmp_path / "out"
    assert main([str(sweep), "-o", str(out), "--target", "0.8", "--last-k", "2"]) == 0
    csv = pd.read_csv(out / "summary.csv")
    assert len(csv) == 1 and csv["n_runs"].iloc[0] == 2 and csv["n_seeds"].iloc[0] == 2
    assert csv["final_mean"].iloc[0] == pytest.approx((0.6 + 0.85) / 2)
    std = math.sqrt(((0.6 - 0.725) ** 2 + (0.85 - 0.725) ** 2) / 1)
    assert csv["final_std"].iloc[0] == pytest.approx(std)
    assert csv["final_ci95"].iloc[0] == pytest.approx(T_975_DF1 * std / math.sqrt(2))
    # target 0.8: seed 0 never, seed 1 at round 1
    assert csv["n_reached_target"].iloc[0] == 1 and csv["rounds_to_target_mean"].iloc[0] == 1
    text = (out / "report.md").read_text()
    assert "No config key varies" in text and "Seeds: 0, 1." in text and "| 1/2 |" in text
    check_figure(out, "convergence")
    assert not (out / "heatmap.png").exists() and not list(out.glob("final_vs_*"))


@pytest.mark.parametrize("problem", ["missing path", "no runs", "unknown metric", "last-k", "output is a file"])
def test_report_bad_input_is_one_line_exit_2(tmp_path, capsys, problem):
    sweep = tmp_path / "sweep"
    write_run(sweep / "a", base_config(), acc=[0.5])
    out = tmp_path / "out"
    args, expected = [str(sweep), "-o", str(out)], []
    if problem == "missing path":
        args, expected = [str(sweep), str(tmp_path / "typo"), "-o", str(out)], ["no such folder", "typo"]
    elif problem == "no runs":
        (tmp_path / "empty").mkdir()
        args, expected = [str(tmp_path / "empty"), "-o", str(out)], ["no runs", "empty"]
    elif problem == "unknown metric":
        args, expected = [*args, "--metric", "test_accuracy"], ["no metric column 'test_accuracy'", "test_acc"]
    elif problem == "last-k":
        args, expected = [*args, "--last-k", "0"], ["--last-k must be >= 1"]
    else:
        out.write_text("x")
        expected = ["is not a folder"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedbench-report: ") and "\n" not in err and "Traceback" not in err
    for part in expected:
        assert part in err, err
    assert problem == "output is a file" or not out.exists()


def test_helpers():
    assert fmt(0.123456) == "0.1235" and fmt(float("nan")) == "–" and fmt(None) == "–" and fmt("krum") == "krum"
    assert spans_decades([0.001, 0.1, 1.0]) and not spans_decades([0.05, 0.1, 1.0]) and not spans_decades([0.0, 1e4])
    assert is_numeric_axis(pd.Series([0.1, None, 3])) and not is_numeric_axis(pd.Series([True, False]))
    assert not is_numeric_axis(pd.Series(["a", 1]))
    half = t_band([0.5, 0.5], [0.1, 0.1], [1, 2])
    assert math.isnan(half[0]) and half[1] == pytest.approx(T_975_DF1 * 0.1 / math.sqrt(2))
    table = markdown_table(pd.DataFrame({"k": ["a|b"], "v": [1.5]}))
    assert table == "| k | v |\n|---|---:|\n| a\\|b | 1.5 |\n"
    df = pd.DataFrame({"run_dir": ["a", "a", "b", "c"], "status": ["completed", "completed", "stale", "weird"]})
    assert status_counts(df) == {
        "completed": 1,
        "diverged": 0,
        "failed": 0,
        "interrupted": 0,
        "stale": 1,
        "running": 0,
        "weird": 1,
    }


# ---- end to end: real runs -----------------------------------------------------------------------
TINY = [
    "rounds=3",
    "eval_every=2",
    "num_clients=5",
    "clients_per_round=2",
    "partition=iid",
    "model=logreg",
    "progress=false",
]


def test_report_on_real_sweep(tmp_path, capsys):
    from fedbench.config import compose
    from fedbench.runner import run_experiment

    sweep = tmp_path / "sweep"
    job = 0
    for lr in (0.05, 0.1):
        for seed in (0, 1):
            cfg = compose(*TINY, f"seed={seed}", f"algorithm.lr={lr}")
            summary = run_experiment(cfg, sweep / f"{job}_algorithm.lr={lr},seed={seed}", callbacks=[])
            assert summary["status"] == "completed", summary.get("error")
            job += 1
    out = tmp_path / "report"
    assert main([str(sweep), "-o", str(out)]) == 0
    for stem in ("convergence", "final_vs_algorithm.lr", "test_acc_vs_uplink"):
        check_figure(out, stem)
    assert not (out / "heatmap.png").exists()
    text = (out / "report.md").read_text()
    assert "`algorithm.lr` (numeric): 0.05, 0.1" in text
    assert "| completed | 4 |" in text and "| failed | 0 |" in text and "| total | 4 |" in text
    assert "Seeds: 0, 1." in text and "| model.name | logreg |" in text
    df = load_runs(sweep)
    expected = summarize(df)
    assert expected["algorithm.lr"].tolist() == [0.05, 0.1] and expected["n_seeds"].tolist() == [2, 2]
    check_csv_matches(out, expected)
    # the final value is each run's last evaluation (round 3), as summary.json says
    finals = df[df["round"] == 3].groupby("algorithm.lr")["test_acc"].mean()
    assert expected["final_mean"].tolist() == pytest.approx(finals.tolist())
