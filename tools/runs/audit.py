"""Audit any record folder of the challenge, whoever wrote it: what its reviewers check by hand, by program.

    python -m tools record audit FOLDER... [--json | --table] [--sota BPB] [--git-dir DIR]

A folder in the challenge's shape (openai/parameter-golf `records/<track>/<date>_<name>/`, or one `record new`
wrote): submission.json (or submission_*.json), README.md, the script (train_gpt.py, or the one script there is),
and the training logs, found anywhere under the folder and read with tools/runs/logparse.py in its lenient mode
(every log shape of the challenge's records). Nothing in the folder is executed: a self-extracting script is
decoded with `ast` and a bounded decompressor.

Per seed it reads the final val_loss/val_bpb (the evaluation line the submission claims, else the log's last), the
counted code bytes, model bytes and total, the training time at the stop (plus any GPTQ calibration logged after
it), the evaluation time (every scoring pass, test-time training included), processes, GPU and validation tokens.
Then each check below is a problem when it fails (a warning where the rules leave room):

- the claims of submission.json (per seed, mean, std, bytes) against the logs;
- every seed's total (model + the code that ships, helper files it loads included) at most 16,000,000 bytes;
- the log's code size against the shipped script (raw, or the self-extracting form that ships), and a source the
  log prints against the script;
- a setting given twice in one log (logs concatenated or edited);
- the record track: training at most 600 s (one step of overshoot allowed, GPTQ calibration after the timer
  counted), evaluation at most 600 s, 8 processes on H100s, at least 2 seeds (3 is the norm), the same validation
  tokens for every seed, and the gain over the record it claims to beat: at least 0.005 nats at p < 0.01, one-sided
  (record.significance_vs_number on the per-seed val_loss; the SOTA's bpb is put in nats with the folder's own
  val_loss/val_bpb ratio). The SOTA is --sota, else the best score of the README's leaderboard table, at the last
  commit of README.md on or before the record's date, among rows dated strictly before it (same-day records are not
  compared: the table has no times) and not pointing at this folder.

Exit status 0 when every folder is ok, 1 when any has a problem. A folder that cannot be read is a problem, never a
traceback. `--json` prints a list with one object per folder; `--table` a markdown table (docs/audit.md).
"""
from __future__ import annotations

import argparse
import ast
import base64
import datetime as _dt
import json
import lzma
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from tools import common as C
from tools.common import ToolError
from tools.runs import logparse
from tools.runs.logparse import EvalResult, RunLog

CAP = C.SUBMISSION_CAP_BYTES
LIMIT_MS = 600_000.0        # the record track: training and evaluation each within 10 minutes
# The wallclock cap is checked between steps (the baseline's way), so a run stops up to one step after 600 s; the
# time it then logs also holds a sync. One step plus this much is let through.
OVERSHOOT_MS = 250.0
RECORD_PROCESSES, RECORD_GPU = 8, "H100"
DELTA_NATS, ALPHA = 0.005, 0.01
RECORD, NON_RECORD = "track_10min_16mb", "track_non_record_16mb"
SCRIPT_LIMIT = C.SUBMISSION_CAP_BYTES  # a self-extracting script inflating past the cap cannot be a submission
NOT_LOGS = {"requirements.txt"}


# ----------------------------------------------------------------------------- what the folder claims

@dataclass
class Claims:
    """The figures a submission.json states, under any of the names the challenge's records use."""
    file: str | None = None
    seeds: list[str] = field(default_factory=list)
    per_seed: dict[str, dict] = field(default_factory=dict)  # seed -> {"val_bpb", "val_loss", "bytes"} (when stated)
    val_bpb: float | None = None
    val_loss: float | None = None
    val_bpb_std: float | None = None
    val_loss_std: float | None = None
    bytes_total: int | None = None
    bytes_code: int | None = None
    track: str | None = None
    date: str | None = None
    unreadable: list[str] = field(default_factory=list)  # stated figures that are not numbers (problems)


