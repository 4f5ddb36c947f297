"""What every command of data/, tools/, bench/ and studies/ shares: the error type, atomic writes and their temporaries,
locks, bounded JSON files, the CLI runner and the submission cap.

It sits at the repository root, below both data/ and tools/, so the dependency follows the data flow (text -> data/
-> train_gpt.py -> tools/): data/ imports it without borrowing from a later stage. tools/common.py re-exports every
name, so `from tools.common import ...` keeps working.

No torch here (train_gpt.py is imported only by the commands that need it), so a sweep driver or a log parser starts
in a fraction of a second. train_gpt.py keeps its own copies of the few helpers it needs: it is the scored script and
imports nothing of this repository (tests hold its temporary names to TEMP_NAME_RE).

    ToolError                 a problem the user can fix: one `error: ...` line and exit status 1
    run_cli(main, argv)       runs a command's main(argv); ToolError, train_gpt.GolfError and OSError become that line
    atomic_write(path, data)  bytes or text under a temporary name in the same folder, then renamed
    TEMP_NAME_RE              the one pattern of every temporary's name: .<final name>.<kind>-<host>-<pid>-<random>
    clean_stale_temporaries   removes the temporaries of processes that died (SIGKILL) before renaming them
    install_dir(tmp, dest)    a finished folder renamed into place, replacing (and until then keeping) an old one
    lock(path, busy)          a non-blocking flock on a file or folder, held while the context runs
    read_bounded(path, ...)   a file's bytes, refused before it is read whole when it is over a size limit
    read_json(path, what)     a JSON file's value: bounded size and depth, one-line errors, non-finite numbers refused
    SUBMISSION_CAP_BYTES      the challenge's cap on code + compressed model
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent
TRAIN_GPT = REPO / "train_gpt.py"
# The challenge's cap on one submission: the bytes of train_gpt.py plus the bytes of the compressed model, per seed.
SUBMISSION_CAP_BYTES = 16_000_000


class ToolError(Exception):
    """A refusal or bad input in a command, reported as one `error: ...` line and exit status 1 (train_gpt.py's own
    GolfError is reported the same way)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix: ToolError, and train_gpt.GolfError once train_gpt is imported (a
    command that never imported it cannot have raised it)."""
    golf = sys.modules.get("train_gpt")
    return (ToolError, golf.GolfError) if golf is not None else (ToolError,)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a command's main(argv) and return its exit status: a user error or an OSError is one `error:` line and 1,
    an interrupt 130."""
    try:
        return main(argv) or 0
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


# ----------------------------------------------------------------------------- temporaries and atomic writes
#
# Every temporary file or folder a command creates is named
#     .<final name>.<kind>-<host>-<pid>-<random>
# next to where the finished thing will be renamed to (kind: tmp, building, old, download, partial).
# A process killed with SIGKILL cannot remove its temporaries, so a command, when it starts, may remove the ones in
# the folders it writes to whose owner is gone: same host, and the pid is not running (or is running but started
# after the temporary was last modified, i.e. the pid was reused). Temporaries of live processes, of other hosts
# (shared filesystems) and anything not matching the pattern are left alone. Kind `partial` is resume state (a
# download cut short): never removed as stale; the next process that holds the folder's lock takes it over.

