"""Nothing after training can throw a run away (issue 23): what can fail later is checked before training, a run's
files are its own while it lives, a settings that would not do what it says is refused, and crafted inputs end in
one line. Each case was a traceback, a silent result or a lost run before."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import asdict

import numpy as np
import pytest
import torch

import train_gpt as tg
from data import check_dataset
from tests.helpers import (TRAIN_GPT, copy_of_run, run_concurrently, run_train, tiny_env, tiny_trained_env,
                           trained_like_state, write_shard)
from tools import common as C


def start(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=env["OUT_DIR"])


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a train_gpt.py run that had to stop with status 1 (and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def one_error_line(env: dict) -> str:
    return error_line(start(env))


REFUSED_BEFORE_TRAINING = [
    ({"NUM_LAYERS": "200000"}, "NUM_LAYERS=200000 must be in [1, 1024]"),
    ({"NUM_LAYERS": "1000", "MODEL_DIM": "8192", "NUM_HEADS": "64", "NUM_KV_HEADS": "8"}, "training needs about"),
    ({"TTT": "lora", "TTT_LORA_RANK": "1000000000"}, "TTT_LORA_RANK=1000000000 must be at most MODEL_DIM=64"),
    ({"CPU_THREADS": "100000"}, "CPU_THREADS=100000 threads on"),
    ({"OMP_NUM_THREADS": "100000"}, "OMP_NUM_THREADS=100000 threads on"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must divide 8"),
    ({"WORLD_SIZE": "x"}, "WORLD_SIZE='x' must be a non-negative integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "with RANK=5 below it"),
    ({"ARTIFACT": "int6-gptq+zlib", "GPTQ_BATCHES": "0"}, "asks for GPTQ but GPTQ_BATCHES=0"),
    ({"ARTIFACT": "int8-packed+zlib"}, "packed needs a width below 8"),
    ({"QAT_BITS": "4", "WARMDOWN_ITERS": "0"}, "QAT_BITS=4 would never start at QAT_LR_SCALE=0.15: the LR multiplier never falls below 1.0"),
    ({"SWA_EVERY": "2", "MIN_LR": "0.9"}, "SWA_EVERY=2 would never average below SWA_BELOW=0.5"),
    ({"EMA_DECAY": "0.9", "EMA_START": "50"}, "EMA_START=50 is past ITERATIONS=8"),
    ({"LOOP_REPEATS": "1", "LOOP_AT": "1"}, "LOOP_AT=1 would never turn depth recurrence on"),
    ({"EVAL_ARTIFACT": "x.ptz", "RESUME": "y.ckpt"}, "EVAL_ARTIFACT scores an artifact and RESUME trains"),
]


@pytest.fixture(scope="module")
def refusals(tiny_data, tmp_path_factory, request) -> dict[str, tuple]:
    """For each case of the test below that this session runs: (its OUT_DIR, the result of its run), every case its
    own train_gpt.py process, started at the same time as the others."""
    cases = {item.callspec.id: item.callspec.params["settings"] for item in request.session.items
             if getattr(item, "originalname", None) == "test_what_would_fail_or_do_nothing_after_training_is_refused_before_it"}
    outs = {case: tmp_path_factory.mktemp("refused") for case in cases}
    results = run_concurrently(*(lambda case=case: start(tiny_env(tiny_data, outs[case], **cases[case])) for case in cases))
    return {case: (outs[case], result) for case, result in zip(cases, results)}


@pytest.mark.parametrize("settings, message", REFUSED_BEFORE_TRAINING)
def test_what_would_fail_or_do_nothing_after_training_is_refused_before_it(settings, message, refusals, request):
    out, result = refusals[request.node.callspec.id]
    error = error_line(result)
    assert message in error, error
    assert not (out / "logs" / "tiny.txt").exists()  # nothing left behind to block the RUN_ID


def test_a_validation_split_that_stands_for_no_bytes_is_refused_by_the_run_and_by_check_dataset(tiny_data, tmp_path, capsys):
    data = tmp_path / "bos_only"
    data.mkdir()
    for f in tiny_data.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    write_shard(data / "tiny_val_000000.bin", np.ones(5000, dtype=np.uint16))  # every token a BOS: zero bytes
    assert "the validation targets stand for no bytes" in one_error_line(tiny_env(data, tmp_path))
    assert C.run_cli(check_dataset.main, [str(data)]) == 1
    assert "stand for no bytes" in capsys.readouterr().err
    assert tg.validate_dataset(tiny_data, tiny_data / "bytes.json", 260)["val"]["bytes"] > 0


@pytest.mark.slow
def test_a_log_that_cannot_be_written_leaves_nothing_that_blocks_the_run_id(failed_starts_then_a_run):
    # RUN_ID=fixme started with files over 16 KiB refused (a full disk), then, after another start, with room
    starts = failed_starts_then_a_run
    assert "cannot write the log" in error_line(starts["no_room"])
    assert not starts["log_after_no_room"]
    assert starts["run"].returncode == 0, starts["run"].stderr[-2000:]  # the same RUN_ID runs once there is room


@pytest.mark.slow
def test_a_live_run_keeps_its_run_id_against_replace_run_and_resume(tiny_trained, tmp_path):
    data, finished, _ = tiny_trained
    copy_of_run(finished, tmp_path)  # the files of a run with RUN_ID=tiny and its checkpoints
    env = tiny_trained_env(data, tmp_path)
    checkpoint = tmp_path / "checkpoints" / "tiny" / "step_000003.ckpt"
    live = tg.lock_run_id(tmp_path / "logs" / ".tiny.lock", "tiny")  # this process now plays the run that is still training
    try:
        errors = run_concurrently(lambda: one_error_line({**env, "REPLACE_RUN": "1"}),
                                  lambda: one_error_line({**env, "RESUME": str(checkpoint)}))
        for error in errors:
            assert f"RUN_ID=tiny belongs to a run that is still running (pid {os.getpid()})" in error
    finally:
        live.close()
    log = (tmp_path / "logs" / "tiny.txt").read_text()
    assert sum(line.startswith("===== train_gpt.py source begin") for line in log.splitlines()) == 1  # nothing appended
    assert "hparam REPLACE_RUN=True" not in log
    replaced = run_train({**env, "REPLACE_RUN": "1", "ITERATIONS": "2", "CHECKPOINT_EVERY": "0"})
    assert replaced.returncode == 0, replaced.stderr[-2000:]  # once it is gone, the files can be replaced


@pytest.mark.slow
def test_a_failure_after_training_keeps_the_weights_and_says_how_to_score_them(no_scheme_fits):
    out, _, run = no_scheme_fits  # SIZE_CAP_BYTES that no scheme meets: the run fails after training
    assert run.returncode == 1 and "no artifact scheme fits" in run.stderr
    raw = out / "models" / "huge.safetensors"
    assert raw.is_file() and f"the trained weights are saved in {raw}: score them with `python -m tools score {raw}" in run.stdout


# ----------------------------------------------------------------------------- crafted tensor files

CFG = tg.ModelConfig(vocab_size=260, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=0)
STATE = trained_like_state(CFG, 0)


def safetensors(header: dict, data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def deep(n: int) -> bytes:
    head = b"[" * n + b"]" * n
    return struct.pack("<Q", len(head)) + head


def artifact_around(inner: bytes) -> bytes:
    payload = zlib.compress(inner)
    return b"GOLF" + bytes([tg.ARTIFACT_VERSION, tg.CODEC_IDS["zlib"], 0]) + hashlib.sha256(payload).digest() + payload


GOOD = tg.tensors_to_bytes({k: v.float() for k, v in STATE.items()}, {"config": asdict(CFG)})
SHARED_BYTES = safetensors({"__metadata__": {"golf": "{}"}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16))
CRAFTED = [
    ("header nested 200,000 deep", deep(200_000), "nested too deep|RecursionError"),
    ("a shape of 2**63", safetensors({"a": {"dtype": "F32", "shape": [0, 2 ** 63], "data_offsets": [0, 0]}}, b""), "malformed entry"),
    ("a shape of 1000 dimensions", safetensors({"a": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}, bytes(4)), "malformed entry"),
    ("tensors sharing bytes", SHARED_BYTES, "share bytes"),
]


@pytest.mark.parametrize("case, blob, message", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_headers_end_in_one_line_in_every_reader(case, blob, message, tmp_path, capsys):
    from tools.artifacts import inspect_artifact, model_file as M
    for name, data in (("crafted.safetensors", blob), ("crafted.ptz", artifact_around(blob))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(tg.GolfError) as e:
            (tg.load_tensors if name.endswith(".safetensors") else tg.read_artifact)(path)
        assert any(m in str(e.value) for m in message.split("|")), str(e.value)
        for tool in (lambda _: M.load_model_file(path), lambda _: inspect_artifact.main([str(path), "--no-progress"])):
            assert C.run_cli(tool, []) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1, err
    assert tg.tensors_from_bytes(GOOD, "good")[1]["config"] == asdict(CFG)