def _number(value) -> float | None:
    """A finite number, from a JSON number or a string that holds one (some records write figures as strings)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _first(d: dict, *names: str, unreadable: list[str] | None = None, where: str = "") -> float | None:
    """The first of `names` that `d` states as a number; a stated value that is not one (null is not stated) is
    noted in `unreadable`."""
    for n in names:
        if _number(d.get(n)) is not None:
            return _number(d[n])
        if d.get(n) is not None and unreadable is not None:
            unreadable.append(f"{where}{n} is {d[n]!r}, not a number")
    return None


def _seed_entry(value, unreadable: list[str], where: str) -> dict:
    if not isinstance(value, dict):
        if value is not None and _number(value) is None:
            unreadable.append(f"{where} is {value!r}, not a number")
        return {"val_bpb": _number(value)}
    size = _first(value, "artifact_bytes", "bytes_total", "total_bytes", unreadable=unreadable, where=f"{where}.")
    return {"val_bpb": _first(value, "val_bpb", unreadable=unreadable, where=f"{where}."),
            "val_loss": _first(value, "val_loss", unreadable=unreadable, where=f"{where}."),
            "bytes": None if size is None else int(size)}


def read_claims(sub: dict, file: str) -> Claims:
    c = Claims(file=file, track=sub.get("track") if isinstance(sub.get("track"), str) else None,
               date=sub.get("date") if isinstance(sub.get("date"), str) else None)
    bad = c.unreadable
    c.val_bpb = _first(sub, "val_bpb", "mean_val_bpb", "mean_bpb", unreadable=bad)
    c.val_loss = _first(sub, "val_loss", "mean_val_loss", "mean_val_loss_nats", "val_loss_nats", unreadable=bad)
    c.val_bpb_std = _first(sub, "val_bpb_std", "std_bpb", "std_val_bpb", unreadable=bad)
    c.val_loss_std = _first(sub, "val_loss_std", "std_val_loss", "std_val_loss_nats", "val_loss_nats_std", unreadable=bad)
    total = _first(sub, "bytes_total", "artifact_bytes", "artifact_size_bytes", unreadable=bad)
    code = _first(sub, "bytes_code", "code_bytes", unreadable=bad)
    c.bytes_total, c.bytes_code = (None if total is None else int(total)), (None if code is None else int(code))
    for key in ("seed_results", "seeds"):
        if isinstance(sub.get(key), dict):
            for seed, value in sub[key].items():
                entry = _seed_entry(value, bad, f"{key}[{seed!r}]")
                c.per_seed.setdefault(str(seed), {}).update({k: v for k, v in entry.items() if v is not None})
    listed = sub.get("seeds") if isinstance(sub.get("seeds"), list) else []
    if isinstance(sub.get("seed_scores"), list) and len(sub["seed_scores"]) == len(listed):
        for seed, score in zip(listed, sub["seed_scores"]):
            c.per_seed.setdefault(str(seed), {})["val_bpb"] = _number(score)
    named = [str(s) for s in listed if isinstance(s, (int, str))] + list(c.per_seed)
    if isinstance(sub.get("seed"), int) and not isinstance(sub.get("seed"), bool):
        named.append(str(sub["seed"]))
    c.seeds = list(dict.fromkeys(named))
    return c


def decimals(value: float) -> int:
    try:
        exponent = Decimal(repr(value)).as_tuple().exponent
    except InvalidOperation:
        return 8
    return max(0, -exponent) if isinstance(exponent, int) else 8


def agrees(claimed: float | None, actual: float | None, units: float = 0.5) -> bool:
    """Whether a stated figure is the actual one as written: rounded, or cut, to the digits it shows. A mean may be
    off by a whole unit of its last digit (a mean of rounded values, rounded again): units=1."""
    if claimed is None or actual is None:
        return False
    unit, slack = 10.0 ** -decimals(claimed), 1e-12 + 1e-9 * abs(actual)
    return abs(claimed - actual) <= unit * units + slack or 0 <= abs(actual) - abs(claimed) < unit + slack


# ----------------------------------------------------------------------------- the shipped script

@dataclass
class Script:
    name: str
    code: bytes
    payload: bytes | None          # the source a self-extracting script runs (decoded, never run)
    helpers: dict[str, int]        # files of the folder the script loads as code -> their bytes

    @property
    def counted_bytes(self) -> int:
        return len(self.code) + sum(self.helpers.values())

    @property
    def source(self) -> bytes:
        return self.payload if self.payload is not None else self.code


def _decompress(data: bytes, codec: str) -> bytes:
    if codec == "lzma":  # xz, or raw LZMA2 as the later records pack it; bounded like train_gpt's reader
        for fmt, filters in ((lzma.FORMAT_AUTO, None), (lzma.FORMAT_RAW, [{"id": lzma.FILTER_LZMA2}])):
            try:
                out = lzma.LZMADecompressor(format=fmt, filters=filters).decompress(data, max_length=SCRIPT_LIMIT + 1)
            except lzma.LZMAError:
                continue
            if len(out) > SCRIPT_LIMIT:
                raise ToolError(f"a self-extracting script that inflates past {SCRIPT_LIMIT} bytes")
            return out
        raise ToolError("a self-extracting script whose lzma payload does not decode")
    import train_gpt as tg

    return tg.decompress_bounded(data, codec, SCRIPT_LIMIT)


def wrapped_payload(code: bytes) -> bytes | None:
    """The source of a self-extracting script (golf's `record wrap` form, or `exec(<codec>.decompress(
    base64.b85decode("...")))` as the challenge's records write it), read with ast; None for any other script."""
    from tools.runs import record  # imports train_gpt (torch): only when a script is read

    golf = record.unwrap(code)
    if golf is not None:
        return golf
    if len(code) > 1 << 22 or b"decompress" not in code:
        return None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    aliases = {a.asname or a.name: a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "decompress" \
                and isinstance(node.func.value, ast.Name) and node.args and isinstance(node.args[0], ast.Call):
            codec, inner = aliases.get(node.func.value.id, node.func.value.id), node.args[0]
            decoder = inner.func.attr if isinstance(inner.func, ast.Attribute) else None
            if codec in ("lzma", "zlib", "brotli") and decoder in ("b85decode", "b64decode") and inner.args \
                    and isinstance(inner.args[0], ast.Constant) and isinstance(inner.args[0].value, (str, bytes)):
                return _decompress(getattr(base64, decoder)(inner.args[0].value), codec)
    return None


def loaded_helpers(folder: Path, name: str, source: bytes) -> dict[str, int]:
    """Files of the folder that the script loads as code: modules it imports, files it names (exec(open(...)))."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    local = {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix in (".py", ".cpp", ".cu") and p.name != name}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {f"{a.name.split('.')[0]}.py" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(f"{node.module.split('.')[0]}.py")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in local:
            found.add(node.value)
    return {n: local[n].stat().st_size for n in sorted(found & set(local))}


def find_script(folder: Path, runs: list[RunLog]) -> tuple[Script | None, list[str]]:
    """The counted script: train_gpt.py, else the one top-level script the logs' code sizes or sources point at."""
    notes = []
    path = folder / "train_gpt.py"
    if not path.is_file():
        scripts = sorted(p for p in folder.glob("*.py") if p.is_file())
        sizes = {n for r in runs for n in (r.bytes_code, r.bytes_code_uncompressed) if n}
        fits = [p for p in scripts if p.stat().st_size in sizes] or [p for p in scripts if p.name.startswith("train")]
        if len(fits) != 1:
            return None, ["no train_gpt.py, and no single script the logs point at"
                          + (f" ({', '.join(p.name for p in scripts)})" if scripts else "")]
        path = fits[0]
        notes.append(f"no train_gpt.py: {path.name} is taken as the counted script")
    code = path.read_bytes()
    payload = wrapped_payload(code)
    return Script(path.name, code, payload, loaded_helpers(folder, path.name, payload or code)), notes


# ----------------------------------------------------------------------------- the logs and their seeds

def looks_like_log(path: Path) -> bool:
    """A text file with a training log's figures (golf's markers, or val_loss and val_bpb values)."""
    if path.name in NOT_LOGS or path.suffix not in (".log", ".txt"):
        return False
    try:
        text = path.read_bytes()[: 1 << 23]
    except OSError:
        return False
    return logparse.SOURCE_BEGIN_RE.search(text) is not None or (b"val_loss" in text and b"val_bpb" in text)


def find_record_logs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and looks_like_log(p))


def log_seed(run: RunLog, path: Path) -> str | None:
    """The seed a log ran with (its content), else the one its file name gives."""
    if run.seed is not None:
        return str(run.seed)
    m = re.search(r"seed[_-]?(\d+)", path.name) or re.search(r"_(\d+)\.(?:txt|log)$", path.name)
    return m.group(1) if m else None


def named_seed(path: Path) -> str | None:
    m = re.search(r"seed[_-]?(\d+)", path.name)
    return m.group(1) if m else None


def matching_eval(run: RunLog, claimed: float | None) -> EvalResult | None:
    """The last evaluation line that shows the claimed val_bpb."""
    hits = [e for e in run.evals if agrees(claimed, e.val_bpb)]
    return hits[-1] if hits else None


def last_score(run: RunLog) -> EvalResult | None:
    scores = [e for e in run.evals if not e.diagnostic]
    return scores[-1] if scores else None


def is_eval_only(run: RunLog) -> bool:
    return not run.train and run.stop_train_time_ms is None and run.bytes_model is None


@dataclass
class SeedAudit:
    seed: str
    log: str                          # the log of the score, relative to the folder
    run: RunLog
    score: EvalResult | None
    claimed: dict = field(default_factory=dict)
    train_log: str | None = None      # another log of this seed with the training and sizes (the score log has none)
    train_run: RunLog | None = None
    figures: dict = field(default_factory=dict)

    @property
    def trained(self) -> RunLog:
        return self.train_run or self.run


def _closeness(run: RunLog, claimed: dict) -> tuple | None:
    """How well a log's evaluation lines show the claimed val_bpb (and val_loss): None when they do not."""
    hit = matching_eval(run, claimed.get("val_bpb"))
    if hit is None:
        return None
    loss = claimed.get("val_loss")
    return (loss is not None and not agrees(loss, hit.val_loss), abs(hit.val_bpb - claimed["val_bpb"]))


def _choose(candidates: list[tuple[Path, RunLog]], seed: str | None, claimed: dict) -> tuple[Path, RunLog] | None:
    """The log of a seed: the one whose evaluation lines show the claimed figures most closely; without a claim one
    named for the seed, else the first; None when there is a claim and no log shows it."""
    ranked = sorted((c for c in candidates if _closeness(c[1], claimed) is not None),
                    key=lambda c: _closeness(c[1], claimed))
    if ranked or claimed.get("val_bpb") is not None:
        return ranked[0] if ranked else None
    named = [c for c in candidates if seed is not None and named_seed(c[0]) == seed]
    return (named or candidates)[0] if candidates else None


def select_seeds(folder: Path, runs: dict[Path, RunLog], claims: Claims) -> tuple[dict[str, SeedAudit], list[str], list[str]]:
    """(seeds, problems, warnings): which log stands for each seed of the submission."""
    problems, warnings = [], []
    groups: dict[str, list[tuple[Path, RunLog]]] = {}
    unknown = []
    for path, run in runs.items():
        seed = log_seed(run, path)
        (groups.setdefault(seed, []) if seed is not None else unknown).append((path, run))
        if named_seed(path) not in (None, seed) and run.seed is not None:
            warnings.append(f"{path.relative_to(folder)} is named for seed {named_seed(path)} but logs seed {seed}")
    if claims.seeds:
        keys = claims.seeds
    elif groups:
        keys = list(groups)
    else:
        matching = [c for c in unknown if matching_eval(c[1], claims.val_bpb) is not None]
        groups = {f"?{p.relative_to(folder)}": [(p, r)] for p, r in (matching or unknown)}
        keys = list(groups)
    seeds = {}
    for key in keys:
        claimed = dict(claims.per_seed.get(key, {}))
        if len(keys) == 1 and "val_bpb" not in claimed and claims.val_bpb is not None:
            claimed.setdefault("val_loss", claims.val_loss)
            want = {**claimed, "val_bpb": claims.val_bpb}
        else:
            want = claimed
        chosen = _choose(groups.get(key, []), key, want)
        if chosen is None and want.get("val_bpb") is not None:  # the claimed figures may be in another seed's log
            chosen = _choose([(p, r) for p, r in runs.items() if log_seed(r, p) not in keys], None, want)
            if chosen is not None:
                problems.append(f"seed {key}: the claimed val_bpb {want['val_bpb']} is in {chosen[0].relative_to(folder)}, "
                                f"which logs seed {log_seed(chosen[1], chosen[0])}")
        if chosen is None and groups.get(key):
            chosen = _choose(groups[key], key, {})
        if chosen is None:
            problems.append(f"seed {key}: claimed by {claims.file} but no log of the folder ran it")
            continue
        path, run = chosen
        audit = SeedAudit(key, str(path.relative_to(folder)), run,
                          matching_eval(run, want.get("val_bpb")) or last_score(run), claimed)
        _attach_training(audit, folder, path, groups.get(key, []), warnings)
        seeds[key] = audit
    used = {s.log for s in seeds.values()} | {s.train_log for s in seeds.values() if s.train_log}
    _note_other_logs(folder, runs, used, seeds, warnings)
    return seeds, problems, warnings


def _attach_training(audit: SeedAudit, folder: Path, path: Path, candidates: list[tuple[Path, RunLog]],
                     warnings: list[str]) -> None:
    """A score from an evaluation-only log (e.g. TTT re-run on the saved artifact): training and sizes from the
    seed's other log that has them."""
    if not is_eval_only(audit.run):
        return
    trained = [(p, r) for p, r in candidates if p != path and not is_eval_only(r)]
    if trained:
        audit.train_log, audit.train_run = str(trained[0][0].relative_to(folder)), trained[0][1]
        warnings.append(f"seed {audit.seed}: the score comes from {audit.log}, an evaluation-only log; training and "
                        f"sizes are read from {audit.train_log}")


def _note_other_logs(folder: Path, runs: dict[Path, RunLog], used: set[str], seeds: dict[str, SeedAudit],
                     warnings: list[str]) -> None:
    chosen = {folder / s.log for s in seeds.values()}
    same = {p for p in runs if any(p.read_bytes() == c.read_bytes() for c in chosen if c != p)}
    others = [str(p.relative_to(folder)) for p in runs if str(p.relative_to(folder)) not in used and p not in same]
    if others:
        shown = ", ".join(others[:6]) + (f" and {len(others) - 6} more" if len(others) > 6 else "")
        warnings.append(f"{len(others)} other log(s) not audited (not the claimed seeds' runs): {shown}")


# ----------------------------------------------------------------------------- per-seed figures

def train_time_ms(run: RunLog) -> tuple[float | None, float | None]:
    """(training time as the rules count it, of which GPTQ calibration after the timer)."""
    base = run.train_time_ms
    if run.calibration_train_time_ms is not None or base is None:
        return base, None  # golf's logs count their calibration in the training time already
    if run.post_gptq_total_ms is not None:
        return run.post_gptq_total_ms, run.post_gptq_total_ms - base
    if run.calibration_after_ms:
        return base + run.calibration_after_ms, run.calibration_after_ms
    return base, None


def eval_time_ms(run: RunLog) -> float | None:
    """Every scoring pass after training (diagnostic passes left out), or the log's own total_eval_time; a TTT
    duration the eval lines do not include is added."""
    if run.total_eval_time_ms is not None:
        return run.total_eval_time_ms
    times = [e.eval_time_ms for e in run.evals if not e.diagnostic and e.eval_time_ms is not None]
    total = sum(times) if times else None
    if run.ttt_time_ms is not None and (total or 0.0) < run.ttt_time_ms:
        total = (total or 0.0) + run.ttt_time_ms
    return total


def processes(run: RunLog) -> int | None:
    """golf's hardware line names the process count (`... x8 torch:`), as `record new` reads it; else world_size."""
    m = re.search(r"\bx(\d+)\b", (run.hardware or "").split(" torch:")[0])
    return int(m.group(1)) if m else run.world_size


def gpu_name(run: RunLog) -> str | None:
    if run.gpus:
        return max(set(run.gpus.values()), key=list(run.gpus.values()).count)
    if run.device == "cuda":
        return re.sub(r"\s*\bx\d+\b.*$", "", (run.hardware or "").split(" torch:")[0]).strip() or None
    return run.device


def seed_figures(s: SeedAudit, script: Script | None) -> dict:
    run, trained = s.run, s.trained
    code = script.counted_bytes if script is not None else (trained.bytes_code_compressed or trained.bytes_code)
    model = trained.bytes_model
    if model is None and trained.bytes_total is not None and trained.bytes_code is not None:
        model = trained.bytes_total - trained.bytes_code  # logs that state only the total and the code
    train, calibration = train_time_ms(trained)
    return {"log": s.log, "val_bpb": None if s.score is None else s.score.val_bpb,
            "val_loss": None if s.score is None else s.score.val_loss, "claimed_val_bpb": s.claimed.get("val_bpb"),
            "code_bytes": code, "model_bytes": model,
            "total_bytes": model + code if None not in (model, code) else trained.bytes_total,
            "train_time_ms": train, "eval_time_ms": eval_time_ms(run), "score_line": None if s.score is None else s.score.label,
            "calibration_after_timer_ms": calibration, "processes": processes(trained), "gpu": gpu_name(trained),
            "val_tokens": run.data_val_tokens or trained.data_val_tokens, "train_log": s.train_log}


# ----------------------------------------------------------------------------- checks

def check_claims(s: SeedAudit, f: dict, problems: list[str], warnings: list[str]) -> None:
    where = f"seed {s.seed} ({s.log})"
    if s.score is None:
        problems.append(f"{where}: no final val_loss/val_bpb line in the log")
        return
    want = s.claimed.get("val_bpb")
    if want is not None and not agrees(want, s.score.val_bpb):
        problems.append(f"{where}: submission.json claims val_bpb {want}, but no evaluation line of the log shows it "
                        f"(it ends at {s.score.label} val_bpb {s.score.val_bpb})")
    elif want is not None and s.score is not last_score(s.run) and last_score(s.run) is not None:
        last = last_score(s.run)
        warnings.append(f"{where}: the claimed val_bpb is the log's {s.score.label} line, not its last result "
                        f"{last.label} ({last.val_bpb})")
    if s.claimed.get("val_loss") is not None and not agrees(s.claimed["val_loss"], s.score.val_loss):
        problems.append(f"{where}: submission.json claims val_loss {s.claimed['val_loss']}, the log {s.score.val_loss}")
    size = s.claimed.get("bytes")
    if size is not None and size not in (f["total_bytes"], s.trained.bytes_total):
        problems.append(f"{where}: submission.json claims {size} bytes, the log {s.trained.bytes_total} and the "
                        f"folder's files {f['total_bytes']}")


def check_settings(s: SeedAudit, problems: list[str]) -> None:
    for run, log in ((s.run, s.log), (s.train_run, s.train_log)):
        for shown, values in (run.settings_seen.items() if run is not None else ()):
            if len(values) > 1:
                runs = f"; it holds {run.runs_in_log} runs, the last is audited" if run.runs_in_log > 1 else ""
                problems.append(f"{log}: the setting '{shown}' is given {len(values)} times ({', '.join(values)}): "
                                f"logs concatenated or edited{runs}")


def check_code(s: SeedAudit, script: Script | None, folder: Path, problems: list[str], warnings: list[str]) -> None:
    """The log's code size against the shipped script (its decoded source, or the script with the helper files it
    loads, are what a log may count too), and the source the log prints against the script."""
    run, log = s.trained, s.train_log or s.log
    if script is None:
        return
    shipped, readable = len(script.code), None if script.payload is None else len(script.payload)
    allowed = {shipped, readable, script.counted_bytes, script.counted_bytes - shipped}
    if run.source is not None and golf_ships(run.source, script):
        allowed.add(len(run.source))  # a golf log of the readable source that counted it whole (before shipped_code)
    compressed, raw = run.bytes_code_compressed, run.bytes_code_uncompressed or run.bytes_code
    if compressed is None and raw is None:
        warnings.append(f"{log}: the log does not state its code size")
    elif compressed is not None and raw == shipped and script.payload is None:
        warnings.append(f"{log}: the log counts the code compressed ({compressed} bytes) but the folder ships "
                        f"{script.name} raw ({shipped} bytes): the raw bytes are counted here")
    elif (raw if compressed is None or raw is not None else compressed) not in allowed:
        size = raw if raw is not None else compressed
        label = "Code size (uncompressed)" if compressed is not None and raw is not None else "Code size"
        other = [p.name for p in folder.glob("*.py") if p.name != script.name and p.stat().st_size == size]
        problems.append(f"{log}: {label} {size} bytes, but {script.name} is {shipped} bytes"
                        + (f" ({readable} decoded)" if readable else "")
                        + (f": the log ran {other[0]}" if other else ": the log ran other code"))
    if run.source is not None and not same_source(run.source, script):
        problems.append(f"{log}: the source printed in the log ({len(run.source)} bytes) is not {script.name}")


def _normal(text: bytes) -> str:
    return "\n".join(line.rstrip() for line in text.decode("utf-8", errors="replace").strip().splitlines())


def same_source(logged: bytes, script: Script) -> bool:
    if logged in (script.code, script.source) or golf_ships(logged, script):
        return True
    mine, ship = _normal(logged), [_normal(script.code), _normal(script.source)]
    return mine in ship or any(s and s in mine for s in ship)


def golf_ships(logged: bytes, script: Script) -> bool:
    """Whether the script is golf's shipped form of the logged source (record.ships_source: its comments,
    docstrings and annotations stripped)."""
    import train_gpt as tg
    from tools.runs import record
    try:
        return script.payload is not None and tg.unwrap_code(script.code) is not None and record.ships_source(script.payload, logged)
    except tg.GolfError:
        return False


def check_size(s: SeedAudit, f: dict, problems: list[str], warnings: list[str]) -> None:
    if f["total_bytes"] is None:
        warnings.append(f"seed {s.seed}: the log gives no byte counts")
    elif f["total_bytes"] > CAP:
        parts = f"model {f['model_bytes']} + code {f['code_bytes']} = " if f["model_bytes"] is not None else ""
        problems.append(f"seed {s.seed}: {parts}{f['total_bytes']} bytes, over the {CAP}-byte cap by {f['total_bytes'] - CAP}")


def check_record_rules(s: SeedAudit, f: dict, problems: list[str], warnings: list[str]) -> None:
    """Time and hardware: the record track only."""
    run = s.trained
    step = run.step_avg_ms or ((run.train_time_ms or 0) / run.steps if run.steps else 0.0)
    train, calibration = f["train_time_ms"], f["calibration_after_timer_ms"]
    if train is None:
        warnings.append(f"seed {s.seed}: the log gives no training time")
    elif train - step - OVERSHOOT_MS > LIMIT_MS:
        why = (f"stopped at {(train - calibration) / 1000:.1f} s, then GPTQ calibration took {calibration / 1000:.1f} s "
               "after the timer" if calibration else f"training took {train / 1000:.1f} s")
        (warnings if calibration and run.calibration_self_generated else problems).append(
            f"seed {s.seed}: {why}: {train / 1000:.1f} s > {LIMIT_MS / 1000:.0f} s"
            + (" (the calibration data is generated by the model, not read from training data)"
               if calibration and run.calibration_self_generated else ""))
    if f["eval_time_ms"] is None:
        warnings.append(f"seed {s.seed}: the log gives no evaluation time")
    elif f["eval_time_ms"] > LIMIT_MS:
        problems.append(f"seed {s.seed}: evaluation took {f['eval_time_ms'] / 1000:.1f} s > {LIMIT_MS / 1000:.0f} s")
    if f["processes"] is not None and f["processes"] != RECORD_PROCESSES:
        problems.append(f"seed {s.seed}: {f['processes']} processes, not {RECORD_PROCESSES}")
    if f["gpu"] is not None and RECORD_GPU not in f["gpu"]:
        problems.append(f"seed {s.seed}: ran on {f['gpu']}, not {RECORD_GPU}")


def check_folder_claims(claims: Claims, seeds: dict[str, SeedAudit], problems: list[str], warnings: list[str]) -> None:
    scored = [s for s in seeds.values() if s.score is not None]
    if not scored:
        return
    for what, claimed, values in (("val_bpb", claims.val_bpb, [s.score.val_bpb for s in scored]),
                                  ("val_loss", claims.val_loss, [s.score.val_loss for s in scored])):
        if claimed is None or agrees(claimed, mean(values), units=1.0):
            continue
        if any(agrees(claimed, v) for v in values):
            warnings.append(f"{claims.file} {what} {claimed} is one seed's value, not the mean of the "
                            f"{len(values)} seeds' logs ({mean(values):.8f})")
        else:
            problems.append(f"{claims.file} {what} {claimed}, but the {len(values)} seed log(s) give a mean of "
                            f"{mean(values):.8f}")
    for what, claimed, values in (("val_bpb std", claims.val_bpb_std, [s.score.val_bpb for s in scored]),
                                  ("val_loss std", claims.val_loss_std, [s.score.val_loss for s in scored])):
        if claimed is None or len(values) < 2:
            continue
        sample, population = std(values, 1), std(values, 0)
        if not (agrees(claimed, sample, 1.0) or agrees(claimed, population, 1.0)):  # the rules test the seeds
            warnings.append(f"{claims.file} {what} {claimed}, but the seeds' logs give {sample:.8f} (sample std)")


def check_folder_bytes(claims: Claims, seeds: dict[str, SeedAudit], script: Script | None, problems: list[str]) -> None:
    totals = [s.figures["total_bytes"] for s in seeds.values() if s.figures.get("total_bytes") is not None]
    logged = [s.trained.bytes_total for s in seeds.values() if s.trained.bytes_total is not None]
    if claims.bytes_total is not None and totals:
        allowed = set(totals) | set(logged) | {max(totals), round(mean(totals))} | ({round(mean(logged))} if logged else set())
        if claims.bytes_total not in allowed:
            problems.append(f"{claims.file} bytes_total {claims.bytes_total} is no seed's total (the logs and files "
                            f"give {', '.join(map(str, sorted(set(totals) | set(logged))))})")
    if claims.bytes_code is not None and script is not None:
        logged_code = {n for s in seeds.values() for n in (s.trained.bytes_code, s.trained.bytes_code_compressed) if n}
        if claims.bytes_code not in {len(script.code), script.counted_bytes} | logged_code:
            problems.append(f"{claims.file} code bytes {claims.bytes_code}, but {script.name} is {len(script.code)} "
                            "bytes and no log counts that either")


def check_record_folder(seeds: dict[str, SeedAudit], nothing_to_beat: bool, problems: list[str],
                        warnings: list[str]) -> None:
    n = sum(1 for s in seeds.values() if s.score is not None)
    if n < 2:  # with no earlier record there is nothing to show significance against (the first record)
        (warnings if nothing_to_beat else problems).append(
            f"{n} seed log(s) with a score: the rules ask for enough runs to show p < 0.01 "
            "(one run gives no p-value; most records give 3)")
    elif n == 2:
        warnings.append("2 seeds: most records give 3 to show p < 0.01")
    tokens = {s.figures["val_tokens"] for s in seeds.values() if s.figures.get("val_tokens") is not None}
    if len(tokens) > 1:
        problems.append(f"the seeds were scored on different validation sets ({', '.join(map(str, sorted(tokens)))} tokens)")
    if seeds and all(s.figures.get("processes") is None for s in seeds.values()):
        warnings.append("no log states its number of processes")
    if seeds and all(s.figures.get("gpu") is None for s in seeds.values()):
        warnings.append("no log states its GPU")


# ----------------------------------------------------------------------------- statistics against the SOTA

def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def std(xs: list[float], ddof: int) -> float:
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - ddof))


def significance(seeds: dict[str, SeedAudit], sota_bpb: float, sota_from: str) -> dict | None:
    """Gain in nats over the SOTA's bpb and the one-sided p-value of the rules' test (record.py's t-test)."""
    from tools.runs import record

    scored = [s.score for s in seeds.values() if s.score is not None]
    if len(scored) < 2:
        return None
    losses, bpbs = [e.val_loss for e in scored], [e.val_bpb for e in scored]
    ratio = mean(losses) / mean(bpbs)  # nats per token / bits per byte, constant for one tokenizer and split
    res = record.significance_vs_number(losses, sota_bpb * ratio, DELTA_NATS, ALPHA)
    return {"sota_bpb": sota_bpb, "sota_from": sota_from, "nats_per_bpb": ratio, "n": len(scored),
            "mean_val_bpb": mean(bpbs), "gain_bpb": sota_bpb - mean(bpbs), "gain_nats": res["mean_improvement"],
            "delta_nats": DELTA_NATS, "alpha": ALPHA, "t": res["t"], "p_value": res["p_value"], "verdict": res["verdict"]}


def record_date(folder: Path, claims: Claims) -> str | None:
    for text in (claims.date or "", folder.name):
        try:
            return _dt.date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            continue
    return None


def _git(git_dir: str, *args: str) -> str:
    p = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise ToolError(f"git {' '.join(args[:2])} in {git_dir}: {p.stderr.strip().splitlines()[-1:] or p.returncode}")
    return p.stdout


def folder_git_dir(folder: Path) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(folder), "rev-parse", "--absolute-git-dir"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def leaderboard_rows(readme: str) -> list[dict]:
    """The rows of the first table under '## Leaderboard': {"run", "score", "date", "info"}."""
    lines = readme.splitlines()
    try:
        at = next(i for i, line in enumerate(lines) if line.strip().lower().startswith("## leaderboard"))
    except StopIteration:
        return []
    rows, header = [], None
    for line in lines[at + 1:]:
        if not line.startswith("|"):
            if header is not None:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set("".join(cells)) <= set("-: ") or len(cells) != len(header):
            continue
        row = dict(zip(header, cells))
        try:
            rows.append({"run": row.get("run", ""), "score": float(row.get("score", "")), "date": row.get("date", ""),
                         "info": row.get("info", "")})
        except ValueError:
            continue
    return rows


def leaderboard_sota(git_dir: str, date: str, folder_name: str) -> tuple[float, str] | None:
    """(best score, where it came from) of the leaderboard the record claims to beat (see the module's doc)."""
    commit = _git(git_dir, "log", "-1", "--format=%H", f"--before={date} 23:59:59 +0000", "HEAD", "--", "README.md").strip()
    if not commit:
        return None
    rows = [r for r in leaderboard_rows(_git(git_dir, "show", f"{commit}:README.md"))
            if r["date"] < date and folder_name not in r["info"]]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["score"])
    return best["score"], f"README.md at {commit[:9]} (last change on or before {date}): {best['run']} ({best['date']})"


def check_statistics(report: "FolderAudit", folder: Path, claims: Claims, sota: float | None, git_dir: str | None,
                     leaderboard: bool) -> bool:
    """The significance check; False when the leaderboard has no earlier record for this one to beat."""
    source = f"--sota {sota}" if sota is not None else None
    if sota is None and leaderboard:
        git_dir = git_dir or folder_git_dir(folder)
        date = record_date(folder, claims)
        if git_dir and date:
            found = leaderboard_sota(git_dir, date, folder.name)
            if found is None:
                report.warnings.append(f"no earlier leaderboard row before {date} to compare with")
                return False
            sota, source = found
    if sota is None:
        report.warnings.append("no SOTA to compare with (give --sota BPB, or --git-dir of the challenge's repository)")
        return True
    report.statistics = significance(report.seeds, sota, source)
    st = report.statistics
    if st is None:
        return True
    p = "n/a" if st["p_value"] is None else f"{st['p_value']:.3g}"
    if st["verdict"] != "record":
        report.problems.append(f"not a significant gain over {sota} bpb ({source}): {st['gain_nats']:+.5f} nats "
                               f"({st['gain_bpb']:+.5f} bpb) over {st['n']} seeds, one-sided p = {p} for a gain of "
                               f">= {DELTA_NATS} nats (the rules ask p < {ALPHA})")
    return True


# ----------------------------------------------------------------------------- the folder

@dataclass
class FolderAudit:
    folder: str
    track: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seeds: dict[str, SeedAudit] = field(default_factory=dict)
    statistics: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return C.finite_or_none({"folder": self.folder, "ok": self.ok, "track": self.track, "problems": self.problems,
                                 "warnings": self.warnings, "seeds": {k: s.figures for k, s in self.seeds.items()},
                                 "statistics": self.statistics})


def folder_track(folder: Path, claims: Claims | None) -> str | None:
    if folder.parent.name in (RECORD, NON_RECORD):
        return folder.parent.name
    stated = (claims.track if claims else None) or ""
    if stated:
        return NON_RECORD if "non" in stated.lower() else RECORD
    return None


def read_submission(folder: Path, report: FolderAudit) -> Claims:
    files = sorted(folder.glob("submission*.json"))
    if not files:
        report.problems.append("no submission.json")
        return Claims()
    path = folder / "submission.json" if (folder / "submission.json").is_file() else files[0]
    if path.name != "submission.json":
        report.warnings.append(f"the submission file is named {path.name}, not submission.json")
    sub = C.read_json(path, "submission file")
    if not isinstance(sub, dict):
        raise ToolError(f"{path.name} is not a JSON object")
    claims = read_claims(sub, path.name)
    report.problems += [f"{path.name} {what}" for what in claims.unreadable]
    return claims


def _audit_into(report: FolderAudit, folder: Path, sota: float | None, git_dir: str | None, leaderboard: bool) -> None:
    if not folder.is_dir():
        report.problems.append(f"{folder}: not a directory")
        return
    claims = read_submission(folder, report)
    report.track = folder_track(folder, claims)
    if not (folder / "README.md").is_file():
        report.problems.append("no README.md")
    runs = {p: logparse.parse_log(p, strict=False) for p in find_record_logs(folder)}
    report.seeds, problems, warnings = select_seeds(folder, runs, claims) if runs else ({}, [], [])
    script, notes = find_script(folder, [s.trained for s in report.seeds.values()] or list(runs.values()))
    report.problems += problems if script is not None else problems + notes[-1:]
    report.warnings += (notes if script is not None else notes[:-1]) + warnings
    if script is not None and not script.code.strip():
        report.problems.append(f"{script.name} is empty")
    elif script is not None and script.payload is None and not _compiles(script.code):
        report.problems.append(f"{script.name} does not compile")
    report.warnings += [f"{script.name} loads {n} from the folder ({b} bytes): counted as code here"
                        for n, b in (script.helpers.items() if script else ())]
    if not runs:
        report.problems.append("no training logs in the folder")
        return
    for s in report.seeds.values():
        s.figures = seed_figures(s, script)
        check_claims(s, s.figures, report.problems, report.warnings)
        check_settings(s, report.problems)
        check_code(s, script, folder, report.problems, report.warnings)
        check_size(s, s.figures, report.problems, report.warnings)
        if report.track == RECORD:
            check_record_rules(s, s.figures, report.problems, report.warnings)
    check_folder_claims(claims, report.seeds, report.problems, report.warnings)
    check_folder_bytes(claims, report.seeds, script, report.problems)
    if report.track == RECORD:
        earlier = check_statistics(report, folder, claims, sota, git_dir, leaderboard)
        check_record_folder(report.seeds, not earlier, report.problems, report.warnings)
    report.warnings[:] = list(dict.fromkeys(report.warnings))


def _compiles(code: bytes) -> bool:
    try:
        compile(code, "train_gpt.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def audit_folder(folder, sota: float | None = None, git_dir: str | None = None, leaderboard: bool = True) -> FolderAudit:
    """The audit of one folder. Never raises: what cannot be read is a problem; an error of the audit itself is
    reported as a problem that says so."""
    report = FolderAudit(folder=str(folder))
    try:
        _audit_into(report, Path(folder), sota, git_dir, leaderboard)
    except (ToolError, OSError, UnicodeError) as e:
        report.problems.append(f"cannot read the folder: {e}")
    except Exception as e:  # noqa: BLE001 - a folder must never end the audit of the others with a traceback
        report.problems.append(f"audit error (a bug in record audit, not the folder's fault): {type(e).__name__}: {e}")
    return report


# ----------------------------------------------------------------------------- output

def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def text_report(r: FolderAudit) -> str:
    track = {RECORD: "record track", NON_RECORD: "non-record track"}.get(r.track or "", "track unknown")
    head = f"{r.folder}: " + ("ok" if r.ok else f"{len(r.problems)} problem(s)") + f", {len(r.warnings)} warning(s); {track}"
    out = [head]
    for key, s in r.seeds.items():
        f = s.figures
        bpb = "-" if f["val_bpb"] is None else f"{f['val_bpb']:.8f}"
        out.append(f"  seed {key}: {f['log']} val_bpb {bpb}" + (f" (claimed {f['claimed_val_bpb']})" if f["claimed_val_bpb"]
                   is not None else "") + f", total {f['total_bytes'] if f['total_bytes'] is not None else '-'} bytes, "
                   f"train {_s(f['train_time_ms'])}, eval {_s(f['eval_time_ms'])}, processes {f['processes'] or '-'}, "
                   f"{f['gpu'] or 'GPU not logged'}")
    st = r.statistics
    if st:
        p = "n/a" if st["p_value"] is None else f"{st['p_value']:.3g}"
        out.append(f"  vs SOTA {st['sota_bpb']} bpb ({st['sota_from']}): gain {st['gain_nats']:+.5f} nats, p = {p}: "
                   f"{st['verdict']}")
    out += [f"  problem: {p}" for p in r.problems] + [f"  warning: {w}" for w in r.warnings]
    return "\n".join(out)


def table(reports: list[FolderAudit]) -> str:
    """The findings as a markdown table (docs/audit.md)."""
    rows = ["| folder | track | seeds read | mean val_bpb | max total bytes | train max | eval max | problems |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in reports:
        figs = [s.figures for s in r.seeds.values()]
        bpbs = [f["val_bpb"] for f in figs if f.get("val_bpb") is not None]
        totals = [f["total_bytes"] for f in figs if f.get("total_bytes") is not None]
        trains = [f["train_time_ms"] for f in figs if f.get("train_time_ms") is not None]
        evals = [f["eval_time_ms"] for f in figs if f.get("eval_time_ms") is not None]
        track = {RECORD: "record", NON_RECORD: "non-record"}.get(r.track or "", "?")
        found = "<br>".join(p.replace("|", "\\|") for p in r.problems) or "none"
        rows.append(f"| {Path(r.folder).name} | {track} | {len(bpbs)}/{len(figs)} | {f'{mean(bpbs):.5f}' if bpbs else '-'} | "
                    f"{f'{max(totals):,}' if totals else '-'} | {_s(max(trains)) if trains else '-'} | "
                    f"{_s(max(evals)) if evals else '-'} | {found} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools record audit",
                                 description="Audit record folders of the challenge (any author): claims against logs, "
                                             "the 16,000,000-byte cap, counted code, time, hardware, seeds, significance.")
    ap.add_argument("folders", nargs="+", help="record folders (records/<track>/<date>_<name>)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list, one object per folder")
    out.add_argument("--table", action="store_true", help="print the findings as a markdown table")
    ap.add_argument("--sota", type=float, default=None, help="the SOTA val_bpb the record claims to beat "
                    "(default: the leaderboard of the folder's git repository as of the record's date)")
    ap.add_argument("--git-dir", default=None, help="the challenge's git repository (bare or not) to read the "
                    "leaderboard's history from, when the folders are not inside it")
    args = ap.parse_args(argv)
    if args.sota is not None and not (math.isfinite(args.sota) and args.sota > 0):
        raise ToolError(f"--sota must be a positive number of bits per byte, got {args.sota}")
    reports = [audit_folder(f, args.sota, args.git_dir) for f in args.folders]
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=1, allow_nan=False))
    elif args.table:
        print(table(reports))
    else:
        print("\n\n".join(text_report(r) for r in reports))
        bad = sum(1 for r in reports if not r.ok)
        print(f"\n{len(reports)} folder(s): {len(reports) - bad} ok, {bad} with problems")
    return 1 if any(not r.ok for r in reports) else 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
