"""Shared helpers for tests/test_records_*.py and tests/test_sweep_*.py (not a test module).

- fake_log(): a realistic train_gpt.py log (source block, hparams, hardware, step/val, size, final lines) for
  unit tests that must not spend CPU on training.
- make_tiny_dataset(): a pure-byte dataset directory (shards + tokenizer JSON + manifest) small enough that the
  contract's tiny CPU configuration trains in seconds.
- tiny_env(): the environment of that tiny CPU run.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
TRAIN_GPT = REPO / "train_gpt.py"
for p in (str(TOOLS), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

FAKE_SOURCE = '"""fake train_gpt.py"""\nimport os\nprint("step:{s}/{n} val_loss:{x}")\n'

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
        "it was the season of Darkness, it was the spring of hope, it was the winter of despair. ")


def fake_log(*, seed: int = 1337, source: str | bytes = FAKE_SOURCE, val_loss: float = 2.34567891,
             val_bpb: float = 1.23456789, bytes_model: int = 15_000_000, iterations: int = 20, finished: bool = True,
             hparams: dict[str, str] | None = None, step_ms: float = 50.0, val_every: int | None = None,
             hardware: str = "cpu x86_64 threads:1 x1 processes", val_tokens: int = 4000, tokenizer: str = "tok.json",
             eval_ms: float = 123.0, scheme: str = "int8-emb8-bigram8+zlib", cap: int = 16_000_000) -> str:
    """The shape train_gpt.py writes: source block, `hparam` lines, hardware, steps, sizes, final lines (and an
    OVER BUDGET line last when code + model exceed `cap`)."""
    src = source.encode() if isinstance(source, str) else source
    text = src.decode()
    hp = {"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "RUN_ID": f"seed{seed}", "SEED": str(seed),
          "ITERATIONS": str(iterations), "MATRIX_LR": "0.035", "NUM_LAYERS": "7", "MAX_WALLCLOCK_SECONDS": "600.0",
          "TIE_EMBEDDINGS": "True", "VOCAB_SIZE": "1024", "SIZE_CAP_BYTES": str(cap)}
    hp.update(hparams or {})
    lines = [f"===== train_gpt.py source begin ({len(src)} bytes) =====",
             text + ("" if text.endswith("\n") else "\n") + "===== train_gpt.py source end ====="]
    lines += [f"hparam {k}={v}" for k, v in hp.items()]
    lines += [f"hardware: {hardware} torch:2.13.0 python:3.11.2",
              f"data: train_shards:1 train_tokens:20000 val_tokens:{val_tokens} tokenizer:{tokenizer}",
              "model_params:123456", "world_size:1 grad_accum_steps:8 compile:0 bf16:1",
              "untrained train_loss:5.5600 ln(vocab):5.5607"]
    half = iterations // 2
    val_every = val_every or half
    for s in range(1, iterations + 1):
        loss = 5.0 - 2.5 * s / iterations
        lines.append(f"step:{s}/{iterations} train_loss:{loss:.4f} train_time:{s * step_ms:.0f}ms "
                     f"step_avg:{step_ms:.2f}ms tok/s:20480 lr_scale:1.0000")
        if s % val_every == 0 or s == iterations:
            vl = val_loss + 3.0 * (s ** -0.5 - iterations ** -0.5)  # a power law ending at val_loss
            lines.append(f"step:{s}/{iterations} val_loss:{vl:.4f} val_bpb:{vl / 1.9:.4f} "
                         f"train_time:{s * step_ms:.0f}ms step_avg:{step_ms:.2f}ms")
        if not finished and s == half:
            return "\n".join(lines) + "\n"
    total = bytes_model + len(src)
    lines += ["peak memory: 300 MiB (process max RSS)", f"artifact scheme: {scheme} file: models/seed{seed}.ptz",
              f"Code size: {len(src)} bytes", f"Serialized model {scheme}: {bytes_model} bytes",
              f"Total submission size {scheme}: {total} bytes (margin to {cap}: {cap - total} bytes)",
              "final eval: sliding window eval_seq_len:64 eval_stride:32 on the round-trip model",
              f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms:.0f}ms",
              f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}"]
    if total > cap:
        lines.append(f"OVER BUDGET: the submission is {total - cap} bytes over the {cap}-byte cap")
    return "\n".join(lines) + "\n"


def _write_shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    path.write_bytes(header.tobytes() + tokens.astype("<u2").tobytes())


def make_tiny_dataset(root: Path) -> Path:
    """A pure-byte (vocab 260) dataset: documents of English text, BOS (1) at each document start."""
    root.mkdir(parents=True, exist_ok=True)
    spec = {"tokenizer_type": "pure_byte", "config": {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3,
                                                      "byte_offset": 4, "byte_count": 256}, "vocab_size": 260}
    (root / "tokenizer.json").write_text(json.dumps(spec))
    words = TEXT.split()
    rng = np.random.default_rng(0)

    def docs(n: int) -> np.ndarray:
        out = []
        for _ in range(n):
            k = int(rng.integers(20, 60))
            start = int(rng.integers(0, len(words)))
            doc = " ".join(words[(start + i) % len(words)] for i in range(k))
            out += [1] + [b + 4 for b in doc.encode()]
        return np.array(out, dtype=np.uint16)

    _write_shard(root / "tiny_train_000000.bin", docs(120))
    _write_shard(root / "tiny_val_000000.bin", docs(12))
    manifest = {"format": "golf-dataset", "version": 1, "source": "tests", "seed": 0,
                "tokenizer_path": "tokenizer.json", "tokenizer_kind": "pure_byte", "byte_fallback": False,
                "vocab_size": 260, "bos_id": 1}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def tiny_env(data: Path, **over) -> dict[str, str]:
    env = {"DEVICE": "cpu", "DATA_PATH": str(data), "VOCAB_SIZE": "260", "NUM_LAYERS": "2", "MODEL_DIM": "64",
           "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024",
           "ITERATIONS": "20", "WARMUP_STEPS": "0", "MAX_WALLCLOCK_SECONDS": "0", "VAL_LOSS_EVERY": "10",
           "EVAL_SEQ_LEN": "64", "EVAL_STRIDE": "32", "BIGRAM_BUCKETS": "256", "BIGRAM_DIM": "16",
           "COMPILE": "0", "OMP_NUM_THREADS": "1"}
    env.update({k: str(v) for k, v in over.items()})
    return env


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


FAKE_TRAINER = r"""
import json, os, sys, time
sys.path.insert(0, %r)
from records_sweep_support import fake_log
out, rid = os.environ["OUT_DIR"], os.environ["RUN_ID"]
os.makedirs(os.path.join(out, "logs"), exist_ok=True)
info = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "SEED", "MATRIX_LR")}
info["start"] = time.time()
if os.environ.get("FAKE_FAIL"):
    print("Traceback: boom, FAKE_FAIL is set", file=sys.stderr)
    sys.exit(3)
