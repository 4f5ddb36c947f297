#!/usr/bin/env python3
"""Download the challenge's published FineWeb export (shards + tokenizer) from the Hugging Face hub.

Manifest-driven: reads <root>/manifest.json of the dataset repository first, then fetches the
tokenizer files, every validation shard, and the first N training shards of the chosen variant
(sp1024, any other spN the manifest lists, or byte260). Hub layout (repo type "dataset"):

  <root>/manifest.json
  <root>/tokenizers/<tokenizer files named in the manifest>
  <root>/datasets/fineweb10B_<variant>/fineweb_{train,val}_NNNNNN.bin

Local layout (under --output-root, default: this data/ folder), the one train_gpt.py's defaults use:

  data/manifest.json
  data/tokenizers/fineweb_1024_bpe.model
  data/datasets/fineweb10B_sp1024/fineweb_{train,val}_NNNNNN.bin   (+ a golf manifest.json)

Files already present and complete are skipped; an interrupted file resumes (with --mirror from its partial,
`.NAME.partial-<host>-<pid>-<random>`; from the huggingface_hub cache otherwise). Every file is checked before it
gets its final name: size, shard header against file size, and SHA-256 where the hub (LFS) or the
manifest's optional "files" map {path: {"size": n, "sha256": h}} gives one.
--mirror DIR reads a local directory laid out like the repository instead of the hub
(for machines without internet).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import train_gpt
from data.golfdata import (
    HEADER_BYTES,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    MAX_VOCAB,
    atomic_write_json,
    check_golf_manifest,
    expect_bool,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    safe_relative_path,
)
from common import TEMP_NAME_RE, ToolError, clean_stale_temporaries, lock, read_json, run_cli, temp_prefix

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
# The larger vocabularies the records moved to (SP4096, then SP8192) were published in another repository.
VARIANT_REPO_IDS = {"sp4096": "kevclark/parameter-golf", "sp8192": "kevclark/parameter-golf"}


def repo_for(variant: str) -> str:
    """The repository a variant is published in, unless FINEWEB_REPO_ID (or MATCHED_FINEWEB_REPO_ID) says otherwise."""
    return _env("FINEWEB_REPO_ID", "MATCHED_FINEWEB_REPO_ID", default=VARIANT_REPO_IDS.get(variant, DEFAULT_REPO_ID))
DEFAULT_REMOTE_ROOT = "datasets"
DATA_DIR = Path(__file__).resolve().parent
CHUNK = 1 << 22


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- sources

@dataclass
class RemoteInfo:
    size: int | None = None
    sha256: str | None = None


class MirrorSource:
    """A local directory laid out like the hub repository."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ToolError(f"--mirror {self.root}: no such directory")
        self.description = f"mirror {self.root}"

    def info(self, paths: list[str]) -> dict[str, RemoteInfo]:
        out = {}
        for p in paths:
            src = self.root / p
            if not src.is_file():
                raise ToolError(f"{p}: not found in {self.description}")
            out[p] = RemoteInfo(size=src.stat().st_size)
        return out

    def fetch(self, path: str, part: Path, expected_size: int | None, bar) -> int:
        """Append the missing bytes of `path` to `part` (resuming); return bytes transferred."""
        src = self.root / path
        start = part.stat().st_size if part.exists() else 0
        if expected_size is not None and start > expected_size:
            start = 0
        moved = 0
        with open(src, "rb") as fi, open(part, "r+b" if start else "wb") as fo:
            fo.truncate(start)
            fo.seek(start)
            fi.seek(start)
            while True:
                block = fi.read(CHUNK)
                if not block:
                    break
                fo.write(block)
                moved += len(block)
                if bar is not None:
                    bar.update(len(block))
            fo.flush()
            os.fsync(fo.fileno())
        return moved


