"""Shared helpers for the data/ tools: the shard writer, atomic files, errors, the byte vocabulary.

The data/ tools WRITE the formats that train_gpt.py READS (train_gpt.py owns the reader and the
validation); the format constants below follow the contract in notes/CONTRACT.md:
256 little-endian int32 header words (magic, version, token count, zeros), then uint16 tokens.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

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


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _current_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give: mkstemp/mkdtemp create private (0600/0700) entries
DIR_MODE = 0o777 & ~UMASK


class DataError(Exception):
    """A one-line, user-facing problem with the input or the output of a data tool."""


# ----------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path through a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


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
        raise DataError("token ids must be in [0, 65535] to fit a uint16 shard")
    if tokens.size >= 2**31:
        raise DataError(f"shard of {tokens.size} tokens does not fit the int32 header")
    return shard_header(int(tokens.size)).tobytes() + tokens.astype("<u2", copy=False).tobytes()


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write one shard atomically (never a half-written file under the final name)."""
    atomic_write_bytes(Path(path), shard_bytes(tokens))


def shard_token_count(path: Path) -> int:
    """Read a shard's header and check the file size agrees; return its token count.

    A light check used by the downloader (train_gpt.load_shard is the full reader)."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte shard header")
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    if int(header[0]) != SHARD_MAGIC or int(header[1]) != SHARD_VERSION:
        raise DataError(f"{path}: not a shard (magic {int(header[0])}, version {int(header[1])})")
    count = int(header[2])
    expected = HEADER_BYTES + 2 * count
    if size != expected:
        raise DataError(f"{path}: header says {count} tokens ({expected} bytes) but the file has {size} bytes")
    return count


# ----------------------------------------------------------------------------- byte vocabulary

def pure_byte_encode(text: str) -> list[int]:
    offset = PURE_BYTE_SPEC["config"]["byte_offset"]
    return [offset + b for b in text.encode("utf-8")]


# ----------------------------------------------------------------------------- CLI plumbing

def golf_error_types() -> tuple[type[BaseException], ...]:
    """DataError plus train_gpt.GolfError when train_gpt.py is importable."""
    types: list[type[BaseException]] = [DataError]
    try:
        import train_gpt  # noqa: WPS433 (optional: the repository root on sys.path)
        types.append(train_gpt.GolfError)
    except Exception:
        pass
    return tuple(types)


def add_repo_root_to_path() -> Path:
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a tool's main; turn expected failures into one `error:` line and exit status 1."""
    add_repo_root_to_path()
    errors = golf_error_types()
    try:
        return main(argv)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
