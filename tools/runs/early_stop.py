"""The sweep driver's default early-stop rule: fit a power law L(t) = a t^-b + c to a run's validation points so far,
extrapolate it to the run's last step, and stop the run when the prediction is worse than the best finished run by
more than a margin.

    from tools.runs.early_stop import should_stop
    stop, predicted, reason = should_stop("logs/run7.txt", best_final=1.32, margin=0.02, min_fraction=0.3)

`python -m tools sweep run --early-stop-margin M` calls should_stop; the topology study (studies/topology/) uses the
same fit and measures how well it predicts (its report.md). The rule lives here, in the tool, so that tools never
import a study.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common import ToolError
from tools.runs import logparse

B_BOUNDS = (0.01, 3.0)
B_PRIOR = 0.5  # exponent used when there are too few points (2 or 3) to fit it
MIN_POINTS_FULL_FIT = 4


# ----------------------------------------------------------------------------- the loss-curve fit

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


# ----------------------------------------------------------------------------- the rule

@dataclass
class Prefix:
    """A run in progress: validation steps and values so far, and the step it will end at."""
    steps: Sequence[int]
    values: Sequence[float]
    total_steps: int


def read_prefix(path: Path, metric: str) -> Prefix:
    """The validation points of a log (finished or still being written) and the N of its `step:S/N` lines."""
    run = logparse.parse_log(path)
    values = [p.val_loss if metric == "val_loss" else p.val_bpb for p in run.val]
    total = max((p.total for p in run.train + run.val), default=0)
    return Prefix([p.step for p in run.val], values, total)


def as_prefix(prefix: Any, metric: str) -> Prefix:
    """A Prefix from a Prefix, a dict with its keys (what the sweep driver passes), a log path, or any run object with
    val_steps, val_loss, val_bpb and total_steps (the topology study's RunData)."""
    if isinstance(prefix, Prefix):
        return prefix
    if isinstance(prefix, dict):
        return Prefix(list(prefix["steps"]), list(prefix["values"]), int(prefix["total_steps"]))
    if isinstance(prefix, (str, Path)):
        return read_prefix(Path(prefix), metric)
    if all(hasattr(prefix, k) for k in ("val_steps", "val_loss", "val_bpb", "total_steps")):
        values = prefix.val_loss if metric == "val_loss" else prefix.val_bpb
        return Prefix(list(np.asarray(prefix.val_steps).tolist()), list(np.asarray(values).tolist()),
                      int(prefix.total_steps))
    raise TypeError(f"prefix must be a log path, Prefix, dict or run, not {type(prefix).__name__}")


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
    p = as_prefix(prefix, metric)
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