class HubSource:
    """The Hugging Face hub through huggingface_hub (its cache resumes interrupted downloads)."""

    def __init__(self, repo_id: str, revision: str | None):
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            raise ToolError("downloading from the hub needs huggingface_hub: pip install huggingface_hub") from None
        self.repo_id, self.revision = repo_id, revision
        self.description = f"hf://datasets/{repo_id}" + (f"@{revision}" if revision else "")

    def info(self, paths: list[str]) -> dict[str, RemoteInfo]:
        from huggingface_hub import HfApi
        out: dict[str, RemoteInfo] = {}
        try:
            for i in range(0, len(paths), 50):
                for entry in HfApi().get_paths_info(self.repo_id, paths[i:i + 50], repo_type="dataset",
                                                    revision=self.revision):
                    lfs = getattr(entry, "lfs", None)
                    out[entry.path] = RemoteInfo(size=getattr(entry, "size", None),
                                                 sha256=getattr(lfs, "sha256", None) if lfs else None)
        except Exception as exc:
            raise ToolError(f"cannot list files of {self.description}: {_first_line(exc)}") from None
        missing = [p for p in paths if p not in out]
        if missing:
            raise ToolError(f"{missing[0]}: not found in {self.description}")
        return out

    def fetch(self, path: str, part: Path, expected_size: int | None, bar) -> int:
        from huggingface_hub import hf_hub_download
        try:
            cached = Path(hf_hub_download(self.repo_id, path, repo_type="dataset", revision=self.revision))
        except Exception as exc:
            raise ToolError(f"{path}: download from {self.description} failed: {_first_line(exc)}") from None
        cached = cached.resolve(strict=True)
        part.unlink(missing_ok=True)
        try:
            os.link(cached, part)  # same filesystem: no second copy of the bytes
        except OSError:
            shutil.copyfile(cached, part)
        size = part.stat().st_size
        if bar is not None:
            bar.update(size)
        return size


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- planning

@dataclass
class Planned:
    remote: str  # path inside the repository
    local: Path
    role: str  # manifest | tokenizer | val | train
    expected: RemoteInfo = field(default_factory=RemoteInfo)


def local_path_for(remote_rel: str, output_root: Path) -> Path:
    """<root>/datasets/X -> OUT/datasets/X, <root>/tokenizers/X -> OUT/tokenizers/X, else OUT/<rel>."""
    return output_root.joinpath(*Path(remote_rel).parts)


def dataset_name_for(variant: str) -> str:
    if variant == "byte260" or (variant.startswith("sp") and variant[2:].isdecimal()):
        return f"fineweb10B_{variant}"
    raise ToolError(f"unknown variant {variant!r}: expected byte260 or sp<VOCAB>, e.g. sp1024")


def check_manifest(manifest, where: str) -> dict:
    """The published manifest's top level: an object whose `datasets` and `tokenizers` are lists of objects
    (the entry of the chosen variant is checked in detail by plan_files)."""
    m = expect_object(manifest, f"{where}: the manifest")
    for key in ("datasets", "tokenizers"):
        for i, item in enumerate(expect_list(m.get(key) or [], f"{where}: `{key}`")):
            expect_object(item, f"{where}: `{key}[{i}]`")
    if "append_eos" in m:
        expect_bool(m["append_eos"], f"{where}: `append_eos`")
    if "shuffle_seed" in m:
        expect_int(m["shuffle_seed"], f"{where}: `shuffle_seed`", nullable=True)
    if m.get("files") is not None:
        for rel, meta in expect_object(m["files"], f"{where}: `files`").items():
            meta = expect_object(meta, f"{where}: `files[{rel!r}]`")
            if meta.get("size") is not None:
                expect_int(meta["size"], f"{where}: `files[{rel!r}].size`", lo=0)
            if meta.get("sha256") is not None:
                sha = expect_str(meta["sha256"], f"{where}: `files[{rel!r}].sha256`")
                if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
                    raise ToolError(f"{where}: `files[{rel!r}].sha256` is not a 64-digit hex SHA-256")
    return m


