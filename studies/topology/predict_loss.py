#!/usr/bin/env python3
"""Predict a run's final validation loss from a prefix of it, and backtest the predictors.

Predictors (all extrapolate to the run's final step):
* curve        L(t) = a * t^(-b) + c fitted to the validation points logged so far (steps > 0).
* curve+bias   curve plus the mean residual (final - curve prediction) of the other runs at the same fraction.
* curve+topo   curve plus a ridge regression of that residual on the topology features at the latest checkpoint
               of the prefix (and their change since the first checkpoint), fitted on the other runs
               (leave-one-run-out in the backtest). Needs logs/<RUN_ID>.topology.csv from `topology.py run`.

Usage:
    python -m studies.topology.predict_loss predict LOG_or_RUN [--fraction 0.3] [--json]
    python -m studies.topology.predict_loss backtest RUN [RUN ...] [--fractions 0.2 0.3 0.5] [--json]
The curve fit and the early-stop rule `should_stop` that `python -m tools sweep run --early-stop-margin M` calls are
the tool's (tools/runs/early_stop.py); this study measures how well they predict, and re-exports them.
See studies/topology/README.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import common as C
from common import ToolError
from tools.runs import logparse
# The loss-curve fit and the sweep's early-stop rule live in the tool (tools/runs/early_stop.py), so that tools never
# import a study; they are re-exported here, where the study's predictors and backtests use them.
from tools.runs.early_stop import (  # noqa: F401
    B_BOUNDS,
    B_PRIOR,
    MIN_POINTS_FULL_FIT,
    PowerLaw,
    Prefix,
    fit_power_law,
    predict_curve,
    should_stop,
)


# ----------------------------------------------------------------------------------------------
# Reading runs
# ----------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """What the predictors need of one run. Arrays are sorted by step."""
    run_id: str
    total_steps: int                      # N of the `step:S/N` lines (ITERATIONS)
    val_steps: np.ndarray
    val_loss: np.ndarray
    val_bpb: np.ndarray
    log_path: Path | None = None
    checkpoint_dir: Path | None = None
    roundtrip_loss: float = math.nan
    roundtrip_bpb: float = math.nan
    features: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> model_<f> columns

    @property
    def final_step(self) -> int:
        """The step the run actually ended at (its last validation), which may be < total_steps
        when a wallclock cap stopped it."""
        return int(self.val_steps[-1]) if self.val_steps.size else 0

    @property
    def final_loss(self) -> float:
        return float(self.val_loss[-1]) if self.val_loss.size else math.nan

    @property
    def final_bpb(self) -> float:
        return float(self.val_bpb[-1]) if self.val_bpb.size else math.nan


def parse_log(path: Path) -> dict[str, Any]:
    """What the predictors need of a training log (finished or still being written), read by tools/runs/logparse.py:
    {"val": {step: (val_loss, val_bpb)}, "total_steps": N of the step lines, "roundtrip": (val_loss, val_bpb) of the
    final round trip (nan while the run is unfinished)}."""
    run = logparse.parse_log(path)
    final = (run.exact_val_loss, run.exact_val_bpb) if run.finished else (math.nan, math.nan)
    return {"val": {p.step: (p.val_loss, p.val_bpb) for p in run.val},
            "total_steps": max((p.total for p in run.train + run.val), default=0), "roundtrip": final}


def _resolve(target: str | Path) -> tuple[str, Path | None, Path | None, Path]:
    """(run_id, log .txt or None, summary .json or None, out_dir) of a log, summary, OUT_DIR or checkpoint dir."""
    p = Path(target)
    if p.is_file():
        run_id = p.stem
        logs = p.parent
        txt, js = logs / f"{run_id}.txt", logs / f"{run_id}.json"
        return run_id, (txt if txt.is_file() else None), (js if js.is_file() else None), logs.parent
    if p.is_dir():
        if p.parent.name == "checkpoints":  # OUT_DIR/checkpoints/<RUN_ID>
            run_id, out_dir = p.name, p.parent.parent
        else:
            logs = sorted((p / "logs").glob("*.txt"))
            if len(logs) != 1:
                names = ", ".join(x.stem for x in logs) or "none"
                raise ToolError(f"{p}: expected exactly one logs/<RUN_ID>.txt, found {names}; pass the log itself")
            run_id, out_dir = logs[0].stem, p
        txt, js = out_dir / "logs" / f"{run_id}.txt", out_dir / "logs" / f"{run_id}.json"
        return run_id, (txt if txt.is_file() else None), (js if js.is_file() else None), out_dir
    raise ToolError(f"no such run, log or directory: {p}")


def read_features_csv(path: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out[int(r["step"])] = {k: (float(v) if v not in ("", None) else math.nan)
                                   for k, v in r.items() if k.startswith("model_")}
    return out


def read_run(target: str | Path) -> RunData:
    """A run from its log (logs/<RUN_ID>.txt), its json summary, its OUT_DIR or its checkpoint directory.
    The log's validation lines win; the summary's val_history fills in when there is no log."""
    run_id, txt, js, out_dir = _resolve(target)
    if txt is None and js is None:
        raise ToolError(f"no logs/{run_id}.txt or logs/{run_id}.json for {target}")
    val: dict[int, tuple[float, float]] = {}
    total = 0
    roundtrip = (math.nan, math.nan)
    if txt is not None:
        parsed = parse_log(txt)
        val, total, roundtrip = parsed["val"], parsed["total_steps"], parsed["roundtrip"]
    if js is not None and not val:
        summary = C.read_json(js, "summary")
        try:
            for item in summary.get("val_history") or []:
                val[int(item["step"])] = (float(item["val_loss"]), float(item.get("val_bpb", math.nan)))
            total = int(summary.get("iterations") or summary.get("steps") or (max(val) if val else 0))
            roundtrip = (float(summary.get("val_loss", math.nan)), float(summary.get("val_bpb", math.nan)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ToolError(f"{js}: not a run summary ({type(exc).__name__}: {exc})") from None
    steps = np.array(sorted(val), dtype=np.int64)
    run = RunData(
        run_id=run_id,
        total_steps=total or (int(steps[-1]) if steps.size else 0),
        val_steps=steps,
        val_loss=np.array([val[s][0] for s in steps], dtype=np.float64),
        val_bpb=np.array([val[s][1] for s in steps], dtype=np.float64),
        log_path=txt if txt is not None else js,
        checkpoint_dir=out_dir / "checkpoints" / run_id,
        roundtrip_loss=roundtrip[0],
        roundtrip_bpb=roundtrip[1],
    )
    csv_path = (txt or js).parent / f"{run_id}.topology.csv"
    if csv_path.is_file():
        try:
            run.features = read_features_csv(csv_path)
        except (KeyError, ValueError) as exc:
            raise ToolError(f"{csv_path}: not a topology features table ({type(exc).__name__}: {exc})") from None
    return run


# ----------------------------------------------------------------------------------------------
# Prefixes and the combined predictor
# ----------------------------------------------------------------------------------------------

def prefix_points(run: RunData, fraction: float, metric: str = "val_loss") -> tuple[np.ndarray, np.ndarray]:
    """Validation points logged up to fraction * final_step."""
    cut = fraction * run.final_step
    keep = run.val_steps <= cut + 1e-9
    values = run.val_loss if metric == "val_loss" else run.val_bpb
    return run.val_steps[keep], values[keep]


def prefix_feature_vector(run: RunData, fraction: float) -> dict[str, float] | None:
    """Model-mean features at the latest checkpoint within the prefix, plus their change since the first
    checkpoint (`d_` prefix). None when the run has no features in the prefix."""
    cut = fraction * run.final_step
    steps = sorted(s for s in run.features if s <= cut + 1e-9)
    if not steps:
        return None
    last, first = run.features[steps[-1]], run.features[steps[0]]
    vec = {}
    for k, v in last.items():
        vec[k] = v
        vec["d_" + k] = v - first.get(k, math.nan)
    return {k: v for k, v in vec.items() if math.isfinite(v)}


@dataclass
class Ridge:
    """Ridge regression on standardised features with an unpenalised intercept."""
    alpha: float = 1.0
    columns: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: float = 0.0

    def fit(self, rows: list[dict[str, float]], y: Sequence[float]) -> "Ridge":
        cols = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
        X = np.array([[r[c] for c in cols] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))
        y = np.asarray(y, dtype=np.float64)
        self.columns = cols
        self.mean = X.mean(axis=0) if X.size else np.zeros(len(cols))
        std = X.std(axis=0) if X.size else np.ones(len(cols))
        self.std = np.where(std > 0, std, 1.0)
        Z = (X - self.mean) / self.std
        self.intercept = float(y.mean()) if y.size else 0.0
        if cols:
            yc = y - self.intercept
            self.coef = np.linalg.solve(Z.T @ Z + self.alpha * np.eye(len(cols)), Z.T @ yc)
        else:
            self.coef = np.zeros(0)
        return self

    def predict(self, row: dict[str, float]) -> float:
        if not self.columns:
            return self.intercept
        x = np.array([row.get(c, m) for c, m in zip(self.columns, self.mean)], dtype=np.float64)
        return float(self.intercept + ((x - self.mean) / self.std) @ self.coef)


def curve_prediction(run: RunData, fraction: float, metric: str = "val_loss") -> float:
    steps, values = prefix_points(run, fraction, metric)
    return predict_curve(steps, values, run.final_step)


def backtest(runs: list[RunData], fractions: Sequence[float] = (0.2, 0.3, 0.5), alpha: float = 1.0,
             metric: str = "val_loss") -> dict[str, Any]:
    """Leave-one-run-out backtest. For each run and fraction: the curve prediction, the curve plus the
    other runs' mean residual, and the curve plus a ridge on the features fitted to the other runs' residuals.
    Returns {"fractions": {f: {predictor: MAE}}, "rows": [...]}. The target is the run's last logged value
    of `metric` (pre-quantization)."""
    if not runs:
        raise ToolError("backtest needs at least one finished run")
    rows = []
    table: dict[str, dict[str, float]] = {}
    for f in fractions:
        info = []
        for run in runs:
            target = run.final_loss if metric == "val_loss" else run.final_bpb
            try:
                pred = curve_prediction(run, f, metric)
            except ToolError:
                pred = math.nan
            info.append((run, target, pred, prefix_feature_vector(run, f)))
        errs: dict[str, list[float]] = {"curve": [], "curve+bias": [], "curve+topo": []}
        for i, (run, target, pred, feats) in enumerate(info):
            others = [x for j, x in enumerate(info) if j != i and math.isfinite(x[2])]
            row = {"run_id": run.run_id, "fraction": f, "target": target, "curve": pred,
                   "curve+bias": math.nan, "curve+topo": math.nan}
            if math.isfinite(pred):
                if others:
                    row["curve+bias"] = pred + float(np.mean([o[1] - o[2] for o in others]))
                with_feats = [o for o in others if o[3]]
                if feats and len(with_feats) >= 2:
                    model = Ridge(alpha).fit([o[3] for o in with_feats], [o[1] - o[2] for o in with_feats])
                    row["curve+topo"] = pred + model.predict(feats)
            for k in errs:
                if math.isfinite(row[k]):
                    errs[k].append(abs(row[k] - target))
            rows.append(row)
        table[str(f)] = {k: (float(np.mean(v)) if v else math.nan) for k, v in errs.items()}
        table[str(f)].update({f"n_{k}": len(v) for k, v in errs.items()})
    return {"metric": metric, "runs": [r.run_id for r in runs], "fractions": table, "rows": rows}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict a run's final validation loss from a prefix; "
                                     "backtest the predictors over finished runs.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("predict", help="fit the loss curve of (a prefix of) one run and extrapolate")
    sp.add_argument("run", help="logs/<RUN_ID>.txt, its .json summary, or the run's OUT_DIR")
    sp.add_argument("--fraction", type=float, default=1.0, help="use only the first fraction of the run (default all)")
    sp.add_argument("--metric", choices=("val_loss", "val_bpb"), default="val_loss")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("backtest", help="MAE of each predictor at fractions of finished runs (leave-one-run-out)")
    sp.add_argument("runs", nargs="+", help="finished runs (logs, summaries or OUT_DIRs)")
    sp.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    sp.add_argument("--alpha", type=float, default=1.0, help="ridge penalty (default 1)")
    sp.add_argument("--metric", choices=("val_loss", "val_bpb"), default="val_loss")
    sp.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "predict":
        if not 0 < args.fraction <= 1:
            raise ToolError("--fraction must be in (0, 1]")
        run = read_run(args.run)
        steps, values = prefix_points(run, args.fraction, args.metric)
        target_step = run.final_step if args.fraction < 1 else run.total_steps
        fit = fit_power_law(steps, values)
        out = {"run_id": run.run_id, "metric": args.metric, "points": int(fit.n_points),
               "fit": {"a": fit.a, "b": fit.b, "c": fit.c, "method": fit.method},
               "final_step": target_step, "predicted": float(fit(target_step)),
               "actual_last": float(values[-1]) if len(values) else None}
        if args.json:
            print(json.dumps(C.finite_or_none(out), indent=1))
        else:
            print(f"{run.run_id}: {fit.n_points} points; L(t) = {fit.a:.4g} * t^-{fit.b:.3f} + {fit.c:.4f} "
                  f"({fit.method}); predicted {args.metric} at step {target_step}: {out['predicted']:.4f}")
    else:
        if any(not 0 < f <= 1 for f in args.fractions):
            raise ToolError("--fractions must be in (0, 1]")
        runs = [read_run(r) for r in args.runs]
        for r in runs:
            if r.val_steps.size == 0:
                raise ToolError(f"{r.run_id}: no validation points")
        res = backtest(runs, args.fractions, args.alpha, args.metric)
        if args.json:
            print(json.dumps(C.finite_or_none(res), indent=1))
        else:
            with_feats = sum(1 for r in runs if r.features)
            print(f"{len(runs)} runs ({with_feats} with topology features); MAE of the final {args.metric}:")
            print(f"{'fraction':>8}  {'curve':>9}  {'curve+bias':>10}  {'curve+topo':>10}")
            for f, row in res["fractions"].items():
                cells = [f"{row[k]:.4f}" if math.isfinite(row[k]) else "-" for k in ("curve", "curve+bias", "curve+topo")]
                print(f"{float(f):>8.0%}  {cells[0]:>9}  {cells[1]:>10}  {cells[2]:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
