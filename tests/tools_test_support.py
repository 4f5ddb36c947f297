"""Helpers for tests/test_tools_*.py and tests/test_crafted_artifacts.py (not a test module): a tiny pure-byte dataset,
one tiny training run, a trained-looking state dict, and the tools' command lines."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
for p in (str(REPO), str(TOOLS)):
    if p not in sys.path:
        sys.path.insert(0, p)

BYTE_TOKENIZER = {"tokenizer_type": "pure_byte", "vocab_size": 260,
                  "config": {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, "byte_offset": 4, "byte_count": 256}}
WORDS = "to be or not that is the question whether tis nobler in mind suffer slings arrows outrageous fortune".split()
TINY = dict(VOCAB_SIZE="260", DEVICE="cpu", NUM_LAYERS="2", MODEL_DIM="64", NUM_HEADS="4", NUM_KV_HEADS="2",
            TRAIN_SEQ_LEN="64", TRAIN_BATCH_TOKENS="1024", ITERATIONS="6", WARMUP_STEPS="0", WARMDOWN_ITERS="3",
            MAX_WALLCLOCK_SECONDS="0", VAL_LOSS_EVERY="0", TRAIN_LOG_EVERY="3", EVAL_SEQ_LEN="64", EVAL_STRIDE="32",
            EVAL_BATCH_SEQS="8", BIGRAM_BUCKETS="256", BIGRAM_DIM="16", COMPILE="0", CHECKPOINT_EVERY="6",
            ARTIFACT="int6+brotli")  # BF16 stays auto: score.py's default must reproduce the run's choice


def write_shard(path: Path, tokens) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, len(tokens))
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())


def make_byte_dataset(root: Path, train_docs: int = 200, val_docs: int = 20) -> Path:
    """Pure-byte dataset (vocab 260): one train and one val shard, BOS=1 before every document, byte id = 4 + byte."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60))) + "." for _ in range(train_docs + val_docs)]
    encode = lambda d: [1] + [4 + b for b in d.encode()]
    write_shard(root / "tiny_train_000000.bin", [t for d in docs[:train_docs] for t in encode(d)])
    write_shard(root / "tiny_val_000000.bin", [t for d in docs[train_docs:] for t in encode(d)])
    (root / "bytes.json").write_text(json.dumps(BYTE_TOKENIZER))
    (root / "manifest.json").write_text(json.dumps({"format": "golf-dataset", "version": 1, "tokenizer_path": "bytes.json",
                                                    "tokenizer_kind": "pure_byte", "vocab_size": 260, "bos_id": 1}))
    return root


def trained_like_state(config, seed: int = 0) -> dict:
    """A GPT state dict with non-zero, heavy-tailed matrices (a fresh model has zero output projections)."""
    import train_gpt as tg
    torch.manual_seed(seed)
    state = tg.GPT(config).state_dict()
    return {k: (torch.distributions.StudentT(4.0).sample(v.shape) * 0.02 if v.ndim == 2 and "skip" not in k else v.clone())
            for k, v in state.items()}


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tiny_run(data: Path, out: Path) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    env = clean_env(DATA_PATH=str(data), OUT_DIR=str(out), RUN_ID="tiny", **TINY)
    return subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=out)


def run_tool(name: str, *args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """(dataset dir, run dir, stdout) of one tiny train_gpt.py run (RUN_ID=tiny: logs/tiny.txt, models/tiny.ptz,
    models/tiny.safetensors, checkpoints/tiny/step_000006.ckpt), shared by the tools tests."""
    root = tmp_path_factory.mktemp("tools_tiny")
    data = make_byte_dataset(root / "data")
    result = tiny_run(data, root / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    return data, root / "run", result.stdout