def plan_files(manifest: dict, variant: str, train_shards: int,
               source: str = "manifest.json") -> tuple[dict, dict, list[tuple[str, str]]]:
    """(dataset entry, tokenizer entry, [(path relative to the root, role)]) for a variant.
    Every value used is type-checked first (ToolError naming `source` and the key)."""
    name = dataset_name_for(variant)
    manifest = check_manifest(manifest, source)
    datasets = manifest.get("datasets") or []
    entry = next((d for d in datasets if d.get("name") == name), None)
    if entry is None:
        have = ", ".join(sorted(str(d.get("name", "?")).replace("fineweb10B_", "") for d in datasets)) or "none"
        raise ToolError(f"variant {variant} ({name}) is not in the manifest; it lists: {have}")
    where = f"{source}: dataset {name}"
    stats = entry.get("stats")
    if not isinstance(stats, dict) or "files_train" not in stats or "files_val" not in stats:
        raise ToolError(f"{where}: lacks stats.files_train / stats.files_val")
    n_train = expect_int(stats["files_train"], f"{where}: `stats.files_train`", lo=0)
    n_val = expect_int(stats["files_val"], f"{where}: `stats.files_val`", lo=1)
    if train_shards < 0:
        raise ToolError(f"--train-shards must be >= 0, got {train_shards}")
    if train_shards > n_train:
        raise ToolError(f"{variant} has {n_train} training shards, {train_shards} requested")
    for key in ("bos_id", "eos_id"):
        if entry.get(key) is not None:
            expect_int(entry[key], f"{where}: `{key}`", lo=0, hi=MAX_VOCAB - 1)
    if entry.get("vocab_size") is not None:
        expect_int(entry["vocab_size"], f"{where}: `vocab_size`", lo=1, hi=MAX_VOCAB)
    tok_name = expect_str(entry.get("tokenizer_name"), f"{where}: `tokenizer_name`")
    tok = next((t for t in manifest.get("tokenizers") or [] if t.get("name") == tok_name), None)
    if tok is None:
        raise ToolError(f"tokenizer {tok_name!r} of {name} is not in the manifest")
    twhere = f"{source}: tokenizer {tok_name}"
    for key in ("bos_id", "eos_id"):
        if tok.get(key) is not None:
            expect_int(tok[key], f"{twhere}: `{key}`", lo=0, hi=MAX_VOCAB - 1)
    if tok.get("vocab_size") is not None:
        expect_int(tok["vocab_size"], f"{twhere}: `vocab_size`", lo=1, hi=MAX_VOCAB)
    if entry.get("vocab_size") is None and tok.get("vocab_size") is None:
        raise ToolError(f"{where}: no `vocab_size` (neither the dataset nor its tokenizer gives one)")
    files: list[tuple[str, str]] = []
    for key in ("model_path", "vocab_path", "path"):
        if tok.get(key):
            files.append((safe_relative_path(tok[key], f"{twhere}: `{key}`"), "tokenizer"))
    if not any(role == "tokenizer" for _, role in files):
        raise ToolError(f"tokenizer {tok.get('name')!r} names no file (model_path/vocab_path/path)")
    if not tok.get("model_path") and not tok.get("path"):
        raise ToolError(f"{twhere}: names no tokenizer file (model_path or path)")
    base = safe_relative_path(entry.get("path") or f"datasets/{name}", f"{where}: `path`")
    globs = {}
    for split in ("val", "train"):
        key = f"{split}_glob"
        globs[split] = safe_relative_path(entry.get(key) or f"{base}/fineweb_{split}_*.bin", f"{where}: `{key}`")
        if globs[split].count("*") != 1:
            raise ToolError(f"{where}: `{key}` {globs[split]!r} must hold exactly one '*' (the shard number)")
    files += [(globs["val"].replace("*", f"{i:06d}"), "val") for i in range(n_val)]
    files += [(globs["train"].replace("*", f"{i:06d}"), "train") for i in range(train_shards)]
    return entry, tok, files


# ----------------------------------------------------------------------------- verification

def scan_file(path: Path, want_sha: bool, bos_id: int | None) -> tuple[str | None, int | None]:
    """One pass over a file: its SHA-256 (if wanted) and, for a shard, the number of BOS tokens."""
    if not want_sha and bos_id is None:
        return None, None
    h = hashlib.sha256() if want_sha else None
    docs = 0 if bos_id is not None else None
    with open(path, "rb") as f:
        first = True
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            if h is not None:
                h.update(block)
            if docs is not None:
                body = block[HEADER_BYTES:] if first else block
                docs += int(np.count_nonzero(np.frombuffer(body, dtype="<u2") == bos_id))
            first = False
    return (h.hexdigest() if h else None), docs


