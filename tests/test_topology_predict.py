"""Early prediction of the final loss and the sweep's early-stop rule (studies/topology/predict_loss.py)."""
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from studies.topology import predict_loss as P
from tests.helpers import module_command, subprocess_env
from tools.common import ToolError


def power_law(t, a=2.0, b=0.5, c=1.5):
    return a * np.asarray(t, dtype=float) ** -b + c


def write_log(path: Path, steps, losses, total, bpb_ratio=1.4, with_source=True):
    lines = []
    if with_source:  # the embedded source holds format strings that look like log lines: they must be skipped
        source = "step:1/1 val_loss:0.0001 val_bpb:0.0001 (inside the source)"
        lines += [f"===== train_gpt.py source begin ({len(source)} bytes) =====", source,
                  "===== train_gpt.py source end ====="]
    lines += ["hparam ITERATIONS=%d" % total]
    for s, v in zip(steps, losses):
        lines.append(f"step:{s}/{total} train_loss:{v + 0.05:.4f} train_time:1ms step_avg:1.00ms tok/s:1")
        lines.append(f"step:{s}/{total} val_loss:{v:.6f} val_bpb:{v * bpb_ratio:.6f} train_time:1ms step_avg:1.00ms")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_curve_fit_recovers_the_floor_of_a_noisy_power_law():
    rng = np.random.default_rng(0)
    t = np.arange(100, 10001, 100)
    y = power_law(t) + rng.normal(0, 0.002, t.size)
    fit = P.fit_power_law(t, y)
    assert fit.method == "fit"
    assert fit.c == pytest.approx(1.5, abs=0.03)
    assert fit.b == pytest.approx(0.5, abs=0.1)
    # From the first 30% only, the final value is still predicted closely.
    k = t <= 3000
    assert P.predict_curve(t[k], y[k], 10000) == pytest.approx(power_law(10000), abs=0.01)


def test_curve_fit_is_exact_on_a_clean_power_law_and_ignores_step_zero():
    t = np.array([0, 50, 100, 200, 400, 800, 1600])
    y = power_law(np.maximum(t, 1), a=3.0, b=0.7, c=2.0)
    y[0] = 9.9  # the loss at initialisation is off the law and at t = 0 the law is infinite
    fit = P.fit_power_law(t, y)
    assert (fit.a, fit.b, fit.c) == pytest.approx((3.0, 0.7, 2.0), rel=1e-3)


def test_curve_fit_with_few_points_stays_finite_and_bounded():
    assert P.fit_power_law([100], [3.0]).method == "constant"
    assert P.predict_curve([100], [3.0], 1000) == 3.0
    two = P.fit_power_law([100, 200], [3.0, 2.8])
    assert two.method == "fixed-b" and 0 <= two.c <= 2.8
    assert 0 < P.predict_curve([100, 200, 300], [3.0, 2.8, 2.75], 1000) <= 2.75
    flat = P.fit_power_law([10, 20, 30, 40, 50], [2.0, 2.0, 2.0, 2.0, 2.0])
    assert flat(1000) == pytest.approx(2.0)
    with pytest.raises(ToolError):
        P.fit_power_law([0], [5.0])


def test_should_stop_stops_a_hopeless_run_only_after_min_fraction():
    t = np.arange(100, 5001, 100)
    bad = power_law(t, c=1.7)  # ends near 1.73; the best finished run reached 1.50
    early = {"steps": t[:10].tolist(), "values": bad[:10].tolist(), "total_steps": 5000}  # 20% done
    stop, pred, reason = P.should_stop(early, best_final=1.50, margin=0.02, min_fraction=0.3)
    assert not stop and "min_fraction" in reason and pred == pytest.approx(1.7283, abs=0.02)
    later = {"steps": t[:15].tolist(), "values": bad[:15].tolist(), "total_steps": 5000}  # 30% done
    stop, pred, reason = P.should_stop(later, best_final=1.50, margin=0.02, min_fraction=0.3)
    assert stop and pred > 1.52 and "> best" in reason


def test_should_stop_keeps_a_promising_run_and_respects_the_margin():
    t = np.arange(100, 5001, 100)
    good = power_law(t, c=1.45)
    prefix = P.Prefix(t[:25].tolist(), good[:25].tolist(), 5000)
    stop, pred, _ = P.should_stop(prefix, best_final=1.50, margin=0.02, min_fraction=0.3)
    assert not stop and pred < 1.50
    # Slightly worse than the best but within the margin: keep it.
    close = power_law(t, c=1.51)
    stop, pred, _ = P.should_stop(P.Prefix(t[:25].tolist(), close[:25].tolist(), 5000), 1.50, margin=0.05)
    assert not stop and 1.50 < pred < 1.55
    # Nothing finished yet: never stop.
    assert P.should_stop(prefix, None)[0] is False


