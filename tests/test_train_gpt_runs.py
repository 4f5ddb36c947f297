"""End-to-end CPU runs of train_gpt.py: determinism, warm-up undone, 1 vs 2 processes, kill -9 and resume,
non-finite loss, the final log lines and json, and one-line errors for bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import train_gpt as tg
from tests.helpers import TRAIN_GPT, final_exact, run_concurrently, run_train, tiny_env, train_losses

# The runs compared with the reference, by the test that reads them: each its own process, started with the reference.
ALONGSIDE = {"test_same_seed_gives_the_same_loss_at_every_step": {"same_seed": {}, "seed7": dict(SEED=7, RUN_ID="seed7")},
             "test_compile_warm_up_steps_are_undone": {"warm_up": dict(WARMUP_STEPS=3)}}


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory, request) -> dict:
    """The reference tiny run (fp32 so that process-count comparisons can be tight) and, at the same time, the runs of
    ALONGSIDE that this session's tests read: {name: (OUT_DIR, result)}."""
    selected = {getattr(item, "originalname", None) for item in request.session.items}
    settings = {"reference": {}, **{name: extra for test, named in ALONGSIDE.items() if test in selected
                                    for name, extra in named.items()}}
    outs = {name: tmp_path_factory.mktemp(name) for name in settings}
    results = run_concurrently(*(lambda name=name: run_train(tiny_env(tiny_data, outs[name], BF16=0, **settings[name]))
                                 for name in settings))
    return {name: (outs[name], result) for name, result in zip(settings, results)}


@pytest.fixture(scope="module")
def reference(runs):
    out, result = runs["reference"]
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_log_and_json_hold_the_final_figures(reference):
    out, stdout = reference
    log = (out / "logs" / "tiny.txt").read_text()
    source = TRAIN_GPT.read_text()
    assert log.startswith(f"===== train_gpt.py source begin ({len(TRAIN_GPT.read_bytes())} bytes) =====\n{source}")
    assert "===== train_gpt.py source end =====" in log and "untrained train_loss:" in log and "ln(vocab):5.5607" in log
    summary = json.loads((out / "logs" / "tiny.json").read_text())
    exact = final_exact(log)
    assert exact == f"final_int8_zlib_roundtrip_exact val_loss:{summary['val_loss']:.8f} val_bpb:{summary['val_bpb']:.8f}"
    rounded = [l for l in log.splitlines() if l.startswith("final_int8_zlib_roundtrip val_loss:")][0]
    assert rounded.startswith(f"final_int8_zlib_roundtrip val_loss:{summary['val_loss']:.4f} val_bpb:{summary['val_bpb']:.4f} eval_time:")
    artifact = (out / "models" / "tiny.ptz").stat().st_size
    scheme = summary["artifact_scheme"]
    assert f"artifact scheme: {scheme} file: {out / 'models' / 'tiny.ptz'}" in log
    assert f"Serialized model {scheme}: {artifact} bytes" in log
    assert f"Code size: {len(tg.shipped_code(TRAIN_GPT.read_bytes()))} bytes" in log  # counted as it ships
    assert summary["bytes_total"] == artifact + len(tg.shipped_code(TRAIN_GPT.read_bytes())) == summary["bytes_model"] + summary["bytes_code"]
    assert f"Total submission size {scheme}: {summary['bytes_total']} bytes (margin to 16000000: {16000000 - summary['bytes_total']} bytes)" in log
    assert summary["steps"] == 8 and [v["step"] for v in summary["val_history"]] == [4, 8]
    losses = train_losses(stdout)
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0  # it learns
    assert log.rstrip().endswith(exact)


@pytest.mark.slow
def test_same_seed_gives_the_same_loss_at_every_step(runs, reference):
    result = runs["same_seed"][1]  # the reference's settings, in a process of its own
    assert train_losses(result.stdout) == train_losses(reference[1])
    assert final_exact(result.stdout) == final_exact(reference[1])
    other_seed = runs["seed7"][1]
    assert train_losses(other_seed.stdout) != train_losses(reference[1])


