#!/usr/bin/env python3
"""Turn a text corpus into a golf dataset directory: shards + tokenizer + manifest.json.

Inputs: text files (a document per file, per blank-line-separated block, or per line), JSONL files
with a `text` field, or a Hugging Face `datasets` name (needs the `datasets` package and network).
The tokenizer is trained here (SentencePiece BPE, settings close to the published sp1024 model),
reused from a given .model / byte JSON file, or the pure-byte byte260 vocabulary.

Every document is stored as BOS + tokens (no EOS). Exact duplicate documents are dropped before
the split, so the same text is never in both splits; documents (or groups of documents, see
Doc.group) are shuffled with --seed; the same inputs, flags and seed give byte-identical outputs.

Example:
  python -m data.build_dataset corpus/*.txt --out data/datasets/mycorpus_sp1024 --vocab-size 1024
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from data.golfdata import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    MAX_VOCAB,
    PURE_BYTE_FILENAME,
    PURE_BYTE_SPEC,
    atomic_write_json,
    check_golf_manifest,
    check_pure_byte_spec,
    shard_bytes,
)
from common import (
    DIR_MODE,
    ToolError,
    clean_stale_temporaries,
    install_dir,
    parse_json,
    read_bounded,
    read_json,
    remove_quietly,
    run_cli,
    stale_temporaries,
    temp_prefix,
)

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

# SentencePiece trainer settings of the published fineweb_1024_bpe.model (read from its ModelProto):
# BPE, character_coverage 0.999, split_digits, no byte fallback, pad/bos/eos/unk = 0/1/2/3,
# normalizer nmt_nfkc with remove_extra_whitespaces and no dummy prefix.
PUBLISHED_SP_SETTINGS = dict(
    model_type="bpe",
    character_coverage=0.999,
    split_digits=True,
    byte_fallback=False,
    pad_id=0,
    bos_id=1,
    eos_id=2,
    unk_id=3,
    normalization_rule_name="nmt_nfkc",
    add_dummy_prefix=False,
    remove_extra_whitespaces=True,
    hard_vocab_limit=False,
)
SP_MAX_SENTENCE_CHARS = 4000  # training sentences are cut below SentencePiece's 4192-byte limit
CHUNK_CHARS = 1 << 20  # about 1 MB of text per work unit sent to a tokenizer process
MAX_SEED = 2**32 - 1  # SentencePiece's random generator takes an unsigned 32-bit seed
MAX_PREFIX_CHARS = 100


@dataclass(frozen=True)
class Doc:
    """One document. Documents sharing a `group` always land in the same split."""
    text: str
    group: str | None = None


@dataclass
class BuildSettings:
    source: str
    seed: int = 1337
    val_docs: int | None = None
    val_fraction: float = 0.1
    tokenizer: str | None = None  # path of a .model / pure-byte .json to reuse
    byte: bool = False  # use the byte260 vocabulary
    vocab_size: int | None = None  # for a trained tokenizer (default 1024)
    byte_fallback: bool = False
    character_coverage: float = 0.999
    tokenizer_train_docs: int = 200_000
    tokenizer_train_chars: int = 50_000_000
    shard_tokens: int = 100_000_000
    prefix: str = "corpus"
    workers: int = 0  # 0 = all cores
    force: bool = False
    progress: bool = True


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- reading inputs

def read_text_file(path: Path, unit: str = "file") -> Iterator[Doc]:
    """Documents of a UTF-8 text file: the whole file, each blank-line-separated block, or each line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ToolError(f"{path}: cannot read ({exc.strerror})") from None
    text = text.replace("\r\n", "\n")
    if unit == "file":
        parts = [text]
    elif unit == "blank-line":
        parts = [p for p in text.split("\n\n")]
    elif unit == "line":
        parts = text.split("\n")
    else:
        raise ToolError(f"unknown text unit {unit!r}")
    for part in parts:
        if part.strip():
            yield Doc(part.strip("\n"))


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of an invalid UTF-8 byte
# One JSONL line is one document. The longest web or book documents are a few megabytes; a longer line is not a
# document but a file without line breaks, refused before it is read whole.
MAX_JSONL_LINE_CHARS = 64 * 2**20
# A tokenizer file is a SentencePiece model (~250 kB at 1,024 pieces, a few MB at 65,536) or a small JSON spec.
MAX_TOKENIZER_BYTES = 64 * 2**20


