"""Helpers for tests/test_train_gpt_*.py (not a test module): a tiny pure-byte dataset and tiny CPU runs."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TRAIN_GPT = REPO / "train_gpt.py"
SHARED_SP1024 = REPO.parent / "shared" / "data" / "fineweb_sp1024"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BYTE_TOKENIZER = {"tokenizer_type": "pure_byte", "vocab_size": 260,
                  "config": {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, "byte_offset": 4, "byte_count": 256}}
WORDS = "the quick brown fox jumps over a lazy dog and then runs home to eat red apples with friends".split()


def write_shard(path: Path, tokens) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, len(tokens))
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())


def text_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 80))) + "." for _ in range(n)]


def make_byte_dataset(root: Path, train_docs: int = 300, val_docs: int = 30) -> Path:
    """Pure-byte dataset (vocab 260): two train shards and one val shard, BOS=1 before every document."""
    root.mkdir(parents=True, exist_ok=True)
    docs = text_docs(train_docs + val_docs)
    encode = lambda d: [1] + [4 + b for b in d.encode()]
    train = [t for d in docs[:train_docs] for t in encode(d)]
    val = [t for d in docs[train_docs:] for t in encode(d)]
    write_shard(root / "tiny_train_000000.bin", train[: len(train) // 2])
    write_shard(root / "tiny_train_000001.bin", train[len(train) // 2:])
    write_shard(root / "tiny_val_000000.bin", val)
    (root / "bytes.json").write_text(json.dumps(BYTE_TOKENIZER))
    (root / "manifest.json").write_text(json.dumps({"format": "golf-dataset", "version": 1, "tokenizer_path": "bytes.json",
                                                    "vocab_size": 260, "bos_id": 1}))
    return root


def tiny_env(data: Path, out: Path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(DATA_PATH=str(data), OUT_DIR=str(out), RUN_ID="tiny", VOCAB_SIZE="260", DEVICE="cpu", NUM_LAYERS="2",
               MODEL_DIM="64", NUM_HEADS="4", NUM_KV_HEADS="2", TRAIN_SEQ_LEN="64", TRAIN_BATCH_TOKENS="1024",
               ITERATIONS="8", WARMUP_STEPS="0", WARMDOWN_ITERS="4", MAX_WALLCLOCK_SECONDS="0", VAL_LOSS_EVERY="4",
               TRAIN_LOG_EVERY="1", EVAL_SEQ_LEN="64", EVAL_STRIDE="32", BIGRAM_BUCKETS="256", BIGRAM_DIM="16",
               OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_train(env: dict, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, str(TRAIN_GPT)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(TRAIN_GPT)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["OUT_DIR"])


def train_losses(stdout: str) -> list[float]:
    return [float(line.split("train_loss:")[1].split()[0]) for line in stdout.splitlines()
            if line.startswith("step:") and "train_loss:" in line]


def final_exact(stdout: str) -> str:
    lines = [l for l in stdout.splitlines() if l.startswith("final_int8_zlib_roundtrip_exact")]
    assert lines, f"no final line in:\n{stdout[-2000:]}"
    return lines[-1]