@pytest.mark.slow
def test_compile_warm_up_steps_are_undone(runs, reference):
    result = runs["warm_up"][1]  # WARMUP_STEPS=3
    assert result.returncode == 0, result.stderr
    assert train_losses(result.stdout) == train_losses(reference[1])
    assert final_exact(result.stdout) == final_exact(reference[1])


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(tiny_data, reference, tmp_path):
    result = run_train(tiny_env(tiny_data, tmp_path, BF16=0), nproc=2)
    assert result.returncode == 0, result.stderr
    assert "world_size:2 grad_accum_steps:4" in result.stdout
    # Same global batch, same order: only the gradient sum order differs (DDP's all-reduce), and the steps amplify
    # those last-bit differences into a small relative drift.
    one_losses, two_losses = train_losses(reference[1]), train_losses(result.stdout)
    assert two_losses[:2] == one_losses[:2]
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-3)
    one = float(final_exact(reference[1]).split("val_bpb:")[1])
    two = float(final_exact(result.stdout).split("val_bpb:")[1])
    assert two == pytest.approx(one, rel=1e-3)


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_same_final_loss(tiny_data, reference, tmp_path):
    env = tiny_env(tiny_data, tmp_path, BF16=0, CHECKPOINT_EVERY=2)
    proc = subprocess.Popen([sys.executable, str(TRAIN_GPT)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt_dir = tmp_path / "checkpoints" / "tiny"
    deadline = time.time() + 120
    while not list(ckpt_dir.glob("step_*.ckpt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(ckpt_dir.glob("step_*.ckpt"))
    assert done and not (tmp_path / "models" / "tiny.ptz").exists(), "the run was not interrupted mid-way"
    resumed = run_train({**env, "RESUME": str(done[-1])})
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {done[-1]} at step {int(done[-1].stem.split('_')[1])}" in resumed.stdout
    assert final_exact(resumed.stdout) == final_exact(reference[1])


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tiny_data, tmp_path):
    # a weight decay that overturns the matrices (learning rates are bounded now): the loss is NaN from step 3 on
    result = run_train(tiny_env(tiny_data, tmp_path, WEIGHT_DECAY="1e30", CHECKPOINT_EVERY=1, TRAIN_LOG_EVERY=0))
    assert result.returncode != 0
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: non-finite train loss at step ")
    kept = Path(err[0].split("last checkpoint kept: ")[1])
    assert kept.exists() and not (tmp_path / "models" / "tiny.ptz").exists()


def _error_of(env) -> str:
    result = run_train(env, timeout=120)
    assert result.returncode == 1, result.stdout[-500:] + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.slow
def test_bad_input_stops_at_once_with_one_line(tiny_data, tmp_path):
    truncated, bad_magic = tmp_path / "truncated", tmp_path / "bad_magic"
    for broken in (truncated, bad_magic):
        broken.mkdir()
        for f in tiny_data.iterdir():
            (broken / f.name).write_bytes(f.read_bytes())
    raw = (tiny_data / "tiny_train_000001.bin").read_bytes()
    (truncated / "tiny_train_000001.bin").write_bytes(raw[:-10])
    (bad_magic / "tiny_train_000001.bin").write_bytes(b"\x00" * 4 + raw[4:])
    cases = [(tiny_env(tiny_data, tmp_path, NUM_LAYERS="two"), "NUM_LAYERS='two'"),
             (tiny_env(tmp_path / "missing", tmp_path), "is not a directory"),
             (tiny_env(tiny_data, tmp_path, VOCAB_SIZE=1024), "VOCAB_SIZE=1024"),
             (tiny_env(tiny_data, tmp_path, EVAL_SEQ_LEN=100000, EVAL_STRIDE=64), "shorter than one sequence"),
             (tiny_env(truncated, tmp_path), "tiny_train_000001.bin"),
             (tiny_env(bad_magic, tmp_path), "magic")]
    # each its own process, all at once (a RUN_ID each, so that none can meet another's files or lock)
    errors = run_concurrently(*(lambda env=env, i=i: _error_of({**env, "RUN_ID": f"bad{i}"}) for i, (env, _) in enumerate(cases)))
    for (_, message), error in zip(cases, errors):
        assert message in error, (message, error)