def read_jsonl_file(path: Path, field: str = "text") -> Iterator[Doc]:
    """Documents of a JSONL file: the `field` of every line's object (blank lines are skipped)."""
    try:  # invalid bytes are escaped and reported per line (a strict decoder fails a whole chunk ahead)
        f = open(path, "r", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ToolError(f"{path}: cannot read ({exc.strerror})") from None
    with f:
        for lineno, line in enumerate(iter(lambda: f.readline(MAX_JSONL_LINE_CHARS + 1), ""), start=1):
            if len(line) > MAX_JSONL_LINE_CHARS:
                raise ToolError(f"{path}:{lineno}: line longer than {MAX_JSONL_LINE_CHARS:,} characters (one line is "
                                f"one document)")
            bad = _ESCAPED_BYTE.search(line)
            if bad:
                raise ToolError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} at "
                                f"character {bad.start() + 1} of the line)")
            if not line.strip():
                continue
            try:  # only the top-level object is walked (its one string field), so depth needs no check beyond this
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ToolError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise ToolError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
            if not isinstance(obj, dict) or field not in obj:
                raise ToolError(f"{path}:{lineno}: no {field!r} field")
            value = obj[field]
            if not isinstance(value, str):
                raise ToolError(f"{path}:{lineno}: field {field!r} is {type(value).__name__}, not a string")
            if "\\u" in line:  # only a \uXXXX escape can smuggle in a lone surrogate
                _check_encodable(value, f"{path}:{lineno}: field {field!r}")
            yield Doc(value)


def _check_encodable(text: str, what: str) -> None:
    """Refuse text that has no UTF-8 form (a lone surrogate such as a JSON "\\ud800" escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolError(f"{what} holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not "
                        f"valid Unicode text") from None


def expand_inputs(paths: Iterable[str]) -> list[Path]:
    """Files named directly, plus *.txt / *.jsonl under directories (sorted, recursive)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in (".txt", ".jsonl"))
            if not found:
                raise ToolError(f"{p}: directory holds no .txt or .jsonl files")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise ToolError(f"{p}: no such file or directory")
    return files


def read_inputs(paths: Iterable[str], fmt: str = "auto", text_unit: str = "file",
                field: str = "text") -> Iterator[Doc]:
    for path in expand_inputs(paths):
        kind = fmt if fmt != "auto" else ("jsonl" if path.suffix == ".jsonl" else "text")
        if kind == "jsonl":
            yield from read_jsonl_file(path, field)
        else:
            yield from read_text_file(path, text_unit)


