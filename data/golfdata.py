"""Shared helpers for the data/ tools: the shard writer, atomic files, errors, the byte vocabulary.

The data/ tools WRITE the formats that train_gpt.py READS (train_gpt.py owns the reader and the
validation); the format constants below follow the contract in notes/CONTRACT.md:
256 little-endian int32 header words (magic, version, token count, zeros), then uint16 tokens.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

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


# ----------------------------------------------------------------------------- temporary files
#
# Every temporary file or directory the data tools create is named
#     .<final name>.<kind>-<host>-<pid>-<random>
# next to where the finished thing will be renamed to (kind: tmp, building, old, download).
# A process killed with SIGKILL cannot remove its temporaries, so each command, when it starts,
# removes the ones in the directories it writes to whose owner is gone: same host, and the pid is not
# running (or is running but started after the temporary was last modified, i.e. the pid was reused).
# Temporaries of live processes, of other hosts (shared filesystems) and anything not matching the
# pattern are left alone. Download `.partial` files are not temporaries: they are resume state.

TEMP_KINDS = ("tmp", "building", "old", "download")
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.(?P<kind>" + "|".join(TEMP_KINDS) +
                      r")-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


def temp_prefix(final_name: str, kind: str) -> str:
    """The name prefix of a temporary for `final_name` (tempfile adds the random part)."""
    assert kind in TEMP_KINDS, kind
    return f".{final_name}.{kind}-{_HOST}-{os.getpid()}-"


def _process_start_time(pid: int) -> float | None:
    """Wall-clock start time of a running process (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 (starttime), counted from field 3 (state)
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_is_gone(pid: int, modified: float) -> bool:
    """Whether process `pid` (of this host) can no longer be the one writing a temporary last modified then."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # alive under another user (or not a valid pid: leave it alone)
    started = _process_start_time(pid)
    return started is not None and started > modified + 2.0  # pid reused since the temporary was written


def stale_temporaries(directory: Path) -> list[Path]:
    """Our temporaries in `directory` whose owning process is gone (see the comment above)."""
    found: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or m.group("host") != _HOST:
            continue
        try:
            modified = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if owner_is_gone(int(m.group("pid")), modified):
            found.append(Path(entry.path))
    return found


def clean_stale_temporaries(*directories: Path, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove stale temporaries (see stale_temporaries) from each directory; return what was removed."""
    removed: list[Path] = []
    for directory in dict.fromkeys(Path(d) for d in directories):
        for path in stale_temporaries(directory):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as exc:
                if log:
                    log(f"note: cannot remove leftover temporary {path} ({exc.strerror or exc})")
                continue
            removed.append(path)
            if log:
                log(f"note: removed {path}, left behind by an interrupted run")
    return removed


def remove_quietly(path: Path) -> None:
    """Best-effort removal of a temporary file or directory on a failure path."""
    try:
        if Path(path).is_dir() and not Path(path).is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
    except OSError:
        pass


@contextlib.contextmanager
def directory_lock(directory: Path, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking flock on a directory while a command writes into it. The kernel
    drops it when the process dies (even by SIGKILL), so there is no lock file to go stale."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX: no lock)
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{directory}: another {what} is writing into it; wait for it to finish "
                            f"(or use another folder)") from None
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path through a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name, "tmp"))
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


# ----------------------------------------------------------------------------- manifests (JSON types)

def json_kind(value) -> str:
    """How a JSON value's type reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def expect_object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{what} is {json_kind(value)}, expected an object")
    return value


def expect_list(value, what: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{what} is {json_kind(value)}, expected a list")
    return value


def expect_str(value, what: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise DataError(f"{what} is {json_kind(value)}, expected a string")
    return value


def expect_bool(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise DataError(f"{what} is {json_kind(value)}, expected true or false")
    return value


def expect_int(value, what: str, *, lo: int | None = None, hi: int | None = None,
               nullable: bool = False) -> int | None:
    """An integer (not a boolean, not a float) within [lo, hi]."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{what} is {json_kind(value)}"
                        f"{' ' + json.dumps(value) if isinstance(value, (int, float, str)) and len(str(value)) < 40 else ''}"
                        f", expected an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (f"in [{lo}, {hi}]" if lo is not None and hi is not None else
                  f">= {lo}" if lo is not None else f"<= {hi}")
        raise DataError(f"{what} is {value}, expected an integer {bounds}")
    return value


def safe_relative_path(value, what: str) -> str:
    """A '/'-separated path that stays inside the folder it is relative to (no '..', not absolute)."""
    text = expect_str(value, what)
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or "\\" in text or "\0" in text or ".." in parts:
        raise DataError(f"{what} {text!r} is not a relative path inside the repository")
    return text


_COUNT_KEYS = ("docs", "tokens", "shards", "utf8_bytes", "bytes")


def read_json_file(path: Path, what: str = "") -> object:
    """A JSON file's value; DataError (one line) if it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: {what or 'file'} is not valid UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what or 'file'} ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise DataError(f"{path}: {what or 'file'} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise DataError(f"{path}: {what or 'file'} is not valid JSON ({exc})") from None


def check_golf_manifest(manifest, where: str) -> dict:
    """Check the JSON types (and ranges) of the keys the data tools and train_gpt.py read from a dataset
    directory's manifest.json; return it. Keys that are absent are not required; unknown keys are kept.
    `where` names the file in the messages (one line each, DataError)."""
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
    """Read and type-check a dataset directory's manifest.json (DataError, one line, if it is not valid)."""
    return check_golf_manifest(read_json_file(path, "manifest"), str(path))


def check_pure_byte_spec(spec, where: str) -> dict:
    """Check a pure-byte tokenizer JSON (the byte260 layout); return its config with integer ids."""
    spec = expect_object(spec, f"{where}: the tokenizer spec")
    if spec.get("tokenizer_type") != "pure_byte":
        raise DataError(f"{where}: only the pure_byte JSON tokenizer spec is supported")
    cfg = expect_object(spec.get("config", {}), f"{where}: `config`")
    out = {}
    for k, default in PURE_BYTE_SPEC["config"].items():
        out[k] = expect_int(cfg.get(k, default), f"{where}: `config.{k}`", lo=0, hi=MAX_VOCAB - 1)
    if out["byte_offset"] != PURE_BYTE_SPEC["config"]["byte_offset"] or out["byte_count"] != 256:
        raise DataError(f"{where}: only the standard byte260 layout (byte_offset 4, 256 bytes) is supported")
    vocab = expect_int(spec.get("vocab_size", 260), f"{where}: `vocab_size`", lo=1, hi=MAX_VOCAB)
    if vocab != out["byte_offset"] + out["byte_count"]:
        raise DataError(f"{where}: `vocab_size` is {vocab}, but byte_offset 4 + 256 bytes make 260")
    for k in ("pad_id", "bos_id", "eos_id", "unk_id"):
        if out[k] >= out["byte_offset"]:
            raise DataError(f"{where}: `config.{k}` is {out[k]}, expected a special id below byte_offset 4")
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