TEMP_KINDS = ("tmp", "building", "old", "download", "partial")
RESUME_KINDS = ("partial",)
HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")
TEMP_NAME_RE = re.compile(r"^\.(?P<final>.+)\.(?P<kind>" + "|".join(TEMP_KINDS) +
                          r")-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _current_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give: mkstemp/mkdtemp create private (0600/0700) entries
DIR_MODE = 0o777 & ~UMASK


def temp_prefix(final_name: str, kind: str) -> str:
    """The name prefix of a temporary for `final_name` (tempfile adds the random part)."""
    assert kind in TEMP_KINDS, kind
    return f".{final_name}.{kind}-{HOST}-{os.getpid()}-"


def refuse_writing_over(out, inputs, flag: str, what: str) -> None:
    """Refuse an output path that is one of a command's inputs (a run's weights, a source, a log it reads), before
    any work: writing there would replace what it was made from. `what` names the input for the message."""
    out = Path(out)
    if out.exists() and any(Path(p).exists() and out.samefile(p) for p in inputs):
        raise ToolError(f"{flag} {out} is {what}: write it under another name")


def atomic_write(path, data: bytes | str) -> None:
    """Write bytes (or text, as UTF-8) to path through a temporary file in the same folder, flushed to disk, then
    renamed: the final name only ever holds whole files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name, "tmp"))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        m = TEMP_NAME_RE.match(entry.name)
        if not m or m.group("host") != HOST or m.group("kind") in RESUME_KINDS:
            continue
        try:
            modified = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if owner_is_gone(int(m.group("pid")), modified):
            found.append(Path(entry.path))
    return found


def remove_quietly(path: Path) -> None:
    """Best-effort removal of a temporary file or folder on a failure path."""
    try:
        if Path(path).is_dir() and not Path(path).is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def clean_stale_temporaries(*directories: Path, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove stale temporaries (see stale_temporaries) from each folder; return what was removed."""
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


def install_dir(tmp: Path, dest: Path) -> None:
    """Rename a finished folder `tmp` (a temporary next to `dest`) into place: `dest` absent, empty, or replaced. A
    replaced folder waits under `.<name>.old-...` until the new one is in place and is put back if that fails (if
    even that fails, a stale temporary of kind `old` is left for the next start)."""
    tmp, dest = Path(tmp), Path(dest)
    if dest.is_dir():
        if any(dest.iterdir()):
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temp_prefix(dest.name, "old")))
            os.rmdir(old)
            os.rename(dest, old)
            try:
                os.rename(tmp, dest)
            except BaseException:
                os.rename(old, dest)
                raise
            remove_quietly(old)  # what cannot be removed now is a stale temporary for the next start
            return
        os.rmdir(dest)
    os.rename(tmp, dest)


@contextlib.contextmanager
def lock(path, busy: str, shared: bool = False) -> Iterator[None]:
    """Hold a non-blocking flock on a folder or a lock file (created if missing) while the context runs; ToolError(busy)
    when another process holds it. The kernel drops it when the process dies (even by SIGKILL): nothing goes stale."""
    import fcntl

    path = Path(path)
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ToolError(busy) from None
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- bounded reads and JSON files

# The JSON the commands read (manifests, tokenizer specs, run summaries, sweep state files) is kilobytes to a few
# megabytes (a summary's history grows ~100 bytes per logged step); a file of more is not one of them, and reading it
# whole could exhaust memory. Nesting: theirs is at most 4 levels; a deep document is refused before anything walks it.
JSON_MAX_BYTES = 64 * 2**20
JSON_MAX_DEPTH = 64


def read_bounded(path, max_bytes: int, what: str = "file") -> bytes:
    """A file's bytes; ToolError when it holds more than max_bytes, refused from its size before it is read (a pipe
    or device is read only up to the limit)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise ToolError(f"{path}: {what} is {size:,} bytes, more than the {max_bytes:,} accepted")
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ToolError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ToolError(f"{path}: {what} is more than the {max_bytes:,} bytes accepted")
    return data


def json_depth_over(value, limit: int) -> bool:
    """Whether a parsed JSON value nests lists and objects more than `limit` levels deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _refuse_constant(name: str):
    raise ValueError(f"holds {name}, not a finite number")


def parse_json(text: str | bytes, where: str, what: str = "file", finite: bool = True,
               max_depth: int = JSON_MAX_DEPTH):
    """A JSON document's value; ToolError naming `where` when it is not valid JSON (nor UTF-8), nests deeper than
    max_depth, or (with `finite`) holds NaN or Infinity, which are not JSON though Python's json module reads and
    writes them. finite=False leaves them to a type check that names the key (the data commands' manifests)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{where}: {what} is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant) if finite else json.loads(text)
    except RecursionError:
        raise ToolError(f"{where}: {what} is not valid JSON (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise ToolError(f"{where}: {what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise ToolError(f"{where}: {what} {exc}") from None
    if json_depth_over(value, max_depth):
        raise ToolError(f"{where}: {what} nests lists and objects more than {max_depth} levels deep")
    return value


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


def read_json(path, what: str = "file", finite: bool = True, max_bytes: int = JSON_MAX_BYTES):
    """A JSON file's value (see parse_json); ToolError (one line) when it cannot be read, is larger than max_bytes
    (refused before it is read whole) or is not a JSON document of at most JSON_MAX_DEPTH levels."""
    return parse_json(read_bounded(path, max_bytes, what), str(Path(path)), what, finite)


def finite_or_none(obj):
    """obj with every non-finite float replaced by None, in nested dicts and lists (for JSON output)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
