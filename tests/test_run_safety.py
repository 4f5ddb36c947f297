"""train_gpt.py under misuse: runs never replace each other's files, bad settings and bad resume files stop the run
with one line before any training, stale temporary files are cleaned, and nothing is lost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import (TRAIN_GPT, copy_of_run, final_exact, make_byte_dataset, run_concurrently, run_train,
                           tiny_env, tiny_trained_env, write_shard)
import train_gpt as tg


def _start(env, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=cwd or env["OUT_DIR"])


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a run that had to stop with status 1."""
    assert result.returncode == 1, result.stdout[-800:] + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _error_of(env, cwd=None) -> str:
    return _error_line(_start(env, cwd))


def _errors_of(*envs) -> list[str]:
    """The error lines of several runs that must each stop with one, started at the same time."""
    return [_error_line(r) for r in run_concurrently(*(lambda env=env: _start(env) for env in envs))]


@pytest.mark.parametrize("name, value, message", [
    ("BETA2", "2", "BETA2=2.0 must be in [0, 1)"),
    ("BETA1", "-0.1", "BETA1=-0.1 must be in [0, 1)"),
    ("MUON_MOMENTUM", "1.5", "MUON_MOMENTUM=1.5 must be in [0, 1)"),
    ("ADAM_EPS", "-1", "ADAM_EPS=-1.0 must be positive"),
    ("TIED_EMBED_INIT_STD", "-1", "TIED_EMBED_INIT_STD=-1.0 must be in (0, 100]"),
    ("SEED", "1" * 24, "SEED=111111111111111111111111 must be in [0, 9223372036854775808)"),
    ("SCALAR_LR", "-0.1", "SCALAR_LR=-0.1 must be in [0, 1000]"),
    ("MATRIX_LR", "nan", "MATRIX_LR=nan must be a finite number"),
    ("MAX_WALLCLOCK_SECONDS", "inf", "MAX_WALLCLOCK_SECONDS=inf must be a finite number"),
    ("RUN_ID", "../escape", "RUN_ID='../escape' must be letters, digits"),
    ("RUN_ID", "a/b", "RUN_ID='a/b' must be letters, digits"),
    ("ARTIFACT", "int9+zlib", "'int9' needs a width of 2 to 8 bits"),
    ("ARTIFACT", "int6+gzip", "must look like int6+brotli"),
    ("QAT_BITS", "12", "QAT_BITS='12' must be one of 0, auto, 2, 3, 4, 5, 6, 7, 8"),
    # finite, but past float32 (the weights' type): a traceback at the model's construction or the first step
    ("QK_GAIN_INIT", "1e39", "QK_GAIN_INIT=1e+39 must be a finite number (below 3.4e38)"),
    ("TIED_EMBED_INIT_STD", "1e30", "TIED_EMBED_INIT_STD=1e+30 must be in (0, 100]"),
    ("MATRIX_LR", "1e308", "MATRIX_LR=1e+308 must be a finite number"),
    ("TTT_LORA_LR", "3e38", "TTT_LORA_LR=3e+38 must be in [0, 1000]"),
    ("ARTIFACT", "int6-gptq-gptq+zlib", "'int6-gptq-gptq+zlib' gives a part twice"),
    ("ARTIFACT", "int6-emb8-emb6+zlib", "gives a part twice"),
    ("ARTIFACT", "int6+zlib-", "must look like int6+brotli"),  # a dash with no level
    ("ARTIFACT", "int\u00b2+zlib", "must look like int6+brotli"),  # digits Python's isdigit() accepts and int() refuses
    ("ARTIFACT", "int6+zlib-\u00b2", "must look like int6+brotli"),
])
def test_settings_out_of_range_are_refused_before_training(name, value, message):
    with pytest.raises(tg.GolfError) as e:
        tg.Hyperparameters.from_env({name: value})
    assert message in str(e.value)


@pytest.mark.slow
def test_the_same_run_id_never_replaces_an_earlier_run(tiny_trained, tmp_path):
    data, earlier, _ = tiny_trained
    copy_of_run(earlier, tmp_path)  # the files of a finished run with RUN_ID=tiny
    env = tiny_env(data, tmp_path, ITERATIONS=2, VAL_LOSS_EVERY=0)
    log = (tmp_path / "logs" / "tiny.txt").read_text()
    artifact = (tmp_path / "models" / "tiny.ptz").read_bytes()
    assert "error: RUN_ID=tiny already has files in" in _error_of({**env, "SEED": "7"})
    assert (tmp_path / "logs" / "tiny.txt").read_text() == log and (tmp_path / "models" / "tiny.ptz").read_bytes() == artifact
    replaced = run_train({**env, "SEED": "7", "REPLACE_RUN": "1"})
    assert replaced.returncode == 0, replaced.stderr
    assert "hparam SEED=7" in (tmp_path / "logs" / "tiny.txt").read_text()


