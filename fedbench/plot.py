"""Accuracy and loss curves of one or more runs: ``fedbench-plot RUN_DIR... -o fig.png``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _label(run_dir: Path) -> str:
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        lines = [ln[2:].strip() for ln in overrides.read_text().splitlines() if ln.startswith("- ")]
        if lines:
            return " ".join(lines)
    return run_dir.name


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Plot test accuracy, test loss and mean client train loss against rounds."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, d in enumerate(run_dirs):
        d = Path(d)
        df = pd.read_parquet(d / "metrics.parquet")
        label = labels[i] if labels else _label(d)
        ev = df.dropna(subset=["test_acc"])
        axes[0].plot(ev["round"], ev["test_acc"], label=label)
        axes[1].plot(ev["round"], ev["test_loss"], label=label)
        axes[2].plot(df["round"], df["train_loss"], label=label)
    for ax, title in zip(axes, ["test accuracy", "test loss", "client train loss (round mean)"]):
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fedbench-plot", description=__doc__)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (each holding metrics.parquet)")
    p.add_argument("-o", "--output", type=Path, default=Path("fig.png"), help="image file to write")
    p.add_argument("--labels", nargs="+", help="one legend label per run (default: the run's overrides)")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.runs if not (d / "metrics.parquet").exists()]
    if missing:
        print(f"fedbench-plot: no metrics.parquet in: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.labels and len(args.labels) != len(args.runs):
        print(f"fedbench-plot: --labels needs {len(args.runs)} labels, got {len(args.labels)}", file=sys.stderr)
        return 2
    print(plot_runs(args.runs, args.output, args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
