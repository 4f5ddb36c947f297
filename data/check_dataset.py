#!/usr/bin/env python3
"""Check a dataset directory the way train_gpt.py will read it (a thin CLI over train_gpt.validate_dataset).

Checks every shard's header and size, that the tokens are below the vocabulary size (validation
split always; training split too with --full), and that the tokenizer's vocabulary matches.
The tokenizer is --tokenizer, else the directory's manifest.json `tokenizer_path`, else the
published ./data/tokenizers/fineweb_1024_bpe.model (train_gpt.resolve_tokenizer_path).
The vocabulary size is --vocab-size, else the manifest's `vocab_size`, else the tokenizer's.

Example:
  python -m data.check_dataset data/datasets/shakespeare_sp1024
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import train_gpt
from data.golfdata import check_pure_byte_spec, read_golf_manifest
from common import ToolError, read_json, run_cli


def check(data_path: str, tokenizer: str = "", vocab_size: int | None = None, full: bool = False) -> dict:
    if not Path(data_path).is_dir():
        raise ToolError(f"{data_path}: not a directory")
    manifest: dict = {}
    mpath = Path(data_path) / "manifest.json"
    if mpath.is_file():  # checked first: train_gpt reads its tokenizer_path
        manifest = read_golf_manifest(mpath)
    tok_path = train_gpt.resolve_tokenizer_path(data_path, tokenizer or "")
    if Path(tok_path).suffix == ".json" and Path(tok_path).is_file():
        check_pure_byte_spec(read_json(tok_path, "tokenizer", finite=False), str(tok_path))
    if vocab_size is None:
        vocab_size = manifest.get("vocab_size")
    if vocab_size is None:
        vocab_size = train_gpt.load_tokenizer(tok_path).vocab_size
    summary = train_gpt.validate_dataset(data_path, tok_path, int(vocab_size), full=full)
    summary["data_path"] = str(data_path)
    for split, facts in (manifest.get("splits") or {}).items():
        if split not in ("train", "val"):
            continue
        want, have = facts.get("tokens"), summary[split]["tokens"]
        if want is not None and manifest.get("created_by") == "data/build_dataset.py" and want != have:
            raise ToolError(f"{data_path}: manifest says {want} {split} tokens, shards hold {have}")
        if "docs" in facts:
            summary[split]["docs"] = facts["docs"]
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_path", help="dataset directory (shards + manifest.json)")
    p.add_argument("--tokenizer", default="", help="tokenizer file (default: from the manifest)")
    p.add_argument("--vocab-size", type=int, default=None, help="expected vocabulary size (default: from the manifest)")
    p.add_argument("--full", action="store_true", help="also check every training token's range (reads all shards)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    summary = check(args.data_path, args.tokenizer, args.vocab_size, args.full)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"ok: {summary['data_path']} (tokenizer {summary['tokenizer']}, vocab {summary['vocab_size']}, "
              f"bos {summary['bos_id']})")
        for split in ("train", "val"):
            s = summary[split]
            docs = f", {s['docs']:,} docs" if "docs" in s else ""
            print(f"  {split}: {s['shards']} shard(s), {s['tokens']:,} tokens{docs}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
