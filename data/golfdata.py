"""What the data/ commands share: the shard writer, manifests and their JSON types, the byte vocabulary.

The data/ commands WRITE the formats that train_gpt.py READS (train_gpt.read_shard_header and load_shard are the one
reader, train_gpt.validate_dataset the one validation). The shard format: 256 little-endian int32 header words
(magic 20240520, version 1, token count, zeros), then the tokens as little-endian uint16 (data/README.md). Errors,
atomic writes, temporaries and the CLI runner are the repository's shared module's (common.py).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import numpy as np

import common as C
from common import ToolError, json_kind

# train_gpt.py's reader holds the same three constants. Writing a shard must not need torch, which importing
# train_gpt.py would load, so the constants are repeated here and tests/test_conventions.py holds them equal.
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_WORDS = 256
HEADER_BYTES = SHARD_HEADER_WORDS * 4
MAX_VOCAB = 1 << 16  # tokens are stored as uint16

# The published byte260 vocabulary: 4 specials, then the 256 byte values.
PURE_BYTE_SPEC = {
    "tokenizer_type": "pure_byte",
    "config": {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, "byte_offset": 4, "byte_count": 256},
    "vocab_size": 260,
}
PURE_BYTE_FILENAME = "byte260.json"

MANIFEST_FORMAT = "golf-dataset"
MANIFEST_VERSION = 1


def atomic_write_json(path: Path, obj) -> None:
    C.atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- manifests (JSON types)

def expect_type(value, kind: type, what: str, noun: str):
    """`value` if it is a `kind`, else one error line naming `what` and what it is."""
    if not isinstance(value, kind):
        raise ToolError(f"{what} is {json_kind(value)}, expected {noun}")
    return value


def expect_object(value, what: str) -> dict:
    return expect_type(value, dict, what, "an object")


def expect_list(value, what: str) -> list:
    return expect_type(value, list, what, "a list")


def expect_str(value, what: str, *, nullable: bool = False) -> str | None:
    return None if value is None and nullable else expect_type(value, str, what, "a string")


def expect_bool(value, what: str) -> bool:
    return expect_type(value, bool, what, "true or false")


def expect_int(value, what: str, *, lo: int | None = None, hi: int | None = None,
               nullable: bool = False) -> int | None:
    """An integer (not a boolean, not a float) within [lo, hi]."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{what} is {json_kind(value)}"
                        f"{' ' + json.dumps(value) if isinstance(value, (int, float, str)) and len(str(value)) < 40 else ''}"
                        f", expected an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (f"in [{lo}, {hi}]" if lo is not None and hi is not None else
                  f">= {lo}" if lo is not None else f"<= {hi}")
        raise ToolError(f"{what} is {value}, expected an integer {bounds}")
    return value


def safe_relative_path(value, what: str) -> str:
    """A '/'-separated path that stays inside the folder it is relative to (no '..', not absolute)."""
    text = expect_str(value, what)
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or "\\" in text or "\0" in text or ".." in parts:
        raise ToolError(f"{what} {text!r} is not a relative path inside the repository")
    return text


_COUNT_KEYS = ("docs", "tokens", "shards", "utf8_bytes", "bytes")