lr = float(os.environ.get("MATRIX_LR", "0.035"))
iters = int(os.environ.get("ITERATIONS", "20"))
text = fake_log(seed=int(os.environ.get("SEED", "1")), val_loss=2.0 + lr, val_bpb=1.0 + lr, iterations=iters,
                val_every=max(1, iters // 5),
                hparams={k: os.environ[k] for k in ("MATRIX_LR", "RUN_ID", "SEED") if k in os.environ})
sleep = float(os.environ.get("FAKE_STEP_SLEEP", "0"))
with open(os.path.join(out, "logs", rid + ".txt"), "w") as f:
    for line in text.splitlines(True):
        f.write(line)
        f.flush()
        if line.startswith("step:") and "train_loss" in line and sleep:
            time.sleep(sleep)
hold = os.environ.get("FAKE_HOLD")  # a path: finish only once it exists (a test holds the run open meanwhile)
deadline = time.time() + 120
while hold and not os.path.exists(hold) and time.time() < deadline:
    time.sleep(0.02)
info["end"] = time.time()
with open(os.path.join(out, "env.json"), "w") as f:
    json.dump(info, f)
"""


def write_fake_trainer(path: Path) -> Path:
    """A stand-in for train_gpt.py that writes a fake log line by line (FAKE_STEP_SLEEP seconds per step; with
    FAKE_HOLD=PATH it then waits until PATH exists)."""
    path.write_text(FAKE_TRAINER % str(Path(__file__).resolve().parent))
    return path