def read_hf_dataset(name: str, config: str | None, split: str, field: str, limit: int | None) -> Iterator[Doc]:
    """Stream documents of a Hugging Face dataset (needs `pip install datasets` and network)."""
    try:
        import datasets  # noqa: WPS433
    except ImportError:
        raise ToolError("--hf-dataset needs the `datasets` package: pip install datasets") from None
    try:
        stream = datasets.load_dataset(name, config, split=split, streaming=True)
        for i, row in enumerate(stream):
            if limit is not None and i >= limit:
                break
            if field not in row or not isinstance(row[field], str):
                raise ToolError(f"{name} row {i}: no string field {field!r}")
            yield Doc(row[field])
    except ToolError:
        raise
    except Exception as exc:  # network, missing dataset, ...
        raise ToolError(f"cannot read Hugging Face dataset {name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


# ----------------------------------------------------------------------------- split

@dataclass
class Split:
    train: list[Doc]
    val: list[Doc]
    docs_read: int
    empty_skipped: int
    duplicates_removed: int
    groups: int
    val_groups: list[str]


def dedupe_and_split(docs: Iterable[Doc], seed: int, val_docs: int | None, val_fraction: float) -> Split:
    """Drop empty docs and exact duplicates (first one kept), then split by group and shuffle.

    Groups (a doc without a group is its own group) are shuffled with the seed; whole groups go to
    val until it holds at least the requested number of docs. Each split's docs are then shuffled."""
    seen: set[bytes] = set()
    kept: list[Doc] = []
    read = empty = dups = 0
    for doc in docs:
        read += 1
        if not doc.text.strip():
            empty += 1
            continue
        try:
            key = hashlib.sha256(doc.text.encode("utf-8")).digest()
        except UnicodeEncodeError:
            _check_encodable(doc.text, f"document {read}")
            raise
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        kept.append(doc)
    if not kept:
        raise ToolError(f"no documents in the input ({read} read, {empty} empty)")
    by_group: dict[str, list[Doc]] = {}
    for i, doc in enumerate(kept):
        by_group.setdefault(doc.group if doc.group is not None else f"\0doc{i}", []).append(doc)
    order = list(by_group)
    rng = random.Random(seed)
    rng.shuffle(order)
    if val_docs is None:
        if not 0.0 < val_fraction < 1.0:
            raise ToolError(f"--val-fraction must be in (0, 1), got {val_fraction}")
        target = max(1, round(val_fraction * len(kept)))
    else:
        target = val_docs
        if target < 1:
            raise ToolError(f"--val-docs must be at least 1, got {target}")
    val: list[Doc] = []
    val_groups: list[str] = []
    train: list[Doc] = []
    for g in order:
        if len(val) < target:
            val.extend(by_group[g])
            val_groups.append(g)
        else:
            train.extend(by_group[g])
    if not train:
        raise ToolError(f"nothing left for training: {len(kept)} documents in {len(order)} groups, "
                        f"{len(val)} of them requested for validation")
    rng.shuffle(val)
    rng.shuffle(train)
    return Split(train, val, read, empty, dups, len(order),
                 sorted(g for g in val_groups if not g.startswith("\0")))


# ----------------------------------------------------------------------------- tokenizers

@dataclass
class TokenizerInfo:
    kind: str  # "sentencepiece" | "pure_byte"
    filename: str
    data: bytes  # the file's bytes, written into the dataset directory
    vocab_size: int
    bos_id: int
    byte_fallback: bool
    details: dict


def _sp_info(data: bytes, filename: str, details: dict) -> TokenizerInfo:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception:
        raise ToolError(f"{filename}: not a SentencePiece model") from None
    vocab = sp.vocab_size()
    if vocab > MAX_VOCAB:
        raise ToolError(f"{filename}: vocabulary of {vocab} does not fit uint16 shards (max {MAX_VOCAB})")
    if sp.bos_id() < 0:
        raise ToolError(f"{filename}: the tokenizer has no BOS token (every document must start with BOS)")
    byte_fallback = any(sp.is_byte(i) for i in range(vocab))
    return TokenizerInfo("sentencepiece", filename, data, vocab, sp.bos_id(), byte_fallback, details)


def load_tokenizer_file(path: str) -> TokenizerInfo:
    p = Path(path)
    data = read_bounded(p, MAX_TOKENIZER_BYTES, "tokenizer")
    details = {"reused_from": p.name, "sha256": hashlib.sha256(data).hexdigest()}
    if p.suffix == ".json":
        cfg = check_pure_byte_spec(parse_json(data, str(p), "tokenizer spec", finite=False), str(p))
        return TokenizerInfo("pure_byte", p.name, data, cfg["vocab_size"], cfg["bos_id"], False, details)
    return _sp_info(data, p.name, details)


def pure_byte_tokenizer() -> TokenizerInfo:
    data = (json.dumps(PURE_BYTE_SPEC, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return TokenizerInfo("pure_byte", PURE_BYTE_FILENAME, data, PURE_BYTE_SPEC["vocab_size"],
                         PURE_BYTE_SPEC["config"]["bos_id"], False, {"builtin": "byte260"})


def _training_sentences(docs: list[Doc], max_docs: int, max_chars: int) -> tuple[list[str], int, int]:
    """Lines of the first docs (already shuffled), each cut to SentencePiece's sentence length limit."""
    sentences: list[str] = []
    chars = used = 0
    for doc in docs[:max_docs]:
        if chars >= max_chars:
            break
        used += 1
        for line in doc.text.split("\n"):
            line = line.strip()
            while line:
                piece, line = line[:SP_MAX_SENTENCE_CHARS], line[SP_MAX_SENTENCE_CHARS:]
                sentences.append(piece)
                chars += len(piece)
    return sentences, used, chars


def train_sentencepiece(docs: list[Doc], vocab_size: int, *, seed: int, byte_fallback: bool,
                        character_coverage: float, max_docs: int, max_chars: int, threads: int,
                        filename: str) -> TokenizerInfo:
    import sentencepiece as spm
    sentences, used, chars = _training_sentences(docs, max_docs, max_chars)
    if not sentences:
        raise ToolError("no text to train the tokenizer on")
    settings = dict(PUBLISHED_SP_SETTINGS, vocab_size=vocab_size, byte_fallback=byte_fallback,
                    character_coverage=character_coverage)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    _log(f"training SentencePiece BPE (vocab {vocab_size}, byte_fallback={byte_fallback}, "
         f"character_coverage={character_coverage}) "
         f"on {used} docs / {chars:,} chars ...")
    t0 = time.perf_counter()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, input_sentence_size=0,
            shuffle_input_sentence=False, num_threads=max(1, threads), minloglevel=2, **settings)
    except Exception as exc:
        raise ToolError(f"SentencePiece training failed: {str(exc).strip().splitlines()[-1]}") from None
    info = _sp_info(model.getvalue(), filename,
                    {"trained": True, "train_docs": used, "train_chars": chars, "seconds": None,
                     "settings": settings})
    info.details.pop("seconds")
    _log(f"  tokenizer trained in {time.perf_counter() - t0:.1f}s")
    if info.vocab_size != vocab_size:
        raise ToolError(f"the corpus is too small for a {vocab_size}-token vocabulary: SentencePiece "
                        f"stopped at {info.vocab_size} (add text or lower --vocab-size)")
    return info


# ----------------------------------------------------------------------------- tokenization

_ENCODER: Callable[[list[str]], list[list[int]]] | None = None


def _make_encoder(kind: str, data: bytes) -> Callable[[list[str]], list[list[int]]]:
    if kind == "pure_byte":
        offset = PURE_BYTE_SPEC["config"]["byte_offset"]
        return lambda texts: [[offset + b for b in t.encode("utf-8")] for t in texts]
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(data)
    return lambda texts: sp.encode(texts, num_threads=1)


def _die_with_parent(parent_pid: int) -> None:
    """In a pool worker: get SIGKILL when the parent dies (Linux), so a `kill -9` of the build leaves no
    orphaned tokenizer processes behind."""
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _init_worker(kind: str, data: bytes, parent_pid: int | None = None) -> None:
    global _ENCODER
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _ENCODER = _make_encoder(kind, data)


def _encode_chunk(args: tuple[list[str], int]) -> tuple[np.ndarray, int]:
    """BOS + ids of every text, concatenated; and the number of texts."""
    texts, bos = args
    assert _ENCODER is not None
    encoded = _ENCODER(texts)
    out = np.empty(sum(len(e) for e in encoded) + len(encoded), dtype=np.uint16)
    pos = 0
    for ids in encoded:
        out[pos] = bos
        out[pos + 1: pos + 1 + len(ids)] = ids
        pos += 1 + len(ids)
    return out, len(texts)


def _chunks(texts: list[str], bos: int) -> Iterator[tuple[list[str], int]]:
    batch: list[str] = []
    size = 0
    for t in texts:
        batch.append(t)
        size += len(t)
        if size >= CHUNK_CHARS or len(batch) >= 4096:
            yield batch, bos
            batch, size = [], 0
    if batch:
        yield batch, bos


class ShardSink:
    """Cuts a split's token stream into shards of shard_tokens tokens (the last one shorter)."""

    def __init__(self, directory: Path, prefix: str, split: str, shard_tokens: int):
        self.directory, self.prefix, self.split, self.shard_tokens = directory, prefix, split, shard_tokens
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.files: list[dict] = []
        self.tokens = 0

    def add(self, tokens: np.ndarray) -> None:
        self.buffer.append(tokens)
        self.buffered += tokens.size
        while self.buffered >= self.shard_tokens:
            flat = np.concatenate(self.buffer)
            self._write(flat[: self.shard_tokens])
            rest = flat[self.shard_tokens:]
            self.buffer, self.buffered = ([rest] if rest.size else []), int(rest.size)

    def finish(self) -> None:
        if self.buffered:
            self._write(np.concatenate(self.buffer))
        self.buffer, self.buffered = [], 0

    def _write(self, tokens: np.ndarray) -> None:
        name = f"{self.prefix}_{self.split}_{len(self.files):06d}.bin"
        data = shard_bytes(tokens)
        with open(self.directory / name, "wb") as f:  # inside the temporary build directory
            f.write(data)
        self.files.append({"name": name, "split": self.split, "tokens": int(tokens.size),
                           "sha256": hashlib.sha256(data).hexdigest()})
        self.tokens += int(tokens.size)


def tokenize_split(docs: list[Doc], tok: TokenizerInfo, sink: ShardSink, workers: int, progress: bool,
                   desc: str) -> dict:
    texts = [d.text for d in docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    bar = tqdm(total=len(texts), desc=desc, unit="doc", disable=not progress or tqdm is None,
               file=sys.stderr) if tqdm else None
    t0 = time.perf_counter()
    chunks = list(_chunks(texts, tok.bos_id))
    workers = min(workers, len(chunks))  # never more processes than work units
    if workers <= 1:
        _init_worker(tok.kind, tok.data)
        results: Iterable[tuple[np.ndarray, int]] = map(_encode_chunk, chunks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker,
                                                        initargs=(tok.kind, tok.data, os.getpid()))
        results = pool.imap(_encode_chunk, chunks)
    try:
        before = sink.tokens + sink.buffered
        for arr, n_docs in results:
            if arr.size and int(arr.max()) >= tok.vocab_size:
                raise ToolError(f"tokenizer produced id {int(arr.max())} >= vocab size {tok.vocab_size}")
            sink.add(arr)
            if bar is not None:
                bar.update(n_docs)
        sink.finish()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    seconds = max(time.perf_counter() - t0, 1e-9)
    tokens = sink.tokens - before
    return {"docs": len(texts), "tokens": tokens, "utf8_bytes": n_bytes, "seconds": seconds}


# ----------------------------------------------------------------------------- the build

def fingerprint(split: Split, settings: BuildSettings, tok_desc: str) -> str:
    h = hashlib.sha256()
    keys = {k: getattr(settings, k) for k in ("seed", "val_docs", "val_fraction", "byte", "vocab_size",
                                               "byte_fallback", "character_coverage", "tokenizer_train_docs",
                                               "tokenizer_train_chars", "shard_tokens", "prefix")}
    h.update(json.dumps(keys, sort_keys=True).encode())
    h.update(tok_desc.encode())
    for name, docs in (("train", split.train), ("val", split.val)):
        h.update(f"\0{name}\0".encode())
        for d in docs:
            h.update(hashlib.sha256(d.text.encode("utf-8")).digest())
    return h.hexdigest()


def _existing_manifest(out: Path) -> tuple[dict | None, str | None]:
    """(the manifest of the dataset at out, None), or (None, why it is not a usable manifest)."""
    path = out / "manifest.json"
    if not path.is_file():
        return None, None
    try:
        return check_golf_manifest(read_json(path, "manifest", finite=False), str(path)), None
    except ToolError as exc:
        return None, str(exc)


def check_settings(s: BuildSettings) -> None:
    """Refuse settings that cannot work, before any input is read or anything is written."""
    if s.byte and s.tokenizer:
        raise ToolError("choose one of --byte and --tokenizer")
    if s.vocab_size is not None and not 1 <= s.vocab_size <= MAX_VOCAB:
        raise ToolError(f"vocab size {s.vocab_size} does not fit uint16 shards (1..{MAX_VOCAB})")
    if s.shard_tokens < 1 or s.shard_tokens >= 2**31:
        raise ToolError(f"--shard-tokens must be in [1, 2^31), got {s.shard_tokens}")
    if not 0 <= s.seed <= MAX_SEED:
        raise ToolError(f"--seed must be in [0, 2^32) (the tokenizer trainer's seed is unsigned 32-bit), got {s.seed}")
    max_workers = 4 * default_workers()
    if not 0 <= s.workers <= max_workers:
        raise ToolError(f"--workers must be in [0, {max_workers}] (0 = all {default_workers()} cores; at most "
                        f"4 per core), got {s.workers}")
    if not s.byte and not s.tokenizer:
        if not 0.98 <= s.character_coverage <= 1.0:  # SentencePiece's own bounds
            raise ToolError(f"--character-coverage must be in [0.98, 1.0], got {s.character_coverage}")
        if s.tokenizer_train_docs < 1 or s.tokenizer_train_chars < 1:
            raise ToolError(f"--tokenizer-train-docs and --tokenizer-train-chars must be at least 1, got "
                            f"{s.tokenizer_train_docs} and {s.tokenizer_train_chars}")
    check_prefix(s.prefix)


def check_prefix(prefix: str) -> None:
    """A shard prefix that makes plain file names which train_gpt.py's split globs tell apart."""
    if len(prefix) > MAX_PREFIX_CHARS or any(c in prefix for c in "/\\\0") or prefix in (".", ".."):
        raise ToolError(f"--prefix {prefix[:40]!r}: must be a plain file name part of at most "
                        f"{MAX_PREFIX_CHARS} characters (no '/')")
    train, val = f"{prefix}_train_000000.bin", f"{prefix}_val_000000.bin"
    if fnmatch.fnmatchcase(train, "*val_*.bin") or fnmatch.fnmatchcase(val, "*train_*.bin"):
        raise ToolError(f"--prefix {prefix!r}: its shard names would match the other split's pattern "
                        f"({train} matches *val_*.bin or {val} matches *train_*.bin), so train_gpt.py would "
                        f"read training shards as validation; choose a prefix without 'train'/'val' before '_'")


def _check_out(out: Path) -> None:
    """--out must be a directory or a new path whose existing parents are directories."""
    if out.exists() and not out.is_dir():
        raise ToolError(f"{out}: exists and is not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ToolError(f"{out}: {parent} is not a directory")
            break


def build_dataset(docs: Iterable[Doc], out: Path, settings: BuildSettings,
                  extra_manifest: dict | None = None) -> dict:
    """Build a dataset directory at `out` (atomically) and return its manifest plus build stats."""
    out = Path(out)
    s = settings
    check_settings(s)
    _check_out(out)
    if out.parent.is_dir():  # first thing: what an earlier, killed build left next to --out
        _recover_interrupted_replacement(out)
        clean_stale_temporaries(out.parent, log=_log)
    workers = s.workers or default_workers()

    if s.tokenizer:
        tok_given: TokenizerInfo | None = load_tokenizer_file(s.tokenizer)
        name = tok_given.filename
        if name == "manifest.json" or any(fnmatch.fnmatchcase(name, f"*{x}_*.bin") for x in ("train", "val")):
            raise ToolError(f"--tokenizer {s.tokenizer}: its file name would clash with the dataset's manifest "
                            f"or shards in --out; copy it under another name")
        if s.vocab_size is not None and s.vocab_size != tok_given.vocab_size:
            raise ToolError(f"--vocab-size {s.vocab_size} but {s.tokenizer} has {tok_given.vocab_size} tokens")
        tok_desc = "file:" + tok_given.details["sha256"]
    elif s.byte:
        tok_given = pure_byte_tokenizer()
        if s.vocab_size is not None and s.vocab_size != tok_given.vocab_size:
            raise ToolError(f"--vocab-size {s.vocab_size} but the byte vocabulary has 260 tokens")
        tok_desc = "byte260"
    else:
        tok_given = None
        tok_desc = f"train:{json.dumps(PUBLISHED_SP_SETTINGS, sort_keys=True)}"

    split = dedupe_and_split(docs, s.seed, s.val_docs, s.val_fraction)
    _log(f"read {split.docs_read} docs: {split.empty_skipped} empty, "
         f"{split.duplicates_removed} exact duplicates dropped; {len(split.train)} train / {len(split.val)} val")
    fp = fingerprint(split, s, tok_desc)

    if out.is_dir() and any(out.iterdir()) and not s.force:
        old, problem = _existing_manifest(out)
        if problem:
            raise ToolError(f"{out} holds a manifest.json that is not a valid dataset manifest ({problem}); "
                            f"pass --force to replace the directory or choose another --out")
        if old and old.get("fingerprint") == fp:
            _log(f"{out} already holds this dataset (same inputs and settings): nothing to do")
            return dict(old, up_to_date=True)
        what = "a different dataset" if old else "other files"
        raise ToolError(f"{out} already holds {what}; pass --force to replace it or choose another --out")

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_prefix(out.name, "building")))
    except OSError as exc:
        raise ToolError(f"{out}: cannot create the build directory in {out.parent} "
                        f"({exc.strerror or exc}); the dataset is built next to --out, then renamed") from None
    try:
        os.chmod(tmp, DIR_MODE)
        if tok_given is None:
            vocab = s.vocab_size or 1024
            tok = train_sentencepiece(split.train, vocab, seed=s.seed, byte_fallback=s.byte_fallback,
                                      character_coverage=s.character_coverage,
                                      max_docs=s.tokenizer_train_docs, max_chars=s.tokenizer_train_chars,
                                      threads=workers, filename=f"{s.prefix}_{vocab}_bpe.model")
        else:
            tok = tok_given
        (tmp / tok.filename).write_bytes(tok.data)

        stats = {}
        sinks = {}
        for name, docs_ in (("val", split.val), ("train", split.train)):
            sinks[name] = ShardSink(tmp, s.prefix, name, s.shard_tokens)
            stats[name] = tokenize_split(docs_, tok, sinks[name], workers, s.progress, f"tokenize {name}")
        total_tokens = sum(v["tokens"] for v in stats.values())
        total_bytes = sum(v["utf8_bytes"] for v in stats.values())
        seconds = sum(v["seconds"] for v in stats.values())
        throughput = {"workers": workers, "seconds": round(seconds, 3),
                      "tokens_per_s": round(total_tokens / seconds), "mb_per_s": round(total_bytes / seconds / 1e6, 3)}
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "source": s.source,
            "seed": s.seed,
            "tokenizer_path": tok.filename,
            "tokenizer_kind": tok.kind,
            "byte_fallback": tok.byte_fallback,
            "vocab_size": tok.vocab_size,
            "bos_id": tok.bos_id,
            "append_eos": False,
            "splits": {name: {"docs": stats[name]["docs"], "tokens": stats[name]["tokens"],
                              "shards": len(sinks[name].files), "utf8_bytes": stats[name]["utf8_bytes"]}
                       for name in ("train", "val")},
            "shard_tokens": s.shard_tokens,
            "prefix": s.prefix,
            "tokenizer": tok.details,
            "input": {"docs_read": split.docs_read, "empty_skipped": split.empty_skipped,
                      "duplicates_removed": split.duplicates_removed, "groups": split.groups,
                      "val_fraction": s.val_fraction if s.val_docs is None else None, "val_docs": s.val_docs,
                      **({"val_groups": split.val_groups} if split.val_groups else {})},
            "files": sinks["train"].files + sinks["val"].files,
            "fingerprint": fp,
            "created_by": "data/build_dataset.py",
        }
        if extra_manifest:
            manifest.update(extra_manifest)
        atomic_write_json(tmp / "manifest.json", manifest)
        install_dir(tmp, out)
    except BaseException:
        remove_quietly(tmp)
        raise
    for name in ("train", "val"):
        sp = manifest["splits"][name]
        _log(f"{name}: {sp['docs']} docs, {sp['tokens']:,} tokens, {sp['shards']} shard(s)")
    _log(f"tokenized {total_tokens:,} tokens ({total_bytes / 1e6:.2f} MB of UTF-8) in {seconds:.2f}s with "
         f"{workers} worker(s): {throughput['tokens_per_s']:,} tokens/s, {throughput['mb_per_s']} MB/s")
    _log(f"dataset written to {out} (tokenizer {out / tok.filename})")
    return dict(manifest, throughput=throughput, up_to_date=False)


def _recover_interrupted_replacement(out: Path) -> None:
    """A build killed between the two renames of install_dir (or whose rollback failed) leaves no `out` and
    the previous dataset under `.OUT.old-...`: put it back rather than let the stale-temporary cleaner
    delete it."""
    if out.exists() or out.is_symlink():
        return
    prefix = f".{out.name}.old-"
    olds = sorted((p for p in stale_temporaries(out.parent) if p.name.startswith(prefix) and p.is_dir()),
                  key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], out)
        _log(f"note: restored {out} from {olds[-1].name}, left by a replacement that was interrupted")