@pytest.mark.slow
def test_default_run_ids_do_not_collide_and_runs_in_one_folder_keep_their_own_files(tiny_data, tmp_path):
    assert len({tg.default_run_id() for _ in range(50)}) == 50
    env = {k: v for k, v in tiny_env(tiny_data, tmp_path, ITERATIONS=2, VAL_LOSS_EVERY=0).items() if k != "RUN_ID"}
    procs = [subprocess.Popen([sys.executable, str(TRAIN_GPT)], env={**env, "SEED": str(s)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "logs").glob("*.json"))]
    assert len(summaries) == 2 and len({s["run_id"] for s in summaries}) == 2
    for s in summaries:
        assert (tmp_path / s["artifact"]).is_file() and (tmp_path / "logs" / f"{s['run_id']}.txt").is_file()
    assert len(list((tmp_path / "models").glob("*.ptz"))) == 2


@pytest.mark.slow
def test_out_dir_that_is_a_file_stops_the_run_with_one_line(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    message, below = run_concurrently(lambda: _error_of(tiny_env(tiny_data, blocker), cwd=tmp_path),
                                      lambda: _error_of(tiny_env(tiny_data, blocker / "sub"), cwd=tmp_path))
    assert message.startswith(f"error: OUT_DIR={blocker} is not a writable folder")
    assert "is not a writable folder" in below


@pytest.mark.slow
def test_a_run_stopped_by_bad_input_leaves_no_files_that_block_the_next(failed_starts_then_a_run):
    # RUN_ID=fixme: the bad input's start, then (after another failed start) the run that must not be blocked
    starts = failed_starts_then_a_run
    assert "VOCAB_SIZE=1024" in _error_line(starts["bad_input"])
    assert not starts["log_after_bad_input"]
    assert starts["run"].returncode == 0, starts["run"].stderr[-2000:]


@pytest.mark.slow
def test_resume_refuses_files_that_are_not_this_runs_checkpoints(tiny_trained, tmp_path):
    data, base, _ = tiny_trained  # a finished run with checkpoints at steps 3 and 6
    env = tiny_trained_env(data, tmp_path)
    ckpt = base / "checkpoints" / "tiny" / "step_000003.ckpt"
    raw = base / "models" / "tiny.safetensors"
    other = make_byte_dataset(tmp_path / "other", train_docs=310)
    tensors, meta = tg.load_tensors(ckpt)
    missing = {k: v for k, v in tensors.items() if not k.startswith("opt1.")}
    tg.save_tensors(tmp_path / "missing.ckpt", missing, meta)
    reshaped = {k: (v[:1] if k.endswith("q.weight") else v) for k, v in tensors.items()}
    tg.save_tensors(tmp_path / "reshaped.ckpt", reshaped, meta)
    tg.save_tensors(tmp_path / "odd.ckpt", tensors, {**meta, "opt_groups": "nonsense", "step": "x"})
    (tmp_path / "torn.ckpt").write_bytes(ckpt.read_bytes()[:1000])
    errors = _errors_of({**env, "RUN_ID": "r1", "RESUME": str(raw)},
                        {**env, "RUN_ID": "r2", "RESUME": str(ckpt), "DATA_PATH": str(other)},
                        {**env, "RUN_ID": "r3", "RESUME": str(ckpt), "MODEL_DIM": "32"},
                        {**env, "RUN_ID": "r4", "RESUME": str(tmp_path / "missing.ckpt")},
                        {**env, "RUN_ID": "r5", "RESUME": str(tmp_path / "reshaped.ckpt")},
                        {**env, "RUN_ID": "r6", "RESUME": str(tmp_path / "odd.ckpt")},
                        {**env, "RUN_ID": "r7", "RESUME": str(tmp_path / "torn.ckpt")})
    expected = ["is not a training checkpoint", "was made on another dataset", "different model configuration",
                "is damaged or incompatible", "is damaged or incompatible", "is damaged or incompatible", "torn.ckpt"]
    for message, error in zip(expected, errors):
        assert message in error, (message, error)


@pytest.mark.slow
def test_a_resumed_run_logged_in_a_new_folder_starts_its_log_with_the_source(tiny_trained, tmp_path):
    data, first, _ = tiny_trained  # its checkpoint at step 3, resumed in another folder
    resumed = run_train(tiny_trained_env(data, tmp_path, RESUME=first / "checkpoints" / "tiny" / "step_000003.ckpt"))
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "logs" / "tiny.txt").read_text().startswith("===== train_gpt.py source begin (")


@pytest.mark.slow
def test_stale_temporary_files_of_dead_processes_are_removed_at_the_next_start(failed_starts_then_a_run):
    starts = failed_starts_then_a_run  # temporaries of a dead process and of this live one, then a run in that folder
    assert starts["run"].returncode == 0, starts["run"].stderr[-2000:]
    assert not any(p.exists() for p in starts["stale"]) and starts["alive"].exists()


