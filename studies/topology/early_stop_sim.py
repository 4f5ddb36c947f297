#!/usr/bin/env python3
"""Replay finished runs as a sweep with early stopping, to measure what `--early-stop-margin` would save.

The runs are taken in the given order (the order a sweep driver ran them), or in many random orders.
For each run, at every validation step after `min_fraction` of the run, `predict_loss.should_stop` is asked
with the run's validation history up to that step and the best final pre-quantization val_bpb of the runs
finished before it (runs that were stopped do not count as finished). The first `stop=True` ends the run.

Reported per (margin, min_fraction):
  saved_steps   fraction of all training steps the stopped runs would not have run
  saved_time    the same weighted by each run's measured train_time (sizes differ in cost per step)
  stopped       how many runs were stopped
  wrong         stopped runs whose real final val_bpb was <= (best finished at the time) + margin,
                i.e. the rule's own criterion was not met in hindsight
  near_best     stopped runs whose real final val_bpb was <= the whole sweep's best + margin
  lost_best     stopped runs that were the best of the whole sweep
  best_found    whether the sweep's best run was among the runs that finished

    python -m studies.topology.early_stop_sim runs/topology_study/*/ --margins 0.02 0.05 0.1 --min-fractions 0.2 0.3 0.5
    python -m studies.topology.early_stop_sim RUNS... --orders 200 --seed 0 --json
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from studies.topology.predict_loss import RunData, read_run, should_stop
import common as C
from common import ToolError
from tools.runs import logparse


def train_time_ms(run: RunData) -> float:
    """The train_time of the run's last validation line (0 when absent)."""
    if run.log_path is None or Path(run.log_path).suffix != ".txt":
        return 0.0
    times = [p.train_time_ms for p in logparse.parse_log(run.log_path).val if p.train_time_ms is not None]
    return times[-1] if times else 0.0


def simulate(runs: list[RunData], margin: float, min_fraction: float, bias: float = 0.0) -> dict:
    """One sweep over `runs` in this order. Returns the totals and one row per run."""
    best_overall = min(r.final_bpb for r in runs)
    best = None
    rows = []
    for run in runs:
        steps, vals = run.val_steps.tolist(), run.val_bpb.tolist()
        stop_step, predicted, reason = None, None, "finished"
        for k, s in enumerate(steps):
            if s >= run.final_step:
                break
            stop, pred, why = should_stop({"steps": steps[:k + 1], "values": vals[:k + 1],
                                           "total_steps": run.final_step},
                                          best, margin=margin, min_fraction=min_fraction, metric="val_bpb",
                                          bias=bias)
            if stop:
                stop_step, predicted, reason = s, pred, why
                break
        row = {"run_id": run.run_id, "final_bpb": run.final_bpb, "best_before": best, "stop_step": stop_step,
               "total_steps": run.final_step, "predicted": predicted, "reason": reason}
        if stop_step is None:
            best = run.final_bpb if best is None else min(best, run.final_bpb)
            row["wrong"] = False
        else:
            row["wrong"] = bool(run.final_bpb <= row["best_before"] + margin)
        row["lost_best"] = bool(stop_step is not None and run.final_bpb == best_overall)
        row["near_best"] = bool(stop_step is not None and run.final_bpb <= best_overall + margin)
        rows.append(row)
    total = sum(r.final_step for r in runs)
    saved = sum(r["total_steps"] - r["stop_step"] for r in rows if r["stop_step"] is not None)
    times = [train_time_ms(r) for r in runs]
    ttot = sum(times)
    tsaved = sum(t * (row["total_steps"] - row["stop_step"]) / row["total_steps"]
                 for t, row in zip(times, rows) if row["stop_step"] is not None)
    return {"margin": margin, "min_fraction": min_fraction, "saved_steps": saved / total if total else 0.0,
            "saved_time": tsaved / ttot if ttot else math.nan,
            "stopped": sum(r["stop_step"] is not None for r in rows),
            "wrong": sum(r["wrong"] for r in rows),
            "near_best": sum(r["near_best"] for r in rows), "lost_best": sum(r["lost_best"] for r in rows),
            "best_found": not any(r["lost_best"] for r in rows), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("runs", nargs="+", help="finished runs (logs/<RUN_ID>.txt or the run's OUT_DIR), in sweep order")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.02, 0.05, 0.1], help="absolute, in val_bpb")
    ap.add_argument("--min-fractions", type=float, nargs="+", default=[0.3])
    ap.add_argument("--bias", type=float, default=0.0, help="added to every curve prediction")
    ap.add_argument("--orders", type=int, default=0,
                    help="also average over this many random orders of the runs (default 0: the given order only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = [read_run(r) for r in args.runs]
    bad = [r.run_id for r in runs if r.val_steps.size < 2]
    if bad:
        raise ToolError(f"runs without validation history: {', '.join(bad)}")
    rng = random.Random(args.seed)
    perms = [rng.sample(runs, len(runs)) for _ in range(args.orders)]
    out = []
    for m in args.margins:
        for f in args.min_fractions:
            res = simulate(runs, m, f, args.bias)
            if perms:
                sims = [simulate(p, m, f, args.bias) for p in perms]
                res["random_orders"] = {k: sum(float(s[k]) for s in sims) / len(sims)
                                        for k in ("saved_steps", "saved_time", "stopped", "wrong", "near_best", "lost_best",
                                                  "best_found")}
                res["random_orders"]["n"] = len(sims)
            out.append(res)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print("| margin | min fraction | saved steps | saved time | stopped | wrong stops | near best | lost best |"
          + (" random orders (mean): saved steps / stopped / wrong / near best / best lost (share) |"
             if perms else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if perms else ""))
    for r in out:
        line = (f"| {r['margin']:g} | {r['min_fraction']:g} | {r['saved_steps']:.1%} | {r['saved_time']:.1%} | "
                f"{r['stopped']}/{len(runs)} | {r['wrong']} | {r['near_best']} | {r['lost_best']} |")
        if perms:
            q = r["random_orders"]
            line += (f" {q['saved_steps']:.1%} / {q['stopped']:.2f} / {q['wrong']:.2f} / {q['near_best']:.2f} / "
                     f"{q['lost_best']:.0%} |")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
