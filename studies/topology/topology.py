#!/usr/bin/env python3
"""Topological features of a model's weight matrices, for one checkpoint or over a whole run.

Features of one 2-D weight matrix W (rows = output units, columns = input units):

* Neural persistence (Rieck et al., ICLR 2019). W is a complete bipartite graph (rows and columns are
  vertices, |w_ij| / max|w| are edge weights). Edges enter in order of descending weight (a superlevel-set
  filtration); every vertex is born at 1, and each edge that merges two components kills one, giving the
  pair (1, w) with persistence 1 - w. Those merging edges are exactly a maximum spanning tree, so the
  rows + cols - 1 persistence values are 1 - (the maximum spanning tree's weights). We report
  np = ||persistence||_p (p = 2 by default) and np_norm = np / ((w_max - w_min) * (|V| - 1)^(1/p)),
  the paper's normalisation by its upper bound, so matrices of different sizes compare (0 <= np_norm <= 1).
* Vietoris-Rips persistence of the rows as a point cloud (subsampled to at most max_points rows with a fixed
  seed). H0: the finite bars die at the edge lengths of the Euclidean minimum spanning tree, so h0_total is
  the MST's total length and h0_count = points - 1. H1 (loops) comes from `ripser` when it is installed.
* fro: the Frobenius norm, a deliberately plain baseline the topological features should beat.

Usage:
    python -m studies.topology.topology features CKPT [--max-points 200] [--seed 0] [--json]
    python -m studies.topology.topology run RUN_DIR_or_LOG [--max-points 200] [--seed 0] [--json]
See studies/topology/README.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

import common as C
from common import ToolError

# The per-matrix features, in table order.
FEATURES = ("np", "np_norm", "h0_total", "h0_count", "h0_max", "h1_total", "h1_count", "h1_max", "fro")
CSV_NAME = "{run_id}.topology.csv"
PNG_NAME = "{run_id}.topology.png"
META_NAME = "{run_id}.topology.json"


def has_ripser() -> bool:
    try:
        import ripser  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Neural persistence
# ----------------------------------------------------------------------------------------------

def _normalised_abs(w: np.ndarray) -> np.ndarray | None:
    a = np.abs(np.asarray(w, dtype=np.float64))
    if a.ndim != 2 or a.size == 0:
        raise ToolError(f"neural persistence needs a non-empty 2-D matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ToolError("matrix has non-finite values")
    top = a.max()
    if top == 0.0:
        return None
    return a / top


def max_spanning_tree_weights(a: np.ndarray) -> np.ndarray:
    """Weights of a maximum spanning tree of the complete bipartite graph with edge weights a[i, j].

    Prim's algorithm, vectorised over the frontier: rows+cols-1 iterations of O(rows+cols) numpy work.
    Every maximum spanning tree has the same multiset of weights, which is what persistence needs.
    Returned in the order Prim adds them (not sorted).
    """
    rows, cols = a.shape
    a_t = np.ascontiguousarray(a.T)
    in_row = np.zeros(rows, dtype=bool)
    in_col = np.zeros(cols, dtype=bool)
    best_row = np.full(rows, -np.inf)
    best_col = a[0].copy()  # start the tree at row 0
    in_row[0] = True
    best_row[0] = -np.inf
    out = np.empty(rows + cols - 1)
    for k in range(rows + cols - 1):
        i = int(np.argmax(best_row))
        j = int(np.argmax(best_col))
        if best_row[i] >= best_col[j]:
            out[k] = best_row[i]
            in_row[i] = True
            best_row[i] = -np.inf
            np.maximum(best_col, a[i], out=best_col, where=~in_col)
        else:
            out[k] = best_col[j]
            in_col[j] = True
            best_col[j] = -np.inf
            np.maximum(best_row, a_t[j], out=best_row, where=~in_row)
    return out


def max_spanning_tree_weights_kruskal(a: np.ndarray) -> np.ndarray:
    """The same weights by the textbook route: sort all edges descending, union-find, stop after
    rows+cols-1 merges. Slower on big matrices (sorting every edge); kept as the reference."""
    rows, cols = a.shape
    n = rows + cols
    flat = a.ravel()
    order = np.argsort(-flat, kind="stable")
    parent = list(range(n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    out = []
    for e in order.tolist():
        u = find(e // cols)
        v = find(rows + e % cols)
        if u != v:
            parent[u] = v
            out.append(flat[e])
            if len(out) == n - 1:
                break
    return np.asarray(out, dtype=np.float64)


def neural_persistence_values(w: np.ndarray, method: str = "prim") -> np.ndarray:
    """The rows+cols-1 finite persistence values 1 - w of the zero-dimensional diagram, sorted ascending."""
    a = _normalised_abs(w)
    if a is None:  # an all-zero matrix: every component is born at 1 and merges at 0
        r, c = np.asarray(w).shape
        return np.ones(r + c - 1)
    if method == "prim":
        weights = max_spanning_tree_weights(a)
    elif method == "kruskal":
        weights = max_spanning_tree_weights_kruskal(a)
    else:
        raise ToolError(f"unknown method {method!r} (prim|kruskal)")
    return np.sort(1.0 - weights)


def neural_persistence(w: np.ndarray, p: float = 2.0, method: str = "prim") -> tuple[float, float]:
    """(NP, normalised NP) of one matrix. NP = p-norm of the persistence values; the normalised value
    divides by the paper's upper bound (w_max - w_min) * (|V| - 1)^(1/p), with w the normalised weights
    (so w_max = 1). An all-zero or constant-magnitude matrix gives (its NP, 0.0)."""
    pers = neural_persistence_values(w, method)
    value = float(np.sum(pers ** p) ** (1.0 / p))
    a = _normalised_abs(w)
    spread = 1.0 if a is None else float(a.max() - a.min())
    bound = spread * (pers.size ** (1.0 / p))
    return value, (value / bound if bound > 0 else 0.0)


# ----------------------------------------------------------------------------------------------
# Vietoris-Rips persistence of the rows
# ----------------------------------------------------------------------------------------------

def distance_matrix(points: np.ndarray) -> np.ndarray:
    x = np.asarray(points, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d2, 0.0, out=d2)
    d = np.sqrt(d2)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


def mst_edge_lengths(dist: np.ndarray) -> np.ndarray:
    """Edge lengths of a Euclidean minimum spanning tree of a dense distance matrix (Prim, O(n^2)).
    These are exactly the death times of the finite H0 bars of the Vietoris-Rips filtration."""
    n = dist.shape[0]
    if n <= 1:
        return np.zeros(0)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = dist[0].copy()
    best[0] = np.inf
    out = np.empty(n - 1)
    for k in range(n - 1):
        j = int(np.argmin(best))
        out[k] = best[j]
        in_tree[j] = True
        best[j] = np.inf
        np.minimum(best, dist[j], out=best, where=~in_tree)
    return out


def subsample_rows(w: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    rows = w.shape[0]
    if max_points <= 0 or rows <= max_points:
        return w
    idx = np.sort(np.random.default_rng(seed).choice(rows, size=max_points, replace=False))
    return w[idx]


def rips_features(points: np.ndarray, use_ripser: bool = True) -> dict[str, float]:
    """H0 (exact, from the MST) and H1 (ripser, when installed and use_ripser) of a point cloud."""
    dist = distance_matrix(points)
    h0 = mst_edge_lengths(dist)
    out = {
        "h0_total": float(h0.sum()),
        "h0_count": float(h0.size),
        "h0_max": float(h0.max()) if h0.size else 0.0,
        "h1_total": math.nan,
        "h1_count": math.nan,
        "h1_max": math.nan,
    }
    if use_ripser and has_ripser() and dist.shape[0] >= 3:
        from ripser import ripser

        dgm1 = ripser(dist, distance_matrix=True, maxdim=1)["dgms"][1]
        life = dgm1[:, 1] - dgm1[:, 0] if len(dgm1) else np.zeros(0)
        life = life[np.isfinite(life)]
        out["h1_total"] = float(life.sum())
        out["h1_count"] = float(life.size)
        out["h1_max"] = float(life.max()) if life.size else 0.0
    return out


# ----------------------------------------------------------------------------------------------
# Features of a state dict
# ----------------------------------------------------------------------------------------------

_LAYER_RE = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def select_matrices(state_dict: dict[str, Any], include_embedding: bool = False) -> list[tuple[str, str, np.ndarray]]:
    """(name, layer, float64 array) for every 2-D float `*.weight` tensor under `blocks.<i>.` (layer "<i>"),
    plus the 2-D `*.weight` tensors whose name contains "emb" (layer "emb") when include_embedding.
    Control tensors such as blocks.<i>.resid_mix are 2-D but are not weight matrices: they are skipped."""
    picked = []
    for name, t in state_dict.items():
        if hasattr(t, "is_floating_point"):  # a torch tensor
            if t.dim() != 2 or not t.is_floating_point():
                continue
            arr = t.detach().float().cpu().numpy()
        else:
            arr = np.asarray(t)
            if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
                continue
        if not name.endswith(".weight"):  # control tensors (resid_mix, gains, scales) are not weight matrices
            continue
        m = _LAYER_RE.search(name)
        if m:
            picked.append((name, m.group(1), arr.astype(np.float64)))
        elif include_embedding and "emb" in name:
            picked.append((name, "emb", arr.astype(np.float64)))
    picked.sort(key=lambda x: (x[1] == "emb", int(x[1]) if x[1].isdigit() else 0, x[0]))
    return picked


def matrix_features(w: np.ndarray, max_points: int = 200, seed: int = 0, p: float = 2.0,
                    use_ripser: bool = True) -> dict[str, float]:
    np_value, np_norm = neural_persistence(w, p=p)
    feats = {"np": np_value, "np_norm": np_norm}
    feats.update(rips_features(subsample_rows(w, max_points, seed), use_ripser=use_ripser))
    feats["fro"] = float(np.linalg.norm(w))
    return feats


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def checkpoint_features(state_dict: dict[str, Any], max_points: int = 200, seed: int = 0, p: float = 2.0,
                        include_embedding: bool = False, use_ripser: bool = True,
                        progress: bool = False) -> dict[str, Any]:
    """Features of every selected matrix, their mean per layer and over the model (block matrices only).

    Returns {"matrices": [{"name", "layer", "shape", <features>, "seconds"}], "layers": {layer: {feature: mean}},
    "model": {feature: mean}, "seconds": total, "settings": {...}}."""
    mats = select_matrices(state_dict, include_embedding)
    if not mats:
        raise ToolError("no 2-D float tensors named blocks.<i>.* in the state dict")
    t0 = time.perf_counter()
    rows = []
    iterator: Iterable = mats
    if progress:
        from tqdm import tqdm

        iterator = tqdm(mats, desc="matrices", leave=False, file=sys.stderr)
    for name, layer, w in iterator:
        t1 = time.perf_counter()
        feats = matrix_features(w, max_points=max_points, seed=seed, p=p, use_ripser=use_ripser)
        rows.append({"name": name, "layer": layer, "shape": list(w.shape), **feats,
                     "seconds": time.perf_counter() - t1})
    layers: dict[str, dict[str, float]] = {}
    for layer in dict.fromkeys(r["layer"] for r in rows):
        sel = [r for r in rows if r["layer"] == layer]
        layers[layer] = {f: _mean(r[f] for r in sel) for f in FEATURES}
    blocks = [r for r in rows if r["layer"] != "emb"]
    model = {f: _mean(r[f] for r in blocks) for f in FEATURES}
    return {
        "matrices": rows,
        "layers": layers,
        "model": model,
        "seconds": time.perf_counter() - t0,
        "settings": {"max_points": max_points, "seed": seed, "p": p, "include_embedding": include_embedding,
                     "ripser": bool(use_ripser and has_ripser())},
    }


def load_weights(path: str | Path) -> dict[str, Any]:
    """The model state dict of a `.ckpt`, a raw-weights `.safetensors` or an artifact (tools/artifacts/model_file.py's
    loader: ToolError or train_gpt.GolfError for what it refuses)."""
    path = Path(path)
    if not path.is_file():
        raise ToolError(f"checkpoint not found: {path}")
    from tools.artifacts.model_file import load_model_file

    return load_model_file(path, need_config=False)[0]


# ----------------------------------------------------------------------------------------------
# Over a run
# ----------------------------------------------------------------------------------------------

_CKPT_RE = re.compile(r"step_(\d+)\.ckpt$")


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = []
    for f in ckpt_dir.iterdir():
        m = _CKPT_RE.search(f.name)
        if m:
            found.append((int(m.group(1)), f))
    return sorted(found)


def flat_features(feats: dict[str, Any]) -> dict[str, float]:
    """One row of numbers: model_<f> for the model means and layer<L>_<f> for each layer."""
    row = {f"model_{f}": feats["model"][f] for f in FEATURES}
    for layer, vals in feats["layers"].items():
        for f in FEATURES:
            row[f"layer{layer}_{f}"] = vals[f]
    return row


def val_at(steps: np.ndarray, values: np.ndarray, step: int) -> tuple[float, str]:
    """The logged value at `step`, else linear interpolation inside the logged range, else nan."""
    if steps.size == 0:
        return math.nan, "none"
    hit = np.nonzero(steps == step)[0]
    if hit.size:
        return float(values[hit[-1]]), "logged"
    if steps[0] < step < steps[-1]:
        return float(np.interp(step, steps, values)), "interpolated"
    return math.nan, "none"


def spearman_table(rows: list[dict[str, Any]], columns: list[str], target: str = "val_loss") -> dict[str, dict]:
    from scipy.stats import spearmanr

    out = {}
    for col in columns:
        pairs = [(r[target], r[col]) for r in rows
                 if not (math.isnan(r[target]) or math.isnan(r[col]))]
        if len(pairs) < 3 or len({p[1] for p in pairs}) < 2 or len({p[0] for p in pairs}) < 2:
            out[col] = {"rho": math.nan, "p": math.nan, "n": len(pairs)}
            continue
        res = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
        out[col] = {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(pairs)}
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=columns, restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    C.atomic_write(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if k == "val_source":
                    row[k] = v
                elif k == "step":
                    row[k] = int(v)
                else:
                    row[k] = float(v) if v not in ("", None) else math.nan
            rows.append(row)
    return rows


def plot_run(path: Path, rows: list[dict[str, Any]], spearman: dict[str, dict], title: str) -> None:
    from tools.runs.plot_runs import pyplot, save_png

    plt = pyplot()
    feats = []
    for f in FEATURES:  # skip features that are absent (H1 without ripser) or constant (h0_count)
        vals = {r[f"model_{f}"] for r in rows if not math.isnan(r[f"model_{f}"])}
        if len(vals) > 1 or (len(rows) == 1 and vals):
            feats.append(f"model_{f}")
    ncols = 3
    nrows = max(1, math.ceil(len(feats) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    steps = [r["step"] for r in rows]
    loss = [r["val_loss"] for r in rows]
    for ax, col in zip(axes.flat, feats):
        ax.plot(steps, [r[col] for r in rows], "o-", color="tab:blue", ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel(col, color="tab:blue")
        rho = spearman.get(col, {}).get("rho", math.nan)
        ax.set_title(f"{col}  (rho={rho:+.2f})", fontsize=9)
        ax2 = ax.twinx()
        ax2.plot(steps, loss, "s--", color="tab:red", ms=3)
        ax2.set_ylabel("val_loss", color="tab:red")
    for ax in list(axes.flat)[len(feats):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        save_png(fig, path, dpi=90)
    finally:
        plt.close(fig)


def run_features(target: str | Path, max_points: int = 200, seed: int = 0, p: float = 2.0,
                 include_embedding: bool = False, use_ripser: bool = True, reuse: bool = True,
                 progress: bool = True, plot: bool = True) -> dict[str, Any]:
    """Features at every checkpoint of a run; writes logs/<RUN_ID>.topology.{csv,json,png} next to the log.

    Rows of a previous CSV computed with the same settings are reused (checkpoints only get added)."""
    from studies.topology.predict_loss import read_run

    run = read_run(target)
    if run.log_path is None:
        raise ToolError(f"no log found for {target}")
    ckpts = list_checkpoints(run.checkpoint_dir)
    if not ckpts:
        raise ToolError(f"no checkpoints step_NNNNNN.ckpt in {run.checkpoint_dir}")
    logs_dir = run.log_path.parent
    csv_path = logs_dir / CSV_NAME.format(run_id=run.run_id)
    meta_path = logs_dir / META_NAME.format(run_id=run.run_id)
    png_path = logs_dir / PNG_NAME.format(run_id=run.run_id)
    settings = {"max_points": max_points, "seed": seed, "p": p, "include_embedding": include_embedding,
                "ripser": bool(use_ripser and has_ripser())}
    cached: dict[int, dict[str, Any]] = {}
    if reuse and csv_path.is_file() and meta_path.is_file():
        try:  # a summary that cannot be read (even one nested 200,000 deep) only means: compute again
            meta = C.read_json(meta_path, "topology summary", finite=False)
            if isinstance(meta, dict) and meta.get("settings") == settings:
                cached = {r["step"]: r for r in read_csv(csv_path)}
        except (ToolError, ValueError, KeyError, OSError):
            cached = {}
    rows = []
    seconds = []
    iterator: Iterable = ckpts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ckpts, desc=f"checkpoints of {run.run_id}", file=sys.stderr)
    for step, path in iterator:
        if step in cached:
            feats_row = {k: v for k, v in cached[step].items()
                         if k not in ("step", "val_loss", "val_bpb", "val_source")}
        else:
            feats = checkpoint_features(load_weights(path), max_points=max_points, seed=seed, p=p,
                                        include_embedding=include_embedding, use_ripser=use_ripser)
            seconds.append(feats["seconds"])
            feats_row = flat_features(feats)
        loss, source = val_at(run.val_steps, run.val_loss, step)
        bpb, _ = val_at(run.val_steps, run.val_bpb, step)
        rows.append({"step": step, "val_loss": loss, "val_bpb": bpb, "val_source": source, **feats_row})
    columns = [k for k in rows[0] if k not in ("step", "val_loss", "val_bpb", "val_source")]
    spearman = spearman_table(rows, columns)
    write_csv(csv_path, rows)
    summary = {"run_id": run.run_id, "log": str(run.log_path), "csv": str(csv_path), "settings": settings,
               "checkpoints": len(rows), "computed": len(seconds),
               "seconds_per_checkpoint": float(np.mean(seconds)) if seconds else None,
               "spearman_vs_val_loss": spearman}
    if plot:
        plot_run(png_path, rows, spearman, f"{run.run_id}: model-mean features (blue) and val_loss (red)")
        summary["png"] = str(png_path)
    C.atomic_write(meta_path, json.dumps(summary, indent=1, allow_nan=True) + "\n")
    summary["rows"] = rows
    return summary


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.0f}" if v == int(v) and abs(v) < 1e9 else f"{v:.4g}"
    return str(v)


def print_features(feats: dict[str, Any]) -> None:
    header = ["matrix", "shape"] + list(FEATURES) + ["sec"]
    table = [header]
    for r in feats["matrices"]:
        table.append([r["name"], "x".join(map(str, r["shape"]))] + [_fmt(r[f]) for f in FEATURES]
                     + [f"{r['seconds']:.2f}"])
    for layer, vals in feats["layers"].items():
        table.append([f"layer {layer} (mean)", ""] + [_fmt(vals[f]) for f in FEATURES] + [""])
    table.append(["model (mean)", ""] + [_fmt(feats["model"][f]) for f in FEATURES] + [""])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    s = feats["settings"]
    print(f"{len(feats['matrices'])} matrices in {feats['seconds']:.2f} s (max_points={s['max_points']} "
          f"seed={s['seed']} p={s['p']} ripser={'yes' if s['ripser'] else 'no (pip install ripser for H1)'})")


def _json_dump(obj: Any) -> str:
    return json.dumps(C.finite_or_none(obj), indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Topological features (neural persistence, Vietoris-Rips "
                                     "H0/H1 of the rows) of a checkpoint's weight matrices, or over a run.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--max-points", type=int, default=200, help="rows subsampled for Vietoris-Rips (default 200; 0 = all)")
        sp.add_argument("--seed", type=int, default=0, help="subsampling seed (default 0)")
        sp.add_argument("--p", type=float, default=2.0, help="p of the neural persistence p-norm (default 2)")
        sp.add_argument("--include-embedding", action="store_true", help="also the 2-D tensors named *emb* (layer 'emb')")
        sp.add_argument("--no-h1", action="store_true", help="skip ripser's H1 even when it is installed")
        sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sp = sub.add_parser("features", help="features of one checkpoint (.ckpt, models/<RUN_ID>.safetensors or an artifact)")
    sp.add_argument("ckpt")
    common(sp)
    sp = sub.add_parser("run", help="features at every checkpoint of a run: CSV + Spearman vs val_loss + PNG")
    sp.add_argument("target", help="logs/<RUN_ID>.txt, logs/<RUN_ID>.json, or the run's OUT_DIR / checkpoint dir")
    common(sp)
    sp.add_argument("--no-reuse", action="store_true", help="recompute rows already in the CSV")
    sp.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.max_points < 0:
        raise ToolError("--max-points must be >= 0")
    if args.p < 1:
        raise ToolError("--p must be >= 1")
    if args.cmd == "features":
        feats = checkpoint_features(load_weights(args.ckpt), max_points=args.max_points, seed=args.seed,
                                    p=args.p, include_embedding=args.include_embedding,
                                    use_ripser=not args.no_h1, progress=not args.json)
        if args.json:
            print(_json_dump(feats))
        else:
            print_features(feats)
    else:
        res = run_features(args.target, max_points=args.max_points, seed=args.seed, p=args.p,
                           include_embedding=args.include_embedding, use_ripser=not args.no_h1,
                           reuse=not args.no_reuse, progress=not args.json, plot=not args.no_plot)
        if args.json:
            print(_json_dump(res))
        else:
            print(f"{res['checkpoints']} checkpoints ({res['computed']} computed) -> {res['csv']}")
            if res.get("png"):
                print(f"plot -> {res['png']}")
            print("Spearman correlation with val_loss (model means):")
            for col, s in res["spearman_vs_val_loss"].items():
                if col.startswith("model_"):
                    print(f"  {col:<16} rho={_fmt(s['rho']):>8}  p={_fmt(s['p']):>8}  n={s['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