def check_file(path: Path, planned: Planned, *, hash_it: bool, bos_id: int | None) -> dict:
    """Raise ToolError if path is not the complete, uncorrupted file; return its facts."""
    size = path.stat().st_size
    exp = planned.expected
    if exp.size is not None and size != exp.size:
        raise ToolError(f"{planned.remote}: {size} bytes, expected {exp.size}")
    facts: dict = {"bytes": size}
    is_shard = planned.role in ("train", "val")
    if is_shard:
        try:
            facts["tokens"] = train_gpt.read_shard_header(path)  # train_gpt.py's own reader: header and size
        except train_gpt.GolfError as e:
            raise ToolError(str(e)) from None
    sha, docs = scan_file(path, hash_it and exp.sha256 is not None, bos_id if is_shard else None)
    if sha is not None and sha != exp.sha256:
        raise ToolError(f"{planned.remote}: SHA-256 {sha[:16]}... does not match the expected {exp.sha256[:16]}...")
    if docs is not None:
        facts["docs"] = docs
    return facts


# ----------------------------------------------------------------------------- download

def partials_of(final: Path) -> list[Path]:
    """The resume files an interrupted download left for `final`, smallest first: `.NAME.partial-<host>-<pid>-<rnd>`
    (the one temporary-name convention, kind `partial`), and `NAME.partial` of earlier versions of this command."""
    prefix = f".{final.name}.partial-"
    try:
        names = [entry.name for entry in os.scandir(final.parent)]
    except OSError:
        return []
    found = [final.parent / n for n in names if n.startswith(prefix) and TEMP_NAME_RE.match(n)]
    legacy = final.with_name(final.name + ".partial")
    if legacy.is_file():
        found.append(legacy)
    return sorted(found, key=lambda p: p.stat().st_size)


def claim_partial(final: Path) -> Path:
    """This process's resume file for `final`: the longest partial an interrupted run left (the others are removed),
    renamed to this process's name, or a name not yet used. Called with the output root locked: no other download is
    writing any of them."""
    mine = final.with_name(temp_prefix(final.name, "partial") + secrets.token_hex(4))
    left = partials_of(final)
    for stale in left[:-1]:
        stale.unlink(missing_ok=True)
    if left:
        os.replace(left[-1], mine)
    return mine


def fetch_one(source, planned: Planned, bar, bos_id: int | None) -> dict:
    """Fetch planned.remote into planned.local via its partial (claim_partial); verify; rename into place."""
    planned.local.parent.mkdir(parents=True, exist_ok=True)
    part = claim_partial(planned.local)
    resumed_from = part.stat().st_size if part.exists() else 0
    moved = source.fetch(planned.remote, part, planned.expected.size, bar)
    try:
        facts = check_file(part, planned, hash_it=True, bos_id=bos_id)
    except ToolError as first_error:
        part.unlink(missing_ok=True)
        if resumed_from == 0:
            raise
        _log(f"note: resumed {planned.remote} failed its check ({first_error}); downloading it again")
        moved += source.fetch(planned.remote, part, planned.expected.size, bar)
        try:
            facts = check_file(part, planned, hash_it=True, bos_id=bos_id)
        except ToolError:
            part.unlink(missing_ok=True)
            raise
        resumed_from = 0
    os.replace(part, planned.local)
    return dict(facts, status="resumed" if resumed_from else "downloaded", transferred=moved,
                resumed_from=resumed_from)


