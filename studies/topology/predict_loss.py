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
and from Python, for a sweep driver (`python -m tools sweep run --early-stop-margin M` calls it):
    from studies.topology.predict_loss import should_stop
    stop, predicted, reason = should_stop("logs/run7.txt", best_final=1.32, margin=0.02, min_fraction=0.3)
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

B_BOUNDS = (0.01, 3.0)
B_PRIOR = 0.5  # exponent used when there are too few points (2 or 3) to fit it
MIN_POINTS_FULL_FIT = 4


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
# The loss-curve fit
# ----------------------------------------------------------------------------------------------

@dataclass
class PowerLaw:
    """L(t) = a * t^(-b) + c."""
    a: float
    b: float
    c: float
    n_points: int
    method: str  # "constant" | "fixed-b" | "fit"

    def __call__(self, t: Any) -> Any:
        return self.a * np.power(np.asarray(t, dtype=np.float64), -self.b) + self.c


def _fit_ac(x: np.ndarray, y: np.ndarray, c_max: float) -> tuple[float, float, float]:
    """Least squares of y = a*x + c with a >= 0 and 0 <= c <= c_max; returns (a, c, sse)."""
    xm, ym = x.mean(), y.mean()
    var = float(np.sum((x - xm) ** 2))
    a = float(np.sum((x - xm) * (y - ym)) / var) if var > 0 else 0.0
    a = max(a, 0.0)
    c = ym - a * xm
    if not 0.0 <= c <= c_max:
        c = min(max(c, 0.0), c_max)
        sxx = float(np.sum(x * x))
        a = max(float(np.sum(x * (y - c)) / sxx), 0.0) if sxx > 0 else 0.0
    sse = float(np.sum((a * x + c - y) ** 2))
    return float(a), float(c), sse


def fit_power_law(steps: Sequence[float], losses: Sequence[float]) -> PowerLaw:
    """Fit L(t) = a t^-b + c to the points with step > 0 and a finite loss.

    Bounds: a >= 0, b in [0.01, 3], 0 <= c <= min(loss). 1 point: constant. 2-3 points: b fixed at 0.5 and
    (a, c) by least squares. 4+ points: a grid over b with (a, c) solved in closed form for each b, then
    scipy.optimize.curve_fit refines from the best grid point (its result is kept only if it is better)."""
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = (t > 0) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if t.size == 0:
        raise ToolError("no validation points after step 0 to fit")
    if t.size == 1:
        return PowerLaw(0.0, B_PRIOR, float(y[0]), 1, "constant")
    c_max = float(y.min())
    if t.size < MIN_POINTS_FULL_FIT:
        a, c, _ = _fit_ac(t ** -B_PRIOR, y, c_max)
        return PowerLaw(a, B_PRIOR, c, int(t.size), "fixed-b")
    best = None
    for b in np.geomspace(B_BOUNDS[0], B_BOUNDS[1], 80):
        a, c, sse = _fit_ac(t ** -b, y, c_max)
        if best is None or sse < best[3]:
            best = (a, float(b), c, sse)
    a, b, c, sse = best
    try:
        import warnings

        from scipy.optimize import curve_fit

        scale = float(t.max())  # fit in t/scale so a stays O(loss)
        a0 = a * scale ** -b
        lo = [0.0, B_BOUNDS[0], 0.0]
        hi = [np.inf, B_BOUNDS[1], max(c_max, 1e-12)]
        p0 = [max(a0, 1e-12), min(max(b, lo[1]), hi[1]), min(max(c, 0.0), hi[2])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _ = curve_fit(lambda x, A, B, C: A * np.power(x, -B) + C, t / scale, y, p0=p0,
                                bounds=(lo, hi), maxfev=2000)
        A, B, C = (float(v) for v in popt)
        a2 = A * scale ** B
        sse2 = float(np.sum((a2 * t ** -B + C - y) ** 2))
        if np.isfinite(sse2) and sse2 < sse:
            a, b, c = a2, B, C
    except (RuntimeError, ValueError, ImportError):
        pass
    return PowerLaw(a, b, c, int(t.size), "fit")


def predict_curve(steps: Sequence[float], losses: Sequence[float], final_step: int) -> float:
    """The fitted curve's value at final_step."""
    return float(fit_power_law(steps, losses)(final_step))


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
# Early stopping for sweeps
# ----------------------------------------------------------------------------------------------

@dataclass
class Prefix:
    """A run in progress: validation steps and values so far, and the step it will end at."""
    steps: Sequence[int]
    values: Sequence[float]
    total_steps: int


def _as_prefix(prefix: Any, metric: str) -> Prefix:
    if isinstance(prefix, Prefix):
        return prefix
    if isinstance(prefix, dict):
        return Prefix(list(prefix["steps"]), list(prefix["values"]), int(prefix["total_steps"]))
    if isinstance(prefix, RunData):
        values = prefix.val_loss if metric == "val_loss" else prefix.val_bpb
        return Prefix(prefix.val_steps.tolist(), values.tolist(), prefix.total_steps)
    if isinstance(prefix, (str, Path)):
        parsed = parse_log(Path(prefix))
        steps = sorted(parsed["val"])
        idx = 0 if metric == "val_loss" else 1
        return Prefix(steps, [parsed["val"][s][idx] for s in steps], parsed["total_steps"])
    raise TypeError(f"prefix must be a log path, Prefix, dict or RunData, not {type(prefix).__name__}")


def should_stop(prefix: Any, best_final: float | None, margin: float = 0.02, min_fraction: float = 0.3,
                metric: str = "val_bpb", bias: float = 0.0) -> tuple[bool, float | None, str]:
    """Should a sweep stop this run now?

    prefix:       the run so far: the path of its log being written (`step:S/N val_loss:X val_bpb:Y` lines;
                  N is taken as the final step), or Prefix(steps, values, total_steps), or a dict with those keys.
    best_final:   the best final `metric` among finished runs (lower is better; compare like with like: the
                  curve predicts the last pre-quantization validation value), or None when there is none yet.
    margin:       stop only when predicted > best_final + margin (absolute, in units of `metric`).
    min_fraction: never stop before this fraction of total_steps is done.
    bias:         added to the curve prediction (e.g. the mean residual measured by `backtest`).
    Returns (stop, predicted final value or None, one-line reason)."""
    p = _as_prefix(prefix, metric)
    pts = [(s, v) for s, v in zip(p.steps, p.values) if s > 0 and math.isfinite(v)]
    if p.total_steps <= 0:
        return False, None, "total steps unknown"
    done = max((s for s, _ in pts), default=0) / p.total_steps
    if len(pts) < 2:
        return False, None, f"too few validation points ({len(pts)}) to fit"
    predicted = predict_curve([s for s, _ in pts], [v for _, v in pts], p.total_steps) + bias
    if done < min_fraction:
        return False, predicted, f"{done:.0%} done < min_fraction {min_fraction:.0%}"
    if best_final is None or not math.isfinite(best_final):
        return False, predicted, "no finished run to compare with"
    if predicted > best_final + margin:
        return True, predicted, (f"predicted final {metric} {predicted:.4f} > best {best_final:.4f} + margin "
                                 f"{margin:g} at {done:.0%} of the run")
    return False, predicted, (f"predicted final {metric} {predicted:.4f} <= best {best_final:.4f} + margin "
                              f"{margin:g} at {done:.0%} of the run")


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