def test_should_stop_reads_a_log_being_written(tmp_path):
    t = np.arange(0, 2001, 100)
    losses = power_law(np.maximum(t, 1), c=1.8)
    log = tmp_path / "logs" / "r1.txt"
    write_log(log, t[:9], losses[:9], total=4000, bpb_ratio=1.4)  # 800 / 4000 = 20% done
    stop, pred, reason = P.should_stop(log, best_final=1.5 * 1.4, margin=0.02, min_fraction=0.15)
    assert stop and pred == pytest.approx(power_law(4000, c=1.8) * 1.4, abs=0.05)
    stop, _, _ = P.should_stop(log, best_final=1.5, margin=0.02, min_fraction=0.15, metric="val_loss")
    assert stop


def test_read_run_parses_log_and_skips_the_embedded_source(tmp_path):
    t = [0, 100, 200, 300]
    write_log(tmp_path / "logs" / "r2.txt", t, [5.0, 3.0, 2.5, 2.3], total=300)
    run = P.read_run(tmp_path)  # an OUT_DIR with one log
    assert run.run_id == "r2" and run.total_steps == 300
    assert run.val_steps.tolist() == t and run.final_loss == pytest.approx(2.3)
    assert run.final_bpb == pytest.approx(2.3 * 1.4)
    assert run.checkpoint_dir == tmp_path / "checkpoints" / "r2"


def test_read_run_uses_the_json_summary_when_there_is_no_log(tmp_path):
    import json

    (tmp_path / "logs").mkdir()
    summary = {"run_id": "r3", "iterations": 200, "val_loss": 2.0, "val_bpb": 2.8,
               "val_history": [{"step": 100, "val_loss": 2.5, "val_bpb": 3.5},
                               {"step": 200, "val_loss": 2.1, "val_bpb": 2.9}]}
    (tmp_path / "logs" / "r3.json").write_text(json.dumps(summary))
    run = P.read_run(tmp_path / "logs" / "r3.json")
    assert run.val_steps.tolist() == [100, 200] and run.roundtrip_bpb == 2.8 and run.total_steps == 200


def _synthetic_runs(n=6, seed=0):
    """Runs whose final loss sits below the power law by an amount a feature announces early."""
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n):
        t = np.arange(0, 3001, 100)
        c = 1.5 + 0.1 * rng.standard_normal()
        drop = 0.05 + 0.1 * rng.random()  # a late-training gain (warmdown) the curve cannot see
        y = power_law(np.maximum(t, 1), c=c)
        y[-5:] -= drop * np.linspace(0.2, 1.0, 5)
        feats = {s: {"model_np_norm": 0.3 + s / 3000 * 0.1, "model_h0_total": 100.0 + 500 * drop + 0.001 * s}
                 for s in range(0, 3001, 300)}
        runs.append(P.RunData(f"s{i}", 3000, t, y, y * 1.4, features=feats))
    return runs


def test_backtest_reports_mae_per_predictor_and_features_help_when_they_carry_signal():
    res = P.backtest(_synthetic_runs(), fractions=(0.3, 0.5), alpha=0.1)
    for f in ("0.3", "0.5"):
        row = res["fractions"][f]
        assert row["n_curve"] == row["n_curve+topo"] == 6
        assert row["curve+topo"] < row["curve+bias"] <= row["curve"] + 1e-9
    assert len(res["rows"]) == 12


def test_backtest_without_features_reports_only_the_curve_predictors():
    runs = _synthetic_runs(3)
    for r in runs:
        r.features = {}
    row = P.backtest(runs, fractions=(0.5,))["fractions"]["0.5"]
    assert math.isfinite(row["curve"]) and math.isfinite(row["curve+bias"]) and math.isnan(row["curve+topo"])


@pytest.mark.slow
def test_predict_and_backtest_cli(tmp_path):
    t = np.arange(0, 2001, 100)
    for i, c in enumerate([1.5, 1.6, 1.7]):
        write_log(tmp_path / f"run{i}" / "logs" / f"r{i}.txt", t, power_law(np.maximum(t, 1), c=c), total=2000)
    tool = "studies.topology.predict_loss"
    r = subprocess.run(module_command(tool, "predict", tmp_path / "run0" / "logs" / "r0.txt", "--fraction", 0.5,
                                      "--json"), env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["predicted"] == pytest.approx(power_law(2000), abs=0.01)
    r = subprocess.run(module_command(tool, "backtest", *(tmp_path / f"run{i}" for i in range(3))),
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "curve+topo" in r.stdout and "20%" in r.stdout
    r = subprocess.run(module_command(tool, "predict", tmp_path / "missing"), env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error:")
