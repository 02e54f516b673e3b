"""fedbench-plot on sweep folders and mixed paths (in-process; tests/test_cli.py runs the command)."""

from __future__ import annotations

import json
import os

import numpy as np
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


# --- fedbench-plot --partition -------------------------------------------------------------------

HIST = [[1, 0, 2, 0], [4, 3, 2, 1], [0, 5, 0, 0]]  # 3 clients x 4 classes; sizes 3, 10, 5


def write_partition(run_dir, hist, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    stats = {"sizes": [sum(row) for row in hist], "label_hist": hist, **extra}
    (run_dir / "partition.json").write_text(json.dumps(stats))
    return stats


def test_plot_partition_writes_png_and_pdf(tmp_path, capsys):
    run = tmp_path / "run"
    write_partition(run, HIST, tv_mean=0.4, effective_classes_mean=2.1, size_gini=0.25, empty_clients=0)
    out = tmp_path / "part.png"
    assert main(["--partition", str(run), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert capsys.readouterr().out.strip() == str(out)
    pdf = tmp_path / "figs" / "part.pdf"
    assert main(["--partition", str(run), "-o", str(pdf)]) == 0
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert os.listdir(pdf.parent) == ["part.pdf"], "stray temp file"


def test_plot_partition_default_output_is_png(tmp_path, monkeypatch):
    write_partition(tmp_path / "run", HIST)
    monkeypatch.chdir(tmp_path)
    assert main(["--partition", "run"]) == 0
    assert (tmp_path / "partition.png").read_bytes()[:8] == PNG_MAGIC


def test_partition_figure_bars_sorted_by_size_and_stacked():
    from fedbench.plot import partition_figure

    stats = {"sizes": [3, 10, 5], "label_hist": HIST, "tv_mean": 0.4, "size_gini": 0.25, "empty_clients": 1}
    fig = partition_figure(stats, title="run")
    ax = fig.axes[0]
    order = [1, 2, 0]  # largest first
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "0"]
    assert len(ax.containers) == 4, "one bar container per class"
    for k, bars in enumerate(ax.containers):
        assert [p.get_x() + p.get_width() / 2 for p in bars] == [0, 1, 2]
        assert [p.get_height() for p in bars] == [HIST[i][k] for i in order]
        assert [p.get_y() for p in bars] == [sum(HIST[i][:k]) for i in order]
    assert [sum(bars[j].get_height() for bars in ax.containers) for j in range(3)] == [10, 5, 3]
    assert [ax.containers[-1][j].get_y() + ax.containers[-1][j].get_height() for j in range(3)] == [10, 5, 3]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2", "3"]
    subtitle = fig.get_suptitle()
    assert "TV to global mean 0.400" in subtitle and "size Gini 0.250" in subtitle
    assert "empty clients 1" in subtitle and "effective classes" not in subtitle
    # the histogram of sizes counts every client
    assert sum(p.get_height() for p in fig.axes[1].patches) == 3


def test_partition_figure_many_clients_gapless_with_colourbar():
    """Many clients and classes: one step area per class (no per-client ticks), viridis and a colourbar."""
    from matplotlib.patches import StepPatch

    from fedbench.plot import PARTITION_BARS, PARTITION_TICKED, partition_figure

    n, k = PARTITION_BARS + 50, 12
    rng = np.random.default_rng(0)
    hist = rng.integers(0, 20, size=(n, k))
    sizes = hist.sum(1)
    fig = partition_figure({"sizes": sizes.tolist(), "label_hist": hist.tolist()})
    ax = fig.axes[0]
    steps = [a for a in ax.patches if isinstance(a, StepPatch)]
    assert len(steps) == k and not ax.containers
    order = np.argsort(-sizes, kind="stable")
    for c, step in enumerate(steps):
        values, edges, baseline = step.get_data()
        np.testing.assert_array_equal(edges, np.arange(n + 1) - 0.5)  # adjacent: no gaps
        np.testing.assert_array_equal(baseline, hist[order, :c].sum(1))
        np.testing.assert_array_equal(values, hist[order, : c + 1].sum(1))
    assert len(ax.get_xticks()) <= PARTITION_TICKED
    assert not fig.legends and len(fig.axes) == 3, "a colourbar instead of a legend"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no partition.json"),
        ("{not json", "unreadable"),
        ('{"sizes": [1, 2]}', "not a partition"),
        ('{"sizes": [1, 2], "label_hist": [[1, 0]]}', "one row per client"),
        ('{"sizes": [1], "label_hist": [[1, -1]]}', "non-negative"),
    ],
)
def test_plot_partition_bad_input_exits_2(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "partition.json").write_text(content)
    out = tmp_path / "part.png"
    assert main(["--partition", str(run), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedbench-plot: ") and message in err and "\n" not in err
    assert not out.exists()


def test_plot_partition_missing_folder_exits_2(tmp_path, capsys):
    assert main(["--partition", str(tmp_path / "typo"), "-o", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run folder" in err and "\n" not in err


def test_plot_needs_runs_or_partition(tmp_path):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--partition", str(tmp_path)])
    assert e.value.code == 2


def test_plot_against_cumulative_uplink_bytes(sweep, tmp_path, monkeypatch):
    """--x uplink_bytes_cum: every panel's x data are the run's cumulative uplink bytes (1000 per
    round in the fake runs), on a log axis labelled in bytes."""
    import fedbench.plot as plot

    figs = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: figs.append(fig) or path)
    assert main([str(sweep / "0_seed=0"), "-o", str(tmp_path / "x.png"), "--x", "uplink_bytes_cum"]) == 0
    acc, _, train = figs[0].axes[:3]
    assert list(acc.lines[0].get_xdata()) == [2000.0, 3000.0]  # evaluated rounds 2 and 3
    assert list(train.lines[0].get_xdata()) == [1000.0, 2000.0, 3000.0]
    assert acc.get_xscale() == "log" and acc.get_xlabel() == "cumulative uplink bytes"
    assert main([str(sweep / "0_seed=0"), "-o", str(tmp_path / "r.png")]) == 0
    assert figs[1].axes[0].get_xlabel() == "round" and figs[1].axes[0].get_xscale() == "linear"
