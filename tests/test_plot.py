"""fedbench-plot on sweep folders and mixed paths (in-process; tests/test_cli.py runs the command)."""

from __future__ import annotations

import os

import pytest
from fake_runs import base_config, write_run

from fedbench.plot import line_style, main, plot_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sweep(tmp_path):
    """Two runs with rows, one failed without rows, a folder without runs, an old run in .previous/."""
    root = tmp_path / "sweep"
    write_run(root / "0_seed=0", base_config(seed=0), acc=[None, 0.5, 0.6])
    write_run(root / "1_seed=1", base_config(seed=1), acc=[None, 0.55, 0.65])
    write_run(root / "2_seed=2", base_config(seed=2), status="failed", error="boom")
    (root / "0_seed=0" / ".hydra").mkdir()
    (root / "0_seed=0" / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    write_run(root / "1_seed=1" / ".previous" / "old", base_config(), acc=[0.1])
    (tmp_path / "no_runs").mkdir()
    return root


def test_plot_sweep_folder_skips_runs_without_rows(sweep, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main([str(sweep), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    err = captured.err.strip()
    assert err == f"fedbench-plot: skipped 1: {sweep / '2_seed=2'} (no metric rows)"
    assert ".previous" not in err


def test_plot_mixed_paths_names_what_it_skipped(sweep, tmp_path, capsys):
    out = tmp_path / "figs" / "fig.pdf"
    paths = [sweep / "0_seed=0", sweep, tmp_path / "no_runs", tmp_path / "typo"]
    assert main([*map(str, paths), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"%PDF"
    assert sorted(os.listdir(out.parent)) == ["fig.pdf"], "stray temp file"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for part in (
        "skipped 3",
        "2_seed=2 (no metric rows)",
        f"{tmp_path / 'no_runs'} (no runs)",
        "typo (no such folder)",
    ):
        assert part in err[0]


def test_plot_nothing_plottable_exits_2(sweep, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main([str(sweep / "2_seed=2"), str(tmp_path / "no_runs"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedbench-plot: nothing to plot: ") and "\n" not in err
    assert not out.exists()


def test_plot_runs_reads_live_metrics_log(tmp_path):
    """plot_runs (the runner's call) reads metrics.jsonl of a run still going, and a run without rows draws nothing."""
    live = write_run(tmp_path / "live", base_config(), status="running", acc=[None, 0.4, 0.5], jsonl=True)
    empty = write_run(tmp_path / "empty", base_config(), status="failed")
    out = plot_runs([live, empty], tmp_path / "curves.png", labels=["live", "empty"])
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_line_styles_distinct_for_32_lines():
    styles = {tuple(sorted(line_style(i).items())) for i in range(32)}
    assert len(styles) == 32
