"""Helpers shared by tests/test_data_*.py: paths, a synthetic corpus, shard decoding."""
from __future__ import annotations

import json
import random
import shutil
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


# ----------------------------------------------------------------------------- a mirror of the hub repository

SP_MODEL = SHARED / "fineweb_1024_bpe.model"


def fake_shard(rng, docs: int, vocab: int = 1024) -> np.ndarray:
    parts = []
    for _ in range(docs):
        parts.append([1] + rng.integers(4, vocab, size=int(rng.integers(5, 40))).tolist())
    return np.array([t for p in parts for t in p], dtype=np.uint16)


def manifest_like_published(variant_docs: dict[str, tuple[list[int], list[int]]]) -> dict:
    """A manifest shaped like shared/data/fineweb_sp1024/manifest.json, for tiny fake shards."""
    entries, toks = [], []
    for variant, (train_tokens, val_tokens) in variant_docs.items():
        name = f"fineweb10B_{variant}"
        tok_name = "pure_byte_260" if variant == "byte260" else f"sp_bpe_{variant[2:]}"
        vocab = 260 if variant == "byte260" else int(variant[2:])
        toks.append({"name": tok_name, "kind": "byte" if variant == "byte260" else "sentencepiece_bpe",
                     "vocab_size": vocab, "bos_id": 1, "eos_id": 2,
                     **({"path": "tokenizers/fineweb_pure_byte_260.json"} if variant == "byte260" else
                        {"model_path": f"tokenizers/fineweb_{vocab}_bpe.model",
                         "vocab_path": f"tokenizers/fineweb_{vocab}_bpe.vocab"})})
        entries.append({"name": name, "tokenizer_name": tok_name, "tokenizer_kind": toks[-1]["kind"],
                        "path": f"datasets/{name}", "train_glob": f"datasets/{name}/fineweb_train_*.bin",
                        "val_glob": f"datasets/{name}/fineweb_val_*.bin", "vocab_size": vocab, "bos_id": 1, "eos_id": 2,
                        "stats": {"files_train": len(train_tokens), "files_val": len(val_tokens),
                                  "tokens_train": sum(train_tokens), "tokens_val": sum(val_tokens)}})
    return {"version": "10B", "num_val_docs": 5, "shuffle_seed": 1337, "shard_size": 100000000,
            "append_eos": False, "tokenizers": toks, "datasets": entries}


def make_mirror(tmp_path: Path) -> Path:
    """tmp/mirror/datasets/{manifest.json, tokenizers/, datasets/fineweb10B_{sp1024,byte260}/} with tiny shards.
    Without ../shared/data the sp1024 tokenizer files are placeholders (only the byte260 variant is usable)."""
    import golfdata
    rng = np.random.default_rng(0)
    root = tmp_path / "mirror" / "datasets"
    (root / "tokenizers").mkdir(parents=True)
    if SP_MODEL.is_file():
        shutil.copy(SP_MODEL, root / "tokenizers" / "fineweb_1024_bpe.model")
        shutil.copy(SHARED / "fineweb_1024_bpe.vocab", root / "tokenizers" / "fineweb_1024_bpe.vocab")
    else:
        (root / "tokenizers" / "fineweb_1024_bpe.model").write_bytes(b"placeholder")
        (root / "tokenizers" / "fineweb_1024_bpe.vocab").write_bytes(b"placeholder")
    (root / "tokenizers" / "fineweb_pure_byte_260.json").write_text(json.dumps(golfdata.PURE_BYTE_SPEC))
    counts = {}
    for variant, vocab in (("sp1024", 1024), ("byte260", 260)):
        d = root / "datasets" / f"fineweb10B_{variant}"
        d.mkdir(parents=True)
        train, val = [], []
        for i in range(3):
            t = fake_shard(rng, 20 + i, vocab)
            golfdata.write_shard(d / f"fineweb_train_{i:06d}.bin", t)
            train.append(t.size)
        v = fake_shard(rng, 5, vocab)
        golfdata.write_shard(d / "fineweb_val_000000.bin", v)
        val.append(v.size)
        counts[variant] = (train, val)
    (root / "manifest.json").write_text(json.dumps(manifest_like_published(counts), indent=2))
    return tmp_path / "mirror"