@pytest.mark.slow
def test_evaluation_batch_is_clipped_to_the_windows_and_absurd_batches_are_refused_up_front(tiny_data, tmp_path):
    long_val = tmp_path / "longval"
    long_val.mkdir()
    for f in tiny_data.iterdir():
        (long_val / f.name).write_bytes(f.read_bytes())
    write_shard(long_val / "tiny_val_000000.bin", np.tile(np.arange(4, 200), 1500))
    ok, huge = run_concurrently(
        lambda: run_train(tiny_env(tiny_data, tmp_path, RUN_ID="big", ITERATIONS=2, EVAL_BATCH_SEQS=2_000_000)),
        lambda: _start(tiny_env(long_val, tmp_path, RUN_ID="huge", EVAL_BATCH_SEQS=2_000_000, EVAL_STRIDE=1, EVAL_SEQ_LEN=1024)))
    assert ok.returncode == 0, ok.stderr
    message = _error_line(huge)
    assert "evaluation (EVAL_BATCH_SEQS=2000000) needs about" in message and not (tmp_path / "logs" / "huge.txt").exists()


@pytest.mark.slow
def test_final_lines_are_those_of_the_artifact_on_disk(tiny_trained, tmp_path):
    """EVAL_ARTIFACT scores a shipped artifact with the same code: the final exact line is reproduced."""
    data, run, stdout = tiny_trained
    blob = bytearray((run / "models" / "tiny.ptz").read_bytes())
    blob[-5] ^= 0x10
    (tmp_path / "flipped.ptz").write_bytes(bytes(blob))
    again, flipped = run_concurrently(
        lambda: run_train(tiny_trained_env(data, tmp_path, RUN_ID="rescore", EVAL_ARTIFACT=run / "models" / "tiny.ptz",
                                           NUM_LAYERS=5)),  # the artifact's own config wins over shape settings
        lambda: _start(tiny_trained_env(data, tmp_path, RUN_ID="flip", EVAL_ARTIFACT=tmp_path / "flipped.ptz")))
    assert again.returncode == 0, again.stderr
    assert final_exact(again.stdout) == final_exact(stdout)
    assert "integrity check failed" in _error_line(flipped)


def test_non_finite_weights_in_an_artifact_are_refused():
    cfg = tg.ModelConfig(vocab_size=260, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=0)
    state = {k: v.float() for k, v in tg.GPT(cfg).state_dict().items()}
    state["blocks.0.attn_scale"][3] = float("nan")
    from dataclasses import asdict
    blob = tg.pack_artifact(state, asdict(cfg), tg.Scheme.parse("int8+zlib"))
    with pytest.raises(tg.GolfError, match="holds non-finite weights"):
        tg.unpack_artifact(blob)


@pytest.mark.slow
def test_a_step_fitted_to_the_cap_fits_and_is_the_finest_that_does():
    torch.manual_seed(0)
    cfg = tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=128, bigram_dim=16)
    state = {k: (v + 0.02 * torch.randn_like(v)).float() for k, v in tg.GPT(cfg).state_dict().items()}
    from dataclasses import asdict, replace
    scheme = tg.Scheme.parse("int8-emb8-sd-gptq+brotli")
    int8 = len(tg.pack_artifact(state, asdict(cfg), tg.Scheme.parse("int8-emb8+brotli")))
    budget = int(int8 * 0.8)
    fitted, tensors, info, forecast = tg.quantize_candidate(state, scheme, None, {}, int(budget / tg.FORECAST_MARGIN))
    blob = tg.encode_artifact(tensors, info, asdict(cfg), fitted)
    assert forecast * tg.FORECAST_MARGIN <= budget and len(blob) <= budget
    assert fitted.sd > 0 and fitted.spec.startswith("int8-emb8-bigram8-sd")
    finer = tg.pack_artifact(state, asdict(cfg), replace(fitted, sd=fitted.sd * 0.9))
    assert len(finer) > budget * 0.97  # a 10% finer step would (nearly) not fit: the budget is used
    assert tg.unpack_artifact(blob)[1]["scheme"] == fitted.spec


def test_a_step_the_user_gives_is_shipped_as_given():
    """ARTIFACT=int8-emb8-sd10+zlib far under the cap: the step stays 10 (it used to be fitted again, to fill the cap,
    as if a bare sd had been asked for)."""
    torch.manual_seed(0)
    cfg = tg.ModelConfig(vocab_size=260, num_layers=1, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=16)
    state = {k: (v + 0.02 * torch.randn_like(v)).float() for k, v in tg.GPT(cfg).state_dict().items()}
    h = tg.Hyperparameters(artifact="int8-emb8-sd10+zlib")
    logged = []
    from dataclasses import asdict
    blob, scheme = tg.choose_artifact(state, asdict(cfg), h, 30_000, None, None, logged.append)
    assert scheme.sd == 10 and tg.unpack_artifact(blob)[1]["scheme"] == scheme.spec == "int8-emb8-bigram8-sd10+zlib"
    assert not any("fitting the step again" in line for line in logged), logged


@pytest.mark.parametrize("value", ["\u00b2", "-1", "x", ""])
def test_process_numbers_that_int_cannot_read_are_refused_in_one_line(value, monkeypatch):
    monkeypatch.setenv("RANK", value)  # '\u00b2' passes str.isdigit() and fails int()
    with pytest.raises(tg.GolfError, match="RANK=.* must be a non-negative integer"):
        tg.process_number("RANK", 0)