# ----------------------------------------------------------------------------- CLI

def add_build_arguments(p: argparse.ArgumentParser, *, prefix_default: str = "corpus",
                        coverage_default: float = 0.999) -> None:
    p.add_argument("--out", required=True, help="dataset directory to create (built next to it, then renamed)")
    p.add_argument("--seed", type=int, default=1337, help="shuffle / split / tokenizer seed (default 1337)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--val-docs", type=int, default=None, help="number of validation documents")
    g.add_argument("--val-fraction", type=float, default=0.1, help="fraction of documents for validation (default 0.1)")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--tokenizer", default=None, help="reuse this SentencePiece .model or pure-byte .json")
    t.add_argument("--byte", action="store_true", help="use the byte260 vocabulary (no tokenizer training)")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary of the trained tokenizer (default 1024)")
    p.add_argument("--byte-fallback", action="store_true",
                   help="train with SentencePiece byte fallback (the published sp1024 has none)")
    p.add_argument("--character-coverage", type=float, default=coverage_default,
                   help=f"SentencePiece character_coverage (default {coverage_default}; the published sp1024 used "
                        "0.999: the rarest 0.1%% of characters become <unk>, which counts zero bytes)")
    p.add_argument("--tokenizer-train-docs", type=int, default=200_000, help="max training docs sampled for the tokenizer")
    p.add_argument("--tokenizer-train-chars", type=int, default=50_000_000, help="max characters sampled for the tokenizer")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard (default 100,000,000)")
    p.add_argument("--prefix", default=prefix_default, help=f"shard name prefix (default {prefix_default})")
    p.add_argument("--workers", type=int, default=0, help="tokenizer processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace an existing different dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the manifest and throughput as JSON on stdout")


