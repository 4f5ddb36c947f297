"""Features over all checkpoints of a run (python -m studies.topology.topology run)."""
import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch

import train_gpt
from studies.topology import predict_loss as P
from studies.topology import topology as T
from tests.helpers import module_command, subprocess_env

torch.set_num_threads(1)


def make_run(out: Path, run_id="tiny", steps=(10, 20, 30, 40, 50), total=50):
    """Checkpoints whose weights grow with the step, and a log whose val_loss falls with it."""
    g = torch.Generator().manual_seed(0)
    base = {f"blocks.{i}.{n}": torch.randn(*shape, generator=g)
            for i in range(2) for n, shape in [("attn.q.weight", (16, 16)), ("mlp.fc.weight", (64, 16))]}
    base["blocks.0.resid_mix"] = torch.ones(2, 16)
    for s in steps:
        tensors = {f"model.{k}": v * (1 + s / 10) for k, v in base.items()}
        train_gpt.save_tensors(out / "checkpoints" / run_id / f"step_{s:06d}.ckpt", tensors, {"step": s})
    source = "step:{s}/{n} val_loss:{x}"  # a format string in the source: not a validation line
    lines = [f"===== train_gpt.py source begin ({len(source)} bytes) =====", source,
             "===== train_gpt.py source end ====="]
    for s in (0,) + tuple(steps[::2]):  # validation every 20 steps: steps 10, 30, 50 + 0
        lines.append(f"step:{s}/{total} val_loss:{5 - s / 20:.4f} val_bpb:{(5 - s / 20) * 1.4:.4f} train_time:1ms")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / f"{run_id}.txt").write_text("\n".join(lines) + "\n")
    return out / "logs" / f"{run_id}.txt"


@pytest.mark.slow
def test_run_writes_csv_spearman_and_png_next_to_the_log(tmp_path):
    log = make_run(tmp_path)
    res = T.run_features(log, max_points=20, use_ripser=False, progress=False)
    csv_path = tmp_path / "logs" / "tiny.topology.csv"
    assert Path(res["csv"]) == csv_path and (tmp_path / "logs" / "tiny.topology.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50]
    assert [r["val_source"] for r in rows] == ["logged", "interpolated", "logged", "interpolated", "logged"]
    assert float(rows[1]["val_loss"]) == pytest.approx(4.0)
    assert {"model_np_norm", "model_h0_total", "layer0_fro", "layer1_h0_total"} <= set(rows[0])
    # Weights scale up with the step while the loss falls: size-dependent features anti-correlate perfectly.
    assert res["spearman_vs_val_loss"]["model_h0_total"]["rho"] == pytest.approx(-1.0)
    assert res["spearman_vs_val_loss"]["model_fro"]["rho"] == pytest.approx(-1.0)
    meta = json.loads((tmp_path / "logs" / "tiny.topology.json").read_text())
    assert meta["checkpoints"] == 5 and meta["computed"] == 5


def test_run_reuses_rows_computed_with_the_same_settings(tmp_path):
    log = make_run(tmp_path)
    T.run_features(log, max_points=20, use_ripser=False, progress=False, plot=False)
    again = T.run_features(tmp_path, max_points=20, use_ripser=False, progress=False, plot=False)
    assert again["computed"] == 0 and again["checkpoints"] == 5
    other = T.run_features(log, max_points=10, use_ripser=False, progress=False, plot=False)
    assert other["computed"] == 5


def test_run_features_feed_the_predictor(tmp_path):
    log = make_run(tmp_path)
    T.run_features(log, max_points=20, use_ripser=False, progress=False, plot=False)
    run = P.read_run(log)
    assert sorted(run.features) == [10, 20, 30, 40, 50]
    vec = P.prefix_feature_vector(run, 0.5)  # checkpoints 10 and 20 are inside the first 25 steps
    assert vec["model_fro"] == pytest.approx(run.features[20]["model_fro"])
    assert vec["d_model_fro"] == pytest.approx(run.features[20]["model_fro"] - run.features[10]["model_fro"])


@pytest.mark.slow
def test_features_cli_on_a_checkpoint_prints_json(tmp_path):
    make_run(tmp_path)
    ckpt = tmp_path / "checkpoints" / "tiny" / "step_000010.ckpt"
    r = subprocess.run(module_command("studies.topology.topology", "features", ckpt, "--max-points", 20, "--no-h1",
                                      "--json"), env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [m["name"] for m in out["matrices"]] == ["blocks.0.attn.q.weight", "blocks.0.mlp.fc.weight",
                                                     "blocks.1.attn.q.weight", "blocks.1.mlp.fc.weight"]
    assert out["model"]["h1_total"] is None and out["settings"]["max_points"] == 20


@pytest.mark.slow
def test_run_cli_without_checkpoints_is_a_one_line_error(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.txt").write_text("step:10/10 val_loss:3.0 val_bpb:4.0\n")
    r = subprocess.run(module_command("studies.topology.topology", "run", tmp_path / "logs" / "x.txt"),
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "checkpoints" in r.stderr