def download(variant: str = "sp1024", train_shards: int = 80, *, output_root: Path = DATA_DIR,
             mirror: Path | None = None, repo_id: str | None = None, remote_root: str = DEFAULT_REMOTE_ROOT,
             revision: str | None = None, verify_existing: bool = False, progress: bool = True) -> dict:
    output_root = Path(output_root)
    for parent in (output_root, *output_root.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ToolError(f"--output-root {output_root}: {parent} is not a directory")
            break
    source = MirrorSource(mirror) if mirror else HubSource(repo_id or repo_for(variant), revision)
    output_root.mkdir(parents=True, exist_ok=True)
    busy = f"{output_root}: another download is writing into it; wait for it to finish (or use another folder)"
    with lock(output_root, busy):  # one writer per output root: partials are shared
        return _download(source, variant, train_shards, output_root, remote_root, verify_existing, progress)


def _download(source, variant: str, train_shards: int, output_root: Path, remote_root: str,
              verify_existing: bool, progress: bool) -> dict:
    prefix = remote_root.strip("/")
    remote = (lambda rel: f"{prefix}/{rel}" if prefix else rel)

    # 1. the manifest, always fetched first (small), then read.
    man = Planned(remote("manifest.json"), output_root / "manifest.json", "manifest")
    man.expected = source.info([man.remote])[man.remote]
    report: dict = {"source": source.description, "variant": variant, "output_root": str(output_root), "files": []}
    man.local.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(man.local.parent, log=_log)
    facts = fetch_one(source, man, None, None)
    report["files"].append({"path": str(man.local), "role": "manifest", **facts})
    manifest = read_json(man.local, "the downloaded manifest", finite=False)

    entry, tok_entry, files = plan_files(manifest, variant, train_shards, str(man.local))
    bos_id = entry.get("bos_id", tok_entry.get("bos_id"))
    plan = [Planned(remote(rel), local_path_for(rel, output_root), role) for rel, role in files]
    clean_stale_temporaries(*{p.local.parent for p in plan}, log=_log)
    infos = source.info([p.remote for p in plan])
    listed = manifest.get("files") or {}
    for p, (rel, _) in zip(plan, files):
        p.expected = infos[p.remote]
        meta = listed.get(rel) or {}
        if p.expected.size is None and meta.get("size") is not None:
            p.expected.size = int(meta["size"])
        p.expected.sha256 = p.expected.sha256 or meta.get("sha256")

    # 2. skip what is already complete.
    dataset_dir = local_path_for(entry.get("path") or f"datasets/{entry['name']}", output_root)
    previous = _previous_file_facts(dataset_dir)
    todo: list[Planned] = []
    for p in plan:
        if not p.local.exists():
            todo.append(p)
            continue
        try:
            known = previous.get(p.local.name)
            reuse_docs = known is not None and known.get("bytes") == p.local.stat().st_size and "docs" in known
            facts = check_file(p.local, p, hash_it=verify_existing,
                               bos_id=None if reuse_docs else bos_id)
            if reuse_docs:
                facts["docs"] = known["docs"]
            report["files"].append({"path": str(p.local), "role": p.role, "status": "present", **facts})
            for stale_part in partials_of(p.local):  # the file is complete: a partial of it is no longer resume state
                stale_part.unlink()
        except ToolError as exc:
            _log(f"note: {p.local} is incomplete or corrupt ({exc}); downloading it again")
            p.local.unlink()
            todo.append(p)

    # 3. download the rest.
    total = sum(p.expected.size or 0 for p in todo)
    _log(f"{source.description}: {len(plan)} files for {entry['name']} ({len(plan) - len(todo)} already present, "
         f"{len(todo)} to fetch, {total / 1e9:.2f} GB)")
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="download", file=sys.stderr,
               disable=not progress) if tqdm and todo else None
    try:
        for p in todo:
            if bar is not None:
                bar.set_postfix_str(p.local.name)
            facts = fetch_one(source, p, bar, bos_id)
            report["files"].append({"path": str(p.local), "role": p.role, **facts})
    finally:
        if bar is not None:
            bar.close()

    # 4. a golf manifest in the dataset directory (so train_gpt finds the tokenizer), and a summary.
    golf = _golf_manifest(manifest, entry, tok_entry, report, source, dataset_dir, output_root, bos_id)
    atomic_write_json(dataset_dir / "manifest.json", golf)
    tokenizer_file = next(output_root.joinpath(*Path(str(tok_entry[k])).parts)
                          for k in ("model_path", "path") if tok_entry.get(k))
    report.update(dataset_dir=str(dataset_dir), tokenizer_path=str(tokenizer_file),
                  manifest_path=str(man.local), splits=golf["splits"], vocab_size=golf["vocab_size"])
    return report


def _previous_file_facts(dataset_dir: Path) -> dict[str, dict]:
    """Per-file facts (bytes, docs) of the golf manifest a previous run wrote: a cache, so documents need
    not be counted again. A missing or invalid one is ignored (with a note) and rewritten at the end."""
    path = dataset_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        old = check_golf_manifest(read_json(path, "manifest", finite=False), str(path))
    except ToolError as exc:
        _log(f"note: ignoring the previous {path} ({exc}); it will be rewritten")
        return {}
    return {f["name"]: f for f in old.get("files", []) if "name" in f}


