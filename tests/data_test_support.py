"""Helpers shared by tests/test_data_*.py: paths, a synthetic corpus, shard decoding."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SHARED = REPO.parent / "shared" / "data" / "fineweb_sp1024"
for p in (str(REPO), str(DATA)):
    if p not in sys.path:
        sys.path.insert(0, p)

import train_gpt  # noqa: E402

SYLLABLES = ["ka", "to", "ri", "men", "sa", "lo", "ven", "da", "pe", "qui", "star", "or", "an", "the", "is", "ing"]


def ascii_docs(n: int, seed: int = 0, min_words: int = 8, max_words: int = 60) -> list[str]:
    """Deterministic plain-ASCII documents built from a small syllable alphabet (easy to tokenize)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(min_words, max_words))]
        lines = [" ".join(words[j:j + 9]) for j in range(0, len(words), 9)]
        docs.append(lines[0] + ":\n" + ",\n".join(lines[1:]) + ".")
    return docs


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


def split_stream(data_path: Path, split: str, bos_id: int) -> list[np.ndarray]:
    """Every document's tokens (without its BOS) from a split's shards, read with train_gpt's reader."""
    stream = np.concatenate([train_gpt.load_shard(f) for f in train_gpt.list_shards(data_path, split)])
    starts = np.flatnonzero(stream == bos_id)
    assert starts.size and starts[0] == 0, "a split must start with BOS"
    ends = list(starts[1:]) + [stream.size]
    return [stream[s + 1:e] for s, e in zip(starts, ends)]


def decoded_docs(data_path: Path, split: str) -> list[str]:
    manifest = json.loads((Path(data_path) / "manifest.json").read_text())
    tok = train_gpt.load_tokenizer(train_gpt.resolve_tokenizer_path(data_path, ""))
    return [tok.decode(d.tolist()) for d in split_stream(data_path, split, manifest["bos_id"])]


def metric_bytes(tokens: np.ndarray, luts) -> int:
    """UTF-8 bytes the tokens stand for under train_gpt.build_byte_luts' tables (the val_bpb rule)."""
    base, lead, boundary = luts
    tokens = tokens.astype(np.int64)
    prev_boundary = np.concatenate([[True], boundary[tokens[:-1]]])
    return int(base[tokens].astype(np.int64).sum() + (lead[tokens] & ~prev_boundary).sum())