def check_golf_manifest(manifest, where: str) -> dict:
    """Check the JSON types (and ranges) of the keys the data tools and train_gpt.py read from a dataset
    directory's manifest.json; return it. Keys that are absent are not required; unknown keys are kept.
    `where` names the file in the messages (one line each, ToolError)."""
    m = expect_object(manifest, f"{where}: the manifest")
    key = lambda k: f"{where}: `{k}`"  # noqa: E731
    if "tokenizer_path" in m:
        expect_str(m["tokenizer_path"], key("tokenizer_path"), nullable=True)
    for k in ("format", "tokenizer_kind", "source", "prefix", "fingerprint", "created_by"):
        if k in m:
            expect_str(m[k], key(k), nullable=k == "source")
    if "vocab_size" in m:
        expect_int(m["vocab_size"], key("vocab_size"), lo=1, hi=MAX_VOCAB)
    if "bos_id" in m:
        expect_int(m["bos_id"], key("bos_id"), lo=0, hi=MAX_VOCAB - 1, nullable=True)
    if "seed" in m:
        expect_int(m["seed"], key("seed"), nullable=True)
    if "shard_tokens" in m:
        expect_int(m["shard_tokens"], key("shard_tokens"), lo=1)
    for k in ("append_eos", "byte_fallback"):
        if k in m:
            expect_bool(m[k], key(k))
    if "splits" in m:
        for split, facts in expect_object(m["splits"], key("splits")).items():
            expect_object(facts, key(f"splits.{split}"))
            for c in _COUNT_KEYS:
                if c in facts:
                    expect_int(facts[c], key(f"splits.{split}.{c}"), lo=0)
    if "files" in m:
        for i, f in enumerate(expect_list(m["files"], key("files"))):
            expect_object(f, key(f"files[{i}]"))
            for k in ("name", "split", "sha256"):
                if k in f:
                    expect_str(f[k], key(f"files[{i}].{k}"))
            for c in _COUNT_KEYS:
                if c in f:
                    expect_int(f[c], key(f"files[{i}].{c}"), lo=0)
    if "input" in m:
        inp = expect_object(m["input"], key("input"))
        if "val_groups" in inp:
            for i, g in enumerate(expect_list(inp["val_groups"], key("input.val_groups"))):
                expect_str(g, key(f"input.val_groups[{i}]"))
    if "tokenizer" in m:
        expect_object(m["tokenizer"], key("tokenizer"))
    return m


def read_golf_manifest(path: Path) -> dict:
    """Read and type-check a dataset directory's manifest.json (ToolError, one line, if it is not valid)."""
    return check_golf_manifest(C.read_json(path, "manifest", finite=False), str(path))


def check_pure_byte_spec(spec, where: str) -> dict:
    """Check a pure-byte tokenizer JSON (the byte260 layout); return its config with integer ids."""
    spec = expect_object(spec, f"{where}: the tokenizer spec")
    if spec.get("tokenizer_type") != "pure_byte":
        raise ToolError(f"{where}: only the pure_byte JSON tokenizer spec is supported")
    cfg = expect_object(spec.get("config", {}), f"{where}: `config`")
    out = {}
    for k, default in PURE_BYTE_SPEC["config"].items():
        out[k] = expect_int(cfg.get(k, default), f"{where}: `config.{k}`", lo=0, hi=MAX_VOCAB - 1)
    if out["byte_offset"] != PURE_BYTE_SPEC["config"]["byte_offset"] or out["byte_count"] != 256:
        raise ToolError(f"{where}: only the standard byte260 layout (byte_offset 4, 256 bytes) is supported")
    vocab = expect_int(spec.get("vocab_size", 260), f"{where}: `vocab_size`", lo=1, hi=MAX_VOCAB)
    if vocab != out["byte_offset"] + out["byte_count"]:
        raise ToolError(f"{where}: `vocab_size` is {vocab}, but byte_offset 4 + 256 bytes make 260")
    for k in ("pad_id", "bos_id", "eos_id", "unk_id"):
        if out[k] >= out["byte_offset"]:
            raise ToolError(f"{where}: `config.{k}` is {out[k]}, expected a special id below byte_offset 4")
    return dict(out, vocab_size=vocab)


# ----------------------------------------------------------------------------- shards

def shard_header(num_tokens: int) -> np.ndarray:
    header = np.zeros(SHARD_HEADER_WORDS, dtype="<i4")
    header[0] = SHARD_MAGIC
    header[1] = SHARD_VERSION
    header[2] = num_tokens
    return header


def shard_bytes(tokens: np.ndarray) -> bytes:
    """The exact bytes of a shard holding tokens (any integer array with values < 65536)."""
    tokens = np.asarray(tokens)
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= MAX_VOCAB):
        raise ToolError("token ids must be in [0, 65535] to fit a uint16 shard")
    if tokens.size >= 2**31:
        raise ToolError(f"shard of {tokens.size} tokens does not fit the int32 header")
    return shard_header(int(tokens.size)).tobytes() + tokens.astype("<u2", copy=False).tobytes()


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write one shard atomically (never a half-written file under the final name)."""
    C.atomic_write(path, shard_bytes(tokens))


# ----------------------------------------------------------------------------- byte vocabulary

def pure_byte_encode(text: str) -> list[int]:
    offset = PURE_BYTE_SPEC["config"]["byte_offset"]
    return [offset + b for b in text.encode("utf-8")]