def _golf_manifest(manifest: dict, entry: dict, tok_entry: dict, report: dict, source, dataset_dir: Path,
                   output_root: Path, bos_id: int | None) -> dict:
    model_rel = tok_entry.get("model_path") or tok_entry.get("path")
    tok_path = output_root.joinpath(*Path(str(model_rel)).parts)
    kind = "pure_byte" if str(tok_path).endswith(".json") else "sentencepiece"
    byte_fallback = False
    if kind == "sentencepiece":
        try:
            import sentencepiece as spm
            sp = spm.SentencePieceProcessor(model_file=str(tok_path))
            byte_fallback = any(sp.is_byte(i) for i in range(sp.vocab_size()))
        except Exception:
            raise ToolError(f"{tok_path}: not a SentencePiece model") from None
    shards = [f for f in report["files"] if f["role"] in ("train", "val")]
    splits = {}
    for split in ("train", "val"):
        mine = [f for f in shards if f["role"] == split]
        splits[split] = {"docs": sum(f.get("docs", 0) for f in mine), "tokens": sum(f["tokens"] for f in mine),
                         "shards": len(mine)}
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "source": f"{source.description}/{entry.get('path', '')}",
        "seed": manifest.get("shuffle_seed"),
        "tokenizer_path": os.path.relpath(tok_path, dataset_dir),
        "tokenizer_kind": kind,
        "byte_fallback": byte_fallback,
        "vocab_size": entry.get("vocab_size") or tok_entry.get("vocab_size"),
        "bos_id": bos_id,
        "append_eos": manifest.get("append_eos", False),
        "splits": splits,
        "published_stats": entry.get("stats"),
        "files": [{"name": Path(f["path"]).name, "split": f["role"], "bytes": f["bytes"], "tokens": f["tokens"],
                   **({"docs": f["docs"]} if "docs" in f else {})} for f in shards],
        "created_by": "data/download_fineweb.py",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default=_env("FINEWEB_VARIANT", default="sp1024"),
                   help="sp1024 (default), another spN the manifest lists, or byte260 [env FINEWEB_VARIANT]")
    p.add_argument("--train-shards", type=int, default=80,
                   help="how many training shards (a prefix, 100M tokens each) to fetch (default 80)")
    p.add_argument("--repo-id", default=None,
                   help=f"Hugging Face dataset repository (default {DEFAULT_REPO_ID}; {VARIANT_REPO_IDS['sp8192']} for "
                        f"sp4096 and sp8192) [env FINEWEB_REPO_ID]")
    p.add_argument("--remote-root", default=_env("FINEWEB_REMOTE_ROOT", "MATCHED_FINEWEB_REMOTE_ROOT_PREFIX",
                                                 default=DEFAULT_REMOTE_ROOT),
                   help=f"folder of the export inside the repository (default {DEFAULT_REMOTE_ROOT}) [env FINEWEB_REMOTE_ROOT]")
    p.add_argument("--revision", default=_env("FINEWEB_REVISION"), help="repository revision (branch, tag, commit)")
    p.add_argument("--mirror", default=_env("FINEWEB_MIRROR"),
                   help="read from this local directory laid out like the repository instead of the hub [env FINEWEB_MIRROR]")
    p.add_argument("--output-root", default=str(DATA_DIR), help=f"where to put manifest.json, tokenizers/, datasets/ (default {DATA_DIR})")
    p.add_argument("--verify-existing", action="store_true", help="also hash files already present (when a hash is known)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = p.parse_args(argv)
    report = download(args.variant, args.train_shards, output_root=Path(args.output_root),
                      mirror=Path(args.mirror) if args.mirror else None, repo_id=args.repo_id,
                      remote_root=args.remote_root, revision=args.revision, verify_existing=args.verify_existing,
                      progress=not args.no_progress)
    counts: dict[str, int] = {}
    for f in report["files"]:
        counts[f.get("status", "?")] = counts.get(f.get("status", "?"), 0) + 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        s = report["splits"]
        print(f"files: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        print(f"manifest:  {report['manifest_path']}")
        print(f"tokenizer: {report['tokenizer_path']}")
        print(f"dataset:   {report['dataset_dir']}  (train {s['train']['shards']} shards / {s['train']['tokens']:,} tokens;"
              f" val {s['val']['shards']} shards / {s['val']['tokens']:,} tokens)")
        print(f"train with: DATA_PATH={report['dataset_dir']} TOKENIZER_PATH={report['tokenizer_path']} "
              f"VOCAB_SIZE={report['vocab_size']} python train_gpt.py")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