def settings_from_args(args: argparse.Namespace, source: str) -> BuildSettings:
    return BuildSettings(
        source=source, seed=args.seed, val_docs=args.val_docs, val_fraction=args.val_fraction,
        tokenizer=args.tokenizer, byte=args.byte, vocab_size=args.vocab_size, byte_fallback=args.byte_fallback,
        character_coverage=args.character_coverage,
        tokenizer_train_docs=args.tokenizer_train_docs, tokenizer_train_chars=args.tokenizer_train_chars,
        shard_tokens=args.shard_tokens, prefix=args.prefix, workers=args.workers, force=args.force,
        progress=not args.no_progress)


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="text / JSONL files or directories of them")
    p.add_argument("--format", choices=["auto", "text", "jsonl"], default="auto",
                   help="input format (auto: .jsonl files are JSONL, others text)")
    p.add_argument("--text-unit", choices=["file", "blank-line", "line"], default="file",
                   help="a text file's documents: the whole file, blank-line-separated blocks, or lines")
    p.add_argument("--text-field", default="text", help="JSONL / HF field holding the text (default text)")
    p.add_argument("--hf-dataset", default=None, help="a Hugging Face datasets name (network needed)")
    p.add_argument("--hf-config", default=None, help="its configuration name")
    p.add_argument("--hf-split", default="train", help="its split (default train)")
    p.add_argument("--max-docs", type=int, default=None, help="read at most this many documents")
    add_build_arguments(p)
    args = p.parse_args(argv)
    if bool(args.inputs) == bool(args.hf_dataset):
        raise ToolError("give input files/directories or --hf-dataset (one of them)")
    if args.max_docs is not None and args.max_docs < 0:
        raise ToolError(f"--max-docs must be >= 0, got {args.max_docs}")
    if args.hf_dataset:
        docs: Iterable[Doc] = read_hf_dataset(args.hf_dataset, args.hf_config, args.hf_split,
                                              args.text_field, args.max_docs)
        source = f"hf:{args.hf_dataset}" + (f"/{args.hf_config}" if args.hf_config else "") + f":{args.hf_split}"
    else:
        docs = read_inputs(args.inputs, args.format, args.text_unit, args.text_field)
        if args.max_docs is not None:
            docs = (d for i, d in zip(range(args.max_docs), docs))
        source = "files:" + ",".join(Path(x).name for x in args.inputs)
    result = build_dataset(docs, Path(args.out), settings_from_args(args, source))
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
