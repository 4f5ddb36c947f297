"""Plot train_gpt.py runs: loss curves of several runs on one chart, and val_bpb against a swept axis.

    python -m tools plot_runs LOG [LOG ...] --out curves.png [--labels a,b] [--metric val_bpb|val_loss]

Works on plain log files (logs/<RUN_ID>.txt), so runs made outside a sweep plot the same way as sweep runs
(`python -m tools sweep plot` uses these functions). PNG via matplotlib's Agg backend.
"""
from __future__ import annotations

import argparse
import math
import io
import sys
from pathlib import Path

from tools import common as C
from tools.common import ToolError
from tools.runs import logparse
from tools.runs.logparse import RunLog


def pyplot():
    """matplotlib.pyplot on the Agg backend (PNG files, no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, out: Path, **savefig) -> None:
    """Write a matplotlib figure as a PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    C.atomic_write(out, buf.getvalue())


def plot_loss_curves(runs: list[tuple[str, RunLog]], out: str | Path, metric: str = "val_bpb",
                     title: str | None = None) -> Path:
    """Train loss (left) and validation `metric` (right) against the step, one line per run."""
    if metric not in ("val_bpb", "val_loss"):
        raise ValueError(f"metric must be val_bpb or val_loss, not {metric!r}")
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, run in runs:
        if run.train:
            line, = a1.plot([p.step for p in run.train], [p.train_loss for p in run.train], lw=1.2, label=label)
            color = line.get_color()
        else:
            color = None
        if run.val:
            a2.plot([p.step for p in run.val], [getattr(p, metric) for p in run.val], marker="o", ms=3, lw=1.2,
                    color=color, label=label)
        if run.finished and run.steps is not None:
            final = run.val_bpb if metric == "val_bpb" else run.val_loss
            a2.scatter([run.steps], [final], marker="*", s=80, color=color, zorder=3)
    a1.set_xlabel("step"), a1.set_ylabel("train loss (nats)"), a1.set_title("training loss")
    a2.set_xlabel("step"), a2.set_ylabel(metric), a2.set_title(f"{metric} (star: final int8+zlib round trip)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    if runs:
        a2.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    out = Path(out)
    save_png(fig, out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _as_float(v) -> float | None:
    try:
        f = float(v)
        return f if math.isfinite(f) else None
    except (TypeError, ValueError):
        return None


def plot_metric_vs_axis(points: list[tuple[str, float]], axis: str, out: str | Path, metric: str = "val_bpb",
                        title: str | None = None) -> Path:
    """Scatter of `metric` against the values of one axis (numbers on a log scale when they span > 20x)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    xs = [_as_float(x) for x, _ in points]
    ys = [y for _, y in points]
    if points and all(x is not None for x in xs):
        ax.scatter(xs, ys, s=28)
        pos = [x for x in xs if x > 0]
        if len(pos) == len(xs) and max(pos) / min(pos) > 20:
            ax.set_xscale("log")
        # mean per distinct value, joined (the seeds of one configuration)
        by = {}
        for x, y in zip(xs, ys):
            by.setdefault(x, []).append(y)
        kx = sorted(by)
        ax.plot(kx, [sum(by[k]) / len(by[k]) for k in kx], lw=1, alpha=0.6)
    else:
        cats = sorted({str(x) for x, _ in points})
        pos = {c: i for i, c in enumerate(cats)}
        ax.scatter([pos[str(x)] for x, _ in points], ys, s=28)
        ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_xlabel(axis), ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs {axis}")
    ax.grid(alpha=0.3)
    out = Path(out)
    save_png(fig, out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Plot loss curves of train_gpt.py logs on one chart (PNG).")
    ap.add_argument("logs", nargs="+", help="log files (logs/<RUN_ID>.txt)")
    ap.add_argument("--out", default="loss_curves.png", help="output PNG (default %(default)s)")
    ap.add_argument("--labels", default=None, help="comma-separated labels (default: RUN_ID or file name)")
    ap.add_argument("--metric", default="val_bpb", choices=("val_bpb", "val_loss"))
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    C.refuse_writing_over(args.out, args.logs, "--out", "one of the logs it plots")
    runs = [logparse.parse_log(p) for p in args.logs]
    labels = args.labels.split(",") if args.labels else [r.run_id or Path(r.path).stem for r in runs]
    if len(labels) != len(runs):
        raise ToolError(f"{len(labels)} labels for {len(runs)} logs")
    out = plot_loss_curves(list(zip(labels, runs)), args.out, args.metric, args.title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
