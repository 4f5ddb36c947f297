#!/usr/bin/env python3
"""Tables and figures of studies/topology/report.md from a finished sweep (runs/<sweep>/*/ with topology CSVs).

    python -m studies.topology.analyze runs/topology_study --out studies/topology > tables.md

Needs `python -m studies.topology.topology run` on every run first. Prints markdown tables; writes two PNGs and the
backtests as JSON (backtest.json) to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import common as C
from studies.topology.predict_loss import backtest, read_run
from tools.runs import logparse, sweep
from tools.runs.plot_runs import pyplot, save_png

FEATS = ["np", "np_norm", "h0_total", "h0_max", "h1_total", "h1_count", "h1_max", "fro"]


def load(sweep_folder: Path):
    runs = []
    for d in sorted(p for p in sweep_folder.iterdir() if (p / "state.json").is_file()):
        st = sweep.read_state(sweep_folder, d.name)  # type-checked: one error line for a state the driver did not write
        if st.get("status") != "done":
            continue
        run = read_run(d)
        log = logparse.parse_log(d / "logs" / f"{run.run_id}.txt")
        params = log.model_params
        tt = [p.train_time_ms for p in log.val if p.train_time_ms is not None][-1]
        tj = C.read_json(d / "logs" / f"{run.run_id}.topology.json", "topology summary", finite=False)
        ax = st["axes"]
        runs.append({"run": run, "dir": d, "size": f"{ax['NUM_LAYERS']}x{ax['MODEL_DIM']}",
                     "lr": float(ax["MATRIX_LR"]), "seed": st["env"].get("SEED"), "params": params,
                     "train_s": tt / 1000, "rho": tj["spearman_vs_val_loss"], "index": st.get("index", 0)})
    runs.sort(key=lambda r: r["index"])
    return runs


def fmt(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)
    runs = load(args.sweep)
    sizes = list(dict.fromkeys(r["size"] for r in runs))

    print("## Runs\n")
    print("| # | run | size (layers x dim) | params | MATRIX_LR | seed | final val_bpb (pre-quant) | "
          "final val_bpb (int8 round trip) | final val_loss | train time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs):
        run = r["run"]
        print(f"| {i} | `{run.run_id}` | {r['size']} | {r['params']:,} | {r['lr']:g} | {r['seed']} | "
              f"{run.final_bpb:.4f} | {run.roundtrip_bpb:.4f} | {run.final_loss:.4f} | {r['train_s']:.0f} |")

    print("\n## Spearman rho of each model-mean feature with val_loss, per run (10 checkpoints each)\n")
    print("| run | size | MATRIX_LR | " + " | ".join(FEATS) + " |")
    print("|---|---|---|" + "---|" * len(FEATS))
    for r in runs:
        rho = [r["rho"].get(f"model_{f}", {}).get("rho") for f in FEATS]
        print(f"| {r['run'].run_id[-8:]} | {r['size']} | {r['lr']:g} | " + " | ".join(fmt(x) for x in rho) + " |")

    print("\n## Spearman rho per size: mean over the size's runs [min, max]; and pooled over all its checkpoints\n")
    print("| size | statistic | " + " | ".join(FEATS) + " |")
    print("|---|---|" + "---|" * len(FEATS))
    for s in sizes:
        rs = [r for r in runs if r["size"] == s]
        cells = []
        for f in FEATS:
            v = [r["rho"][f"model_{f}"]["rho"] for r in rs if r["rho"].get(f"model_{f}", {}).get("rho") is not None]
            cells.append(f"{np.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}]" if v else "-")
        print(f"| {s} | mean [min, max] over {len(rs)} runs | " + " | ".join(cells) + " |")
        cells = []
        for f in FEATS:
            xs, ys = [], []
            for r in rs:
                for step, row in r["run"].features.items():
                    k = np.searchsorted(r["run"].val_steps, step)
                    if k < len(r["run"].val_steps) and r["run"].val_steps[k] == step:
                        xs.append(row[f"model_{f}"]); ys.append(r["run"].val_loss[k])
            rho = spearmanr(xs, ys).statistic if len(set(xs)) > 1 else math.nan
            cells.append(fmt(float(rho)))
        print(f"| {s} | pooled checkpoints (n={len(ys)}) | " + " | ".join(cells) + " |")

    print("\n## Across runs: Spearman rho of the feature at the final checkpoint with the run's final val_loss\n")
    print("| runs | " + " | ".join(FEATS) + " |")
    print("|---|" + "---|" * len(FEATS))
    groups = [("all", runs)] + [(s, [r for r in runs if r["size"] == s]) for s in sizes]
    for name, rs in groups[:1]:
        cells = []
        for f in FEATS:
            xs = [r["run"].features[max(r["run"].features)][f"model_{f}"] for r in rs]
            ys = [r["run"].final_loss for r in rs]
            cells.append(fmt(float(spearmanr(xs, ys).statistic)))
        print(f"| {name} (n={len(rs)}) | " + " | ".join(cells) + " |")

    print("\n## Direction: runs in which the feature's final value exceeds its value at the first checkpoint\n")
    print("| size | " + " | ".join(FEATS) + " |")
    print("|---|" + "---|" * len(FEATS))
    for name, rs in groups:
        cells = []
        for f in FEATS:
            up = sum(r["run"].features[max(r["run"].features)][f"model_{f}"]
                     > r["run"].features[min(r["run"].features)][f"model_{f}"] for r in rs)
            cells.append(f"{up}/{len(rs)}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    # Backtests: the tool's predictors, plus the ridge restricted to fro only / topology without fro.
    print("\n## Predictor MAE (leave-one-run-out over all runs)\n")
    variants = {"all features (tool default)": None, "fro only": {"model_fro"},
                "topological only (no fro)": {f"model_{f}" for f in FEATS if f != "fro"} | {"model_h0_count"}}
    results = {}
    for metric in ("val_loss", "val_bpb"):
        for vname, keep in variants.items():
            rr = []
            for r in runs:
                run = read_run(r["dir"])
                if keep is not None:
                    run.features = {s: {k: v for k, v in row.items() if k in keep} for s, row in run.features.items()}
                rr.append(run)
            results[(metric, vname)] = backtest(rr, (0.2, 0.3, 0.5), metric=metric)
    for metric in ("val_loss", "val_bpb"):
        print(f"\n{metric}:\n")
        print("| fraction | curve | curve+bias | curve+topo (all features) | vs curve+bias | "
              "curve+topo (topology only) | curve+fro only |")
        print("|---|---|---|---|---|---|---|")
        for f in ("0.2", "0.3", "0.5"):
            a = results[(metric, "all features (tool default)")]["fractions"][f]
            t = results[(metric, "topological only (no fro)")]["fractions"][f]["curve+topo"]
            fr = results[(metric, "fro only")]["fractions"][f]["curve+topo"]
            rel = (a["curve+topo"] - a["curve+bias"]) / a["curve+bias"]
            print(f"| {float(f):.0%} | {a['curve']:.4f} | {a['curve+bias']:.4f} | {a['curve+topo']:.4f} | "
                  f"{rel:+.0%} | {t:.4f} | {fr:.4f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    C.atomic_write(args.out / "backtest.json", json.dumps({f"{m}|{v}": res for (m, v), res in results.items()},
                                                         indent=1, default=float))

    # Figures.
    plt = pyplot()
    show = ["np_norm", "h0_total", "h1_total", "fro"]
    fig, axes = plt.subplots(1, len(show) + 1, figsize=(13, 2.8), dpi=80)
    colors = {s: c for s, c in zip(sizes, ["tab:blue", "tab:orange", "tab:green", "tab:red"])}
    styles = {}
    for r in runs:
        lrs = sorted({x["lr"] for x in runs if x["size"] == r["size"]})
        styles[id(r)] = ["-", "--", ":"][lrs.index(r["lr"]) % 3]
    for r in runs:
        run = r["run"]
        axes[0].plot(run.val_steps, run.val_loss, styles[id(r)], color=colors[r["size"]],
                     label=f"{r['size']} lr {r['lr']:g}")
        st = sorted(run.features)
        for ax, f in zip(axes[1:], show):
            v = np.array([run.features[s][f"model_{f}"] for s in st])
            ax.plot(st, v / v[0], styles[id(r)], color=colors[r["size"]])
    axes[0].set_title("val_loss"); axes[0].legend(fontsize=6)
    for ax, f in zip(axes[1:], show):
        ax.set_title(f"model_{f} / value at step 10", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8); ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_png(fig, args.out / "features_vs_step.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), dpi=80)
    for ax, metric in zip(axes, ("val_loss", "val_bpb")):
        fr = ["0.2", "0.3", "0.5"]
        a = results[(metric, "all features (tool default)")]["fractions"]
        t = results[(metric, "topological only (no fro)")]["fractions"]
        fo = results[(metric, "fro only")]["fractions"]
        bars = {"curve": [a[f]["curve"] for f in fr], "curve+bias": [a[f]["curve+bias"] for f in fr],
                "curve+topo (all)": [a[f]["curve+topo"] for f in fr],
                "curve+topo (no fro)": [t[f]["curve+topo"] for f in fr],
                "curve+fro": [fo[f]["curve+topo"] for f in fr]}
        x = np.arange(3)
        for i, (k, v) in enumerate(bars.items()):
            ax.bar(x + i * 0.16 - 0.32, v, 0.16, label=k)
        ax.set_xticks(x, ["20%", "30%", "50%"]); ax.set_title(f"MAE of final {metric}", fontsize=9)
        ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, args.out / "predictor_mae.png")
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
