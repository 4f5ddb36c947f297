"""Turn train_gpt.py logs into a challenge submission folder, test significance, and check a folder.

    python -m tools record new --name MyIdea --author "A. Person" --github-id ap [--track auto] [--blurb TEXT]
        [--technique TEXT] [--date YYYY-MM-DD] [--replace] [--root records] [--against X] LOG [LOG ...]
    python -m tools record significance RECORD_DIR --against NUMBER|OTHER_RECORD_DIR [--delta 0.005] [--alpha 0.01]
    python -m tools record check RECORD_DIR [--run --data DIR [--tokenizer PATH] [--seed S] [--timeout SECONDS]]
    python -m tools record wrap SOURCE -o OUT          # just the compressed self-extracting script
    python -m tools record audit FOLDER... [--json] [--sota BPB]   # any author's folder: tools/runs/audit.py

Nothing from a log is ever executed: sources and defaults are read with `ast`, the figures with tools/runs/logparse.py,
and every log must agree with itself (code + model = total, one final line of each kind, finite numbers, OVER BUDGET
exactly when over the cap). The record's `train_gpt.py` is a compressed self-extracting script whose payload is,
byte for byte, the source the logs embed; its bytes are the counted code. `--track auto` (the default) files a run
that is not eligible for the 10-minute record track (not 8xH100, over 600 s of training or evaluation, not the
published FineWeb sp1024 validation set) under track_non_record_16mb with the reason. `check --run` executes the
record's script, and only then: in an empty folder holding the record's files and the data, with the logged
settings. See records/README.md.
"""
from __future__ import annotations

import argparse
import ast
import base64
import datetime as _dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

import train_gpt as tg
from tools import common as C
from tools.common import ToolError
from tools.runs import logparse
from tools.runs.logparse import RunLog

TRACKS = {"track_10min_16mb": "10min_16mb", "track_non_record_16mb": "non_record_16mb"}  # folder -> "track" field
RECORD_TRACK, NON_RECORD_TRACK = "track_10min_16mb", "track_non_record_16mb"
REQUIRED_FILES = ("README.md", "submission.json", "train_gpt.py")
SUBMISSION_FIELDS = ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb", "val_loss_std",
                     "val_bpb_std", "seeds", "seed_results", "artifact_bytes_mean", "artifact_bytes_max", "bytes_total",
                     "bytes_code", "hardware", "pytorch_version", "technique_summary", "compliance")
# settings that may differ between the seeds of one record (names, paths, bookkeeping)
PER_RUN_KEYS = {"RUN_ID", "SEED", "OUT_DIR", "DATA_PATH", "TOKENIZER_PATH", "CHECKPOINT_EVERY", "CHECKPOINT_KEEP",
                "RESUME", "REPLACE_RUN"}
# settings `check --run` does not take from the log: names, paths and files of the original machine (SEED it does)
NOT_REPLAYED = (PER_RUN_KEYS - {"SEED"}) | {"EVAL_ARTIFACT"}
RECORD_LIMIT_S = 600.0  # the record track: training and evaluation each within 10 minutes
RECORD_HARDWARE = ("H100", 8)
FINEWEB_VAL_TOKENS = 62_021_846  # tokens of the published sp1024 FineWeb validation split
FINEWEB_TOKENIZER = "fineweb_1024_bpe.model"
DEFAULT_DELTA, DEFAULT_ALPHA = 0.005, 0.01
MAX_SOURCE_BYTES = C.SUBMISSION_CAP_BYTES  # a wrapped source inflating past the cap cannot be a submission
PIP_NAMES = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "flash_attn": "flash-attn",
             "flash_attn_interface": "flash-attn", "cv2": "opencv-python"}


def dumps(obj, **kw) -> str:
    """JSON that never holds NaN or Infinity (json.dumps would write them, and they are not JSON)."""
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        raise ToolError("refusing to write a non-finite number into JSON") from None


def load_json(path: Path) -> dict:
    d = C.read_json(path, "JSON file")
    if not isinstance(d, dict):
        raise ToolError(f"{path} is not a JSON object")
    return d


# --------------------------------------------------------------------------- the counted code: a self-extracting script

# The form golf wrote before train_gpt.shipped_code (base85 in a string literal): still read, never written.
OLD_WRAPPER = ('import {codec},base64,linecache\n_s={codec}.decompress(base64.b85decode("{payload}"))\n'
               'linecache.cache["train_gpt.py"]=(len(_s),None,_s.decode().splitlines(True),"train_gpt.py")\n'
               'exec(compile(_s,"train_gpt.py","exec"))\n')
_OLD_WRAPPED_RE = re.compile(r'\Aimport (brotli|lzma),base64,linecache\n_s=\1\.decompress\(base64\.b85decode\("([^"\\\n]*)"\)\)\n')


def wrap(source: bytes) -> bytes:
    """The self-extracting script a record ships: train_gpt.shipped_code (the source without comments and
    docstrings, compressed, in a stub that runs it), the same bytes a run of that source counts as its Code size."""
    if unwrap(source) is not None:
        raise ToolError("the source is already a self-extracting script")
    try:
        compile(source.decode("utf-8"), "source", "exec", dont_inherit=True)  # what shipped_code strips must parse
    except UnicodeDecodeError as e:
        raise ToolError(f"the source is not UTF-8 text (byte {e.start}): not a Python script") from None
    except (SyntaxError, ValueError) as e:
        raise ToolError(f"the source does not compile: {e}") from None
    return tg.shipped_code(source)


def unwrap(code: bytes) -> bytes | None:
    """The source a self-extracting script runs (train_gpt's shipped form, or golf's earlier base85 form), matched
    byte for byte and decompressed within a bound, never run; None for any other script."""
    try:
        inner = tg.unwrap_code(code)
        if inner is not None:
            return inner
        m = _OLD_WRAPPED_RE.match(code.decode("latin-1"))
        if m is None or OLD_WRAPPER.format(codec=m.group(1), payload=m.group(2)).encode() != code:
            return None
        return tg.decompress_bounded(base64.b85decode(m.group(2)), m.group(1), MAX_SOURCE_BYTES)
    except Exception as e:  # GolfError, a bad base85 digit (ValueError), the codec library's own error
        raise ToolError(f"a self-extracting script whose payload does not decode: {e}") from None


def ships_source(payload: bytes, source: bytes) -> bool:
    """Whether a shipped script's payload runs `source`: the source itself, or the source as train_gpt.strip_source
    strips it, compared as syntax trees, because the stripper's spacing has changed between golf versions (the
    comments, docstrings and annotations it cuts have not) and a record keeps the form of the day it was written."""
    if payload == source:
        return True
    try:
        return ast.dump(ast.parse(payload)) == ast.dump(ast.parse(tg.strip_source(source)))
    except (SyntaxError, ValueError, UnicodeDecodeError, tokenize.TokenError):
        return False


def readable_source(code: bytes) -> bytes:
    """The source that runs: the payload of a self-extracting script, else the code itself."""
    inner = unwrap(code)
    return code if inner is None else inner


# --------------------------------------------------------------------------- defaults of the logged train_gpt.py (ast only)

def hparam_defaults(source: bytes) -> dict[str, str] | None:
    """The defaults the logged source declares in `class Hyperparameters`, as the strings its log prints
    (`hparam NAME=str(value)`), read with ast.parse/literal_eval: nothing in the source runs. A default that is not
    a literal is left out. None when there is no such class."""
    try:
        tree = ast.parse(readable_source(source))
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Hyperparameters":
            out = {}
            for item in node.body:
                target, value = None, None
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    target, value = item.target.id, item.value
                elif isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                    target, value = item.targets[0].id, item.value
                if target is None or target.startswith("_"):
                    continue
                if isinstance(value, ast.Call):  # `S(default, bound)` or `field(default=...)`: the default is the literal
                    value = value.args[0] if value.args else next((k.value for k in value.keywords if k.arg == "default"), value)
                try:
                    literal = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
                if isinstance(literal, (str, int, float, bool)):
                    out[target.upper()] = str(literal)
            return out
    return None


def _same_value(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        pass
    truth = {"1": True, "true": True, "0": False, "false": False}
    return truth.get(a.lower(), a) == truth.get(b.lower(), b)


def non_default(hparams: dict[str, str], defaults: dict[str, str] | None) -> dict[str, str]:
    if defaults is None:
        return dict(hparams)
    return {k: v for k, v in hparams.items() if k not in defaults or not _same_value(v, defaults[k])}


# --------------------------------------------------------------------------- reading and judging logs

def load_logs(paths: list) -> list[RunLog]:
    return [logparse.parse_log(p) for p in paths]


def run_source(run: RunLog) -> bytes | None:
    """The readable source a log's run executed (a self-extracting script's payload when the run used one)."""
    return None if run.source is None else readable_source(run.source)


def validate_runs(runs: list[RunLog], code_bytes: int | None = None, cap: int = C.SUBMISSION_CAP_BYTES) -> list[str]:
    """Every reason these logs cannot form one submission (empty list = fine). code_bytes: the counted code (the
    self-extracting script); each seed's model bytes + code_bytes must be within the challenge's cap."""
    if not runs:
        return ["no logs given"]
    problems = []
    for r in runs:
        problems += logparse.consistency_problems(r)
        if r.seed is None:
            problems.append(f"{r.path}: no 'hparam SEED=' line")
        missing = [k for k in ("steps", "step_avg_ms", "train_time_ms", "eval_time_ms") if r.finished and getattr(r, k) is None]
        if missing:
            problems.append(f"{r.path}: no {', '.join(missing)} in the log (no step lines or no eval_time)")
        if r.hparams.get("EVAL_ARTIFACT"):
            problems.append(f"{r.path}: an evaluation-only run (EVAL_ARTIFACT={r.hparams['EVAL_ARTIFACT']}), not a training run")
        if r.finished and r.over_budget:
            problems.append(f"{r.path}: seed {r.seed} is OVER BUDGET ({r.bytes_total} bytes > its cap {r.total_cap})")
        if code_bytes is not None and r.bytes_model is not None and r.bytes_model + code_bytes > cap:
            problems.append(f"{r.path}: seed {r.seed} total size {r.bytes_model + code_bytes} bytes (model {r.bytes_model} + "
                            f"code {code_bytes}) exceeds the cap of {cap} by {r.bytes_model + code_bytes - cap}")
    sources = [run_source(r) for r in runs]
    for r, s in zip(runs[1:], sources[1:]):
        if s is not None and sources[0] is not None and s != sources[0]:
            problems.append(f"train_gpt.py sources differ: {runs[0].path} ({len(sources[0])} bytes) vs {r.path} ({len(s)} bytes)")
    seeds = [r.seed for r in runs if r.seed is not None]
    dups = sorted({s for s in seeds if seeds.count(s) > 1})
    if dups:
        problems.append(f"several logs for seed(s) {', '.join(map(str, dups))}: one log per seed")
    base = runs[0]
    for r in runs[1:]:
        for k in sorted(set(base.hparams) | set(r.hparams)):
            if k not in PER_RUN_KEYS and base.hparams.get(k) != r.hparams.get(k):
                problems.append(f"configurations differ: {k}={base.hparams.get(k)!r} in {base.path} but "
                                f"{r.hparams.get(k)!r} in {r.path}")
        if (base.data_train_tokens, base.data_val_tokens) != (r.data_train_tokens, r.data_val_tokens):
            problems.append(f"datasets differ: {base.path} and {r.path} logged different token counts")
    return problems


def gpu_count(run: RunLog) -> tuple[str, int]:
    """(device name, processes) from the hardware line: 'NVIDIA H100 80GB HBM3 x8 torch:...' or 'cpu ... x1 processes'."""
    hw = (run.hardware or "").split(" torch:")[0]
    m = re.search(r"\bx(\d+)\b", hw)
    return re.sub(r"\s*\bx\d+\b.*$", "", hw).strip(), int(m.group(1)) if m else (run.world_size or 1)


def record_track_problems(runs: list[RunLog]) -> list[str]:
    """Why these runs are not eligible for the 10-minute record track (empty list = eligible)."""
    reasons = []
    for r in runs:
        name, count = gpu_count(r)
        if r.device != "cuda" or RECORD_HARDWARE[0] not in name or count != RECORD_HARDWARE[1]:
            reasons.append(f"seed {r.seed} ran on '{name} x{count}', not 8xH100")
            break
    train = max((r.train_time_ms or 0) for r in runs) / 1000
    if train > RECORD_LIMIT_S or any(r.train_time_ms is None for r in runs):
        reasons.append(f"training took up to {train:.1f} s (the limit is {RECORD_LIMIT_S:.0f} s)")
    evals = max((r.eval_time_ms or 0) for r in runs) / 1000
    if evals > RECORD_LIMIT_S or any(r.eval_time_ms is None for r in runs):
        reasons.append(f"evaluation took up to {evals:.1f} s (the limit is {RECORD_LIMIT_S:.0f} s)")
    if not all(published_fineweb(r) for r in runs):
        r = runs[0]
        reasons.append(f"the data is not the published FineWeb sp1024 validation set ({r.data_val_tokens} validation "
                       f"tokens, tokenizer {Path(r.data_tokenizer or '?').name}; FineWeb has {FINEWEB_VAL_TOKENS:,})")
    return reasons


def published_fineweb(run: RunLog) -> bool:
    return run.data_val_tokens == FINEWEB_VAL_TOKENS and Path(run.data_tokenizer or "").name == FINEWEB_TOKENIZER \
        and run.hparams.get("VOCAB_SIZE") == "1024"


# --------------------------------------------------------------------------- statistics

def _finite_all(values, what: str) -> list[float]:
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ToolError(f"{what} must be finite numbers, got {values}")
    return values


def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _t_sf(t: float, df: float) -> float:
    from scipy import stats
    return float(stats.t.sf(t, df))


def _check_test_args(delta: float, alpha: float) -> None:
    if not math.isfinite(delta) or not (math.isfinite(alpha) and 0 < alpha < 1):
        raise ToolError(f"need a finite --delta and 0 < --alpha < 1 (got delta={delta}, alpha={alpha})")


def significance_vs_number(values: list[float], baseline: float, delta: float = DEFAULT_DELTA,
                           alpha: float = DEFAULT_ALPHA) -> dict:
    """One-sample one-sided t-test of H1: mean(baseline - values) > delta (lower loss is better).

    Same p-value as scipy.stats.ttest_1samp(values, baseline - delta, alternative='less'); `t` here is the
    statistic of the improvement (the negative of scipy's)."""
    values = _finite_all(values, "per-seed values")
    (baseline,) = _finite_all([baseline], "the baseline")
    _check_test_args(delta, alpha)
    n = len(values)
    imp = baseline - mean(values)
    res = {"test": "one-sample t (one-sided)", "n": n, "baseline": baseline, "mean": mean(values),
           "mean_improvement": imp, "delta": delta, "alpha": alpha}
    if n < 2:
        res.update(t=None, df=None, p_value=None)
    else:
        res.update(df=n - 1, **_t_and_p(imp - delta, sample_std(values) / math.sqrt(n), n - 1))
    res["verdict"] = verdict(res)
    return res


def significance_welch(values: list[float], other: list[float], delta: float = DEFAULT_DELTA,
                       alpha: float = DEFAULT_ALPHA) -> dict:
    """Welch's one-sided t-test of H1: mean(other) - mean(values) > delta (values = the new record).

    Same t and p as scipy.stats.ttest_ind(other, values + delta, equal_var=False, alternative='greater')."""
    values, other = _finite_all(values, "per-seed values"), _finite_all(other, "the baseline's per-seed values")
    _check_test_args(delta, alpha)
    nx, ny = len(values), len(other)
    imp = mean(other) - mean(values)
    res = {"test": "Welch t (one-sided)", "n": nx, "n_baseline": ny, "mean": mean(values),
           "baseline_mean": mean(other), "mean_improvement": imp, "delta": delta, "alpha": alpha}
    if nx < 2 or ny < 2:
        res.update(t=None, df=None, p_value=None)
    else:
        vx, vy = sample_std(values) ** 2 / nx, sample_std(other) ** 2 / ny
        denom = vx * vx / (nx - 1) + vy * vy / (ny - 1)
        df = (vx + vy) ** 2 / denom if denom > 0 else float(nx + ny - 2)
        res.update(df=df, **_t_and_p(imp - delta, math.sqrt(vx + vy), df))
    res["verdict"] = verdict(res)
    return res


def _t_and_p(diff: float, se: float, df: float) -> dict:
    if se > 0:
        t = diff / se
        return {"t": t, "p_value": _t_sf(t, df)}
    # no spread at all: t is unbounded; report no t (JSON has no infinity) and a certain p
    return {"t": None, "p_value": 0.0 if diff > 0 else 1.0}


def verdict(res: dict) -> str:
    if res["mean_improvement"] < 0:
        return "worse"
    p = res.get("p_value")
    return "record" if p is not None and p < res["alpha"] else "not significant"


def record_values(folder, metric: str = "val_loss") -> list[float]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolError(f"{folder}: not a record folder")
    paths = logparse.folder_logs(folder)
    if not paths:
        raise ToolError(f"{folder}: no training logs found")
    runs = load_logs(paths)
    problems = [p for r in runs for p in logparse.consistency_problems(r)]
    if problems:
        raise ToolError(problems[0])
    return [getattr(r, metric) for r in runs]


def compute_significance(values: list[float], against: str, delta: float = DEFAULT_DELTA,
                         alpha: float = DEFAULT_ALPHA, metric: str = "val_loss") -> dict:
    try:
        number = float(against)
    except ValueError:
        number = None
    if number is not None:
        res = significance_vs_number(values, number, delta, alpha)
    else:
        res = significance_welch(values, record_values(against, metric), delta, alpha)
    res.update(against=against, metric=metric)
    return res


# --------------------------------------------------------------------------- building a submission

def requirements_from_source(source: bytes, code: bytes = b"") -> str:
    """Third-party modules the source imports (imports inside try: or functions are listed as used on demand), and
    those the self-extracting script `code` imports (required: it cannot start without them)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "# train_gpt.py does not parse; list its packages by hand\n"
    required, optional = set(), set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.Try, ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name.split(".")[0] for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module.split(".")[0]]
            for n in names:
                if n not in sys.stdlib_module_names and n != "__future__":
                    (optional if inner else required).add(PIP_NAMES.get(n, n))
            visit(child, inner)

    visit(tree, False)
    if code:
        visit(ast.parse(code), False)
    lines = ["# packages train_gpt.py imports (written by `python -m tools record` from the logged source)"]
    lines += sorted(required)
    lines += [f"{n}  # imported where used (a codec, a kernel): needed when that path runs" for n in sorted(optional - required)]
    return "\n".join(lines) + "\n"


def hardware_label(run: RunLog) -> str:
    name, count = gpu_count(run)
    return f"{count}x{name}" if run.device == "cuda" else (run.hardware or "?").split(" torch:")[0]


def default_technique(runs: list[RunLog], changed: dict[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in changed.items() if k not in PER_RUN_KEYS)
    return f"golf train_gpt.py, artifact {runs[0].artifact_scheme}" + (f"; settings: {shown}" if shown else "; default settings")


def build_submission(runs: list[RunLog], log_names: list[str], *, code: bytes, source: bytes, track: str, name: str,
                     author: str, github_id: str, blurb: str, date: str, technique: str | None,
                     changed: dict[str, str], non_record_reasons: list[str]) -> dict:
    """submission.json in the challenge's shape: everything computed from the logs and the counted code."""
    losses, bpbs = [r.val_loss for r in runs], [r.val_bpb for r in runs]
    totals = [r.bytes_model + len(code) for r in runs]
    seed_results = {}
    for r, ln, total in zip(runs, log_names, totals):
        seed_results[str(r.seed)] = {
            "val_loss": r.val_loss, "val_bpb": r.val_bpb, "artifact_bytes": total, "model_bytes": r.bytes_model,
            "steps": r.steps, "step_avg_ms": r.step_avg_ms, "train_time_s": round(r.train_time_ms / 1000, 3),
            "eval_time_s": round(r.eval_time_ms / 1000, 3), "artifact_scheme": r.artifact_scheme, "log": ln}
    std_l, std_b = sample_std(losses), sample_std(bpbs)
    train_max, eval_max = max(r.train_time_ms for r in runs) / 1000, max(r.eval_time_ms for r in runs) / 1000
    name0, count0 = gpu_count(runs[0])
    sub = {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb, "date": date, "track": TRACKS[track],
        "val_loss": round(mean(losses), 8), "val_bpb": round(mean(bpbs), 8),
        "val_loss_std": None if std_l is None else round(std_l, 8), "val_bpb_std": None if std_b is None else round(std_b, 8),
        "seeds": [r.seed for r in runs], "seed_results": seed_results,
        "artifact_bytes_mean": round(mean(totals)), "artifact_bytes_max": max(totals), "bytes_total": max(totals),
        "bytes_code": len(code), "bytes_code_raw": len(source),
        "train_steps_mean": round(mean([r.steps for r in runs]), 2),
        "step_avg_ms_mean": round(mean([r.step_avg_ms for r in runs]), 2),
        "hardware": hardware_label(runs[0]), "pytorch_version": runs[0].torch_version,
        "technique_summary": technique or default_technique(runs, changed),
        "compliance": {
            "train_under_600s": train_max <= RECORD_LIMIT_S, "eval_under_600s": eval_max <= RECORD_LIMIT_S,
            "artifact_under_16mb": max(totals) <= C.SUBMISSION_CAP_BYTES,
            "hardware_8xh100": runs[0].device == "cuda" and RECORD_HARDWARE[0] in name0 and count0 == RECORD_HARDWARE[1],
            "published_fineweb_sp1024": all(published_fineweb(r) for r in runs),
            "train_time_max_s": round(train_max, 3), "eval_time_max_s": round(eval_max, 3),
            "val_tokens": runs[0].data_val_tokens, "fineweb_val_tokens": FINEWEB_VAL_TOKENS,
            "hardware_line": runs[0].hardware},
    }
    if track == NON_RECORD_TRACK:
        sub["non_record_reason"] = "; ".join(non_record_reasons) or "filed as a non-record submission by its author"
    return sub


def _fmt(x: float | None, nd: int = 8) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _shell_quote(v: str) -> str:
    return v if re.fullmatch(r"[A-Za-z0-9_./:+,=@%-]+", v) else "'" + v.replace("'", "'\\''") + "'"


def reproduce_command(run: RunLog, changed: dict[str, str], seeds: list[int]) -> str:
    env = [f"{k}={_shell_quote(v)}" for k, v in changed.items() if k not in PER_RUN_KEYS]
    env.insert(0, f"DATA_PATH={_shell_quote(run.hparams.get('DATA_PATH', '<dataset>'))}")
    threads = re.search(r"\bthreads:(\d+)", run.hardware or "")
    if run.device == "cpu" and threads:  # CPU sums depend on the thread count: the same count gives the same digits
        env.insert(1, f"OMP_NUM_THREADS={threads.group(1)}")
    ws = run.world_size or 1
    launch = "python train_gpt.py" if run.device == "cpu" and ws == 1 else f"torchrun --standalone --nproc_per_node={ws} train_gpt.py"
    return f"for SEED in {' '.join(map(str, seeds))}; do\n  RUN_ID=seed$SEED SEED=$SEED {' '.join(env)} {launch}\ndone"


def build_readme(sub: dict, runs: list[RunLog], changed: dict[str, str], defaults_known: bool, note: str = "") -> str:
    seeds = sub["seeds"]
    non_record = "non_record_reason" in sub
    out = [f"# {sub['name']}", ""]
    if note:
        out += [note, ""]
    out += [sub["blurb"].strip() or "_(no description)_", "",
            f"- Track: `{sub['track']}`" + (f" (not a record: {sub['non_record_reason']})" if non_record else ""),
            f"- Author: {sub['author']} (@{sub['github_id']})", f"- Date: {sub['date']}",
            f"- Technique: {sub['technique_summary']}", "", "## Result", "",
            f"Mean over {len(seeds)} seed(s): **val_bpb {_fmt(sub['val_bpb'])}**"
            + (f" (std {_fmt(sub['val_bpb_std'])})" if sub["val_bpb_std"] is not None else "")
            + f", val_loss {_fmt(sub['val_loss'])}" + (f" (std {_fmt(sub['val_loss_std'])})" if sub["val_loss_std"] is not None else "")
            + ".", "",
            "The score is the last line of each log, `final_int8_zlib_roundtrip_exact`: the artifact read back from disk, "
            "dequantized and evaluated (the line keeps the challenge's name whatever the scheme).", "",
            "| seed | steps | val_loss | val_bpb | model bytes | counted total | train time | eval time |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        e = sub["seed_results"][str(r.seed)]
        out.append(f"| {r.seed} | {r.steps} | {_fmt(r.val_loss)} | {_fmt(r.val_bpb)} | {r.bytes_model:,} | "
                   f"{e['artifact_bytes']:,} | {e['train_time_s']:.1f} s | {e['eval_time_s']:.1f} s |")
    out.append(f"| mean | | {_fmt(sub['val_loss'])} | {_fmt(sub['val_bpb'])} | | {sub['artifact_bytes_mean']:,} | | |")
    if sub["val_loss_std"] is not None:
        out.append(f"| std | | {_fmt(sub['val_loss_std'])} | {_fmt(sub['val_bpb_std'])} | | | | |")
    out += ["", "## Size", "",
            f"`train_gpt.py` here is the self-extracting form ({sub['bytes_code']:,} bytes) of the "
            f"{sub['bytes_code_raw']:,}-byte source embedded at the top of every log: that source without comments and "
            f"docstrings, compressed, in a stub that runs it. Counted total per seed = model bytes + "
            f"{sub['bytes_code']:,}; the largest is {sub['bytes_total']:,} bytes (cap {C.SUBMISSION_CAP_BYTES:,}).", ""]
    c = sub["compliance"]
    out += ["## Compliance", "",
            f"- training time (with GPTQ calibration): up to {c['train_time_max_s']:.1f} s "
            f"({'within' if c['train_under_600s'] else 'over'} 600 s)",
            f"- evaluation time: up to {c['eval_time_max_s']:.1f} s ({'within' if c['eval_under_600s'] else 'over'} 600 s)",
            f"- hardware: `{c['hardware_line']}` ({'8xH100' if c['hardware_8xh100'] else 'not 8xH100'})",
            f"- validation tokens: {c['val_tokens']:,} "
            + ("(the published FineWeb sp1024 set)" if c["published_fineweb_sp1024"]
               else f"(not the published FineWeb sp1024 set of {FINEWEB_VAL_TOKENS:,})"),
            f"- counted size: up to {sub['bytes_total']:,} bytes ({'within' if c['artifact_under_16mb'] else 'over'} "
            f"{C.SUBMISSION_CAP_BYTES:,})", ""]
    sig = sub.get("significance")
    if sig:
        p = "-" if sig.get("p_value") is None else f"{sig['p_value']:.3g}"
        out += ["## Significance", "", f"Against {sig.get('against')}: mean improvement {sig['mean_improvement']:.5f} nats, "
                f"{sig['test']} for improvement >= {sig['delta']} nats: p = {p} -> **{sig['verdict']}**.", ""]
    out += ["## Configuration", "",
            "Settings that differ from the defaults the logged `train_gpt.py` declares (names and paths left out):"
            if defaults_known else "All logged settings (the defaults of the logged `train_gpt.py` could not be read):", ""]
    shown = {k: v for k, v in changed.items() if k not in PER_RUN_KEYS}
    out += (["| name | value |", "|---|---|"] + [f"| `{k}` | `{v}` |" for k, v in shown.items()]) if shown else ["_(none: the defaults)_"]
    out += ["", "## Reproduce", "", "From this folder (the dataset at DATA_PATH):", "", "```bash",
            reproduce_command(runs[0], changed, seeds), "```", "",
            "Check this folder against its logs, and re-run it in an empty folder with the logged settings:", "", "```bash",
            "python -m tools record check <this folder>", "python -m tools record check <this folder> --run --data <dataset dir>",
            "```", "", "## Files", "", "- `train_gpt.py`: the self-extracting script (the counted code)",
            "- " + ", ".join(f"`{e['log']}`" for e in sub["seed_results"].values()) + ": training logs, one per seed",
            "- `submission.json`, `requirements.txt`", ""]
    return "\n".join(out)


def _check_name(name: str, date: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise ToolError(f"name {name!r} must be letters, digits, '.', '_', '+', '-' (no spaces or slashes)")
    try:
        ok = len(date) == 10 and _dt.date.fromisoformat(date)
    except ValueError:
        ok = False
    if not ok:
        raise ToolError(f"date {date!r} is not YYYY-MM-DD")


def new_record(logs: list, *, name: str, author: str, github_id: str, track: str = "auto", blurb: str = "",
               technique: str | None = None, date: str | None = None, replace: bool = False, root=C.REPO / "records",
               against: str | None = None, delta: float = DEFAULT_DELTA, alpha: float = DEFAULT_ALPHA,
               note: str = "") -> Path:
    """Build records/<track>/<date>_<name>/ from one log per seed (under a temporary name, then renamed)."""
    if track != "auto" and track not in TRACKS:
        raise ToolError(f"unknown track {track!r} (choose auto, {', '.join(TRACKS)})")
    date = date or _dt.date.today().isoformat()
    _check_name(name, date)
    runs = load_logs(logs)
    source = run_source(runs[0])
    code = wrap(source) if source is not None else b""
    problems = validate_runs(runs, len(code) if source is not None else None)
    if problems:
        raise ToolError("; ".join(problems))
    reasons = record_track_problems(runs)
    if track == RECORD_TRACK and reasons:
        raise ToolError("not eligible for the record track: " + "; ".join(reasons) + f" (use --track auto or {NON_RECORD_TRACK})")
    if track == "auto":
        track = NON_RECORD_TRACK if reasons else RECORD_TRACK
    track_dir = Path(root) / track
    dest = track_dir / f"{date}_{name}"
    if dest.exists() and not replace:
        raise ToolError(f"{dest} exists (pass --replace to overwrite it)")
    order = sorted(range(len(runs)), key=lambda i: runs[i].seed)
    runs, logs = [runs[i] for i in order], [Path(logs[i]) for i in order]
    log_names = [f"train_seed{r.seed}.log" for r in runs]
    defaults = hparam_defaults(source)
    changed = non_default(runs[0].hparams, defaults)
    sub = build_submission(runs, log_names, code=code, source=source, track=track, name=name, author=author,
                           github_id=github_id, blurb=blurb, date=date, technique=technique, changed=changed,
                           non_record_reasons=reasons)
    if against is not None:
        sub["significance"] = compute_significance([r.val_loss for r in runs], against, delta, alpha)
    text = dumps(sub, indent=2) + "\n"
    track_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=C.temp_prefix(dest.name, "building"), dir=track_dir))
    try:
        (tmp / "train_gpt.py").write_bytes(code)
        for src, ln in zip(logs, log_names):
            shutil.copyfile(src, tmp / ln)
        (tmp / "submission.json").write_text(text)
        (tmp / "requirements.txt").write_text(requirements_from_source(source, code))
        (tmp / "README.md").write_text(build_readme(sub, runs, changed, defaults is not None, note))
        from tools.runs import audit  # (it imports this module) a folder its own audit fails is not written
        failed = audit.audit_folder(tmp, leaderboard=False).problems
        if failed:
            raise ToolError("the folder would fail `record audit`: " + "; ".join(failed))
        os.chmod(tmp, 0o755)
        C.install_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- check

COMPUTED_FIELDS = ("track", "val_loss", "val_bpb", "val_loss_std", "val_bpb_std", "seeds", "seed_results",
                   "artifact_bytes_mean", "artifact_bytes_max", "bytes_total", "bytes_code", "bytes_code_raw",
                   "train_steps_mean", "step_avg_ms_mean", "hardware", "pytorch_version", "compliance")


def _differences(key: str, got, want) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"submission.json {key}.{k} is missing" for k in want if k not in got]
        out += [f"submission.json {key}.{k} is not computed from the logs" for k in got if k not in want]
        return out + [d for k in want if k in got for d in _differences(f"{key}.{k}", got[k], want[k])]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if abs(got - want) <= 1e-8 else [f"submission.json {key} is {got!r} but the logs say {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"submission.json {key} is {got!r} but the logs say {want!r}"]


def check_record(folder) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a record folder, checked statically: nothing in it is executed."""
    folder = Path(folder)
    problems, warnings = [], []
    if not folder.is_dir():
        return [f"{folder}: not a directory"], []
    problems += [f"missing {f}" for f in REQUIRED_FILES if not (folder / f).is_file()]
    if not (folder / "requirements.txt").is_file():
        warnings.append("no requirements.txt")
    sub = None
    if (folder / "submission.json").is_file():
        try:
            sub = load_json(folder / "submission.json")
        except ToolError as e:
            problems.append(str(e).replace(f"{folder}/", ""))
    if sub is not None:
        problems += [f"submission.json lacks '{k}'" for k in SUBMISSION_FIELDS if k not in sub]
    log_paths = logparse.folder_logs(folder)
    problems += [f"missing log {p.name} (named in submission.json)" for p in log_paths if not p.is_file()]
    log_paths = [p for p in log_paths if p.is_file()]
    if not log_paths:
        return problems + ["no training logs in the folder"], warnings
    runs = []
    for p in log_paths:
        try:
            runs.append(logparse.parse_log(p))
        except ToolError as e:
            problems.append(str(e))
    if not runs:
        return problems, warnings
    code = (folder / "train_gpt.py").read_bytes() if (folder / "train_gpt.py").is_file() else None
    source = run_source(runs[0])
    if code is not None:
        try:
            compile(code, "train_gpt.py", "exec")
        except (SyntaxError, ValueError) as e:
            problems.append(f"train_gpt.py does not compile: {e}")
        payload = unwrap(code)
        if payload is None:
            warnings.append(f"train_gpt.py is not a self-extracting script: its {len(code)} raw bytes are counted")
            payload = code
        if source is not None and not ships_source(payload, source):
            problems.append(f"train_gpt.py runs {len(payload)} bytes of source that differ from the {len(source)}-byte "
                            "source the logs embed")
    log_problems = [p.replace(f"{folder}/", "") for p in validate_runs(runs, None if code is None else len(code))]
    problems += log_problems
    if sub is None or code is None or source is None or log_problems or len(runs) != len(log_paths):
        return problems, warnings
    reasons = record_track_problems(runs)
    folder_track = folder.parent.name
    if folder_track == RECORD_TRACK and reasons:
        problems.append("in the record track but not eligible: " + "; ".join(reasons))
    if folder_track in TRACKS and sub.get("track") != TRACKS[folder_track]:
        problems.append(f"submission.json track is {sub.get('track')!r} but the folder is in {folder_track}")
    if sub.get("track") == TRACKS[NON_RECORD_TRACK] and not isinstance(sub.get("non_record_reason"), str):
        problems.append("a non-record submission without 'non_record_reason'")
    track = next((t for t, v in TRACKS.items() if v == sub.get("track")), NON_RECORD_TRACK)
    runs_by_seed = sorted(runs, key=lambda r: r.seed)
    names = {str(r.seed): p.name for r, p in zip(runs, log_paths)}
    want = build_submission(runs_by_seed, [names[str(r.seed)] for r in runs_by_seed], code=code, source=source,
                            track=track, name="", author="", github_id="", blurb="", date="", technique="",
                            changed={}, non_record_reasons=reasons)
    for key in COMPUTED_FIELDS:
        if key in sub:
            problems += _differences(key, sub[key], want[key])
    return problems, warnings


def replay_env(run: RunLog, out_dir: str, run_id: str, data: str, tokenizer: str) -> dict[str, str]:
    """The environment of a re-run: the log's settings except names, paths and files of the original machine,
    with this machine's paths; on CPU the logged thread count (sums depend on it)."""
    names = set(run.hparams)
    env = {k: v for k, v in os.environ.items() if k not in names and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                                 "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS")}
    env.update({k: v for k, v in run.hparams.items() if k not in NOT_REPLAYED})
    env.update(DATA_PATH=data, OUT_DIR=out_dir, RUN_ID=run_id, TOKENIZER_PATH=tokenizer)
    m = re.search(r"\bthreads:(\d+)", run.hardware or "")
    if run.device == "cpu" and m:
        env["OMP_NUM_THREADS"] = m.group(1)
    return env


@dataclass
class RerunResult:
    seed: int
    ok: bool
    message: str


def rerun_seed(folder: Path, run: RunLog, data: Path, tokenizer: str | None, timeout: float,
               tolerance: float, bytes_code: int | None) -> RerunResult:
    """Run the record's train_gpt.py in an empty temporary folder that holds only the record's files (and a link to
    the data), with the settings of `run`'s log; compare its final exact line with the log's."""
    logged_tok = run.hparams.get("TOKENIZER_PATH", "")
    if logged_tok and not tokenizer:
        return RerunResult(run.seed, False, f"the log used TOKENIZER_PATH={logged_tok}: give --tokenizer")
    with tempfile.TemporaryDirectory(prefix="golf-record-check-") as td:
        work = Path(td) / folder.name
        work.mkdir()
        for f in folder.iterdir():
            if f.is_file():
                shutil.copyfile(f, work / f.name)
        (work / "data").symlink_to(data.resolve(), target_is_directory=True)
        tok = ""
        if tokenizer:
            tok = f"tokenizer{Path(tokenizer).suffix}"
            (work / tok).symlink_to(Path(tokenizer).resolve())
        run_id = f"check_seed{run.seed}"
        env = replay_env(run, "out", run_id, "data", tok)
        world = run.world_size or 1
        cmd = [sys.executable, "train_gpt.py"] if world == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", "train_gpt.py"]
        try:
            p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return RerunResult(run.seed, False, f"the re-run did not finish within {timeout:.0f} s")
        log = work / "out" / "logs" / f"{run_id}.txt"
        if p.returncode not in (0, 3) or not log.is_file():
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            return RerunResult(run.seed, False, f"the re-run exited {p.returncode}: {tail}")
        again = logparse.parse_log(log)
    if not again.finished:
        return RerunResult(run.seed, False, "the re-run's log has no final line")
    deterministic = run.device == "cpu" and float(run.hparams.get("MAX_WALLCLOCK_SECONDS", "0") or 0) == 0
    mine = f"val_loss:{again.val_loss:.8f} val_bpb:{again.val_bpb:.8f}"
    logged = f"val_loss:{run.val_loss:.8f} val_bpb:{run.val_bpb:.8f}"
    notes = []
    if bytes_code is not None and again.bytes_code != bytes_code:
        notes.append(f"its Code size is {again.bytes_code}, not the {bytes_code} bytes submission.json counts")
    if again.artifact_scheme != run.artifact_scheme:
        notes.append(f"it chose {again.artifact_scheme}, the log {run.artifact_scheme}")
    if deterministic:
        if again.bytes_model != run.bytes_model:
            notes.append(f"its model is {again.bytes_model} bytes, the log's {run.bytes_model}")
        ok = mine == logged and not notes
        choice = lambda r: re.findall(r"^precision:(\S+)|threads:(\d+)", r.precision or "")  # noqa: E731
        if not ok and choice(again) != choice(run):
            notes.append(f"precision/threads differ from the original run's: {again.precision!r} vs {run.precision!r}")
        return RerunResult(run.seed, ok, f"final_int8_zlib_roundtrip_exact {mine}" + (" (matches the log exactly)" if ok
                           else f" vs the log's {logged}" + ("; " + "; ".join(notes) if notes else "")))
    diff = abs(again.val_bpb - run.val_bpb)
    ok = diff <= tolerance and not notes[:1]
    return RerunResult(run.seed, ok, f"final_int8_zlib_roundtrip_exact {mine} vs the log's {logged}: |d val_bpb| {diff:.6f} "
                       f"({'within' if diff <= tolerance else 'over'} the tolerance {tolerance} of a run that is not "
                       "deterministic (CUDA or a wallclock cap))" + ("; " + "; ".join(notes) if notes else ""))


def check_run(folder, data, tokenizer: str | None = None, seed: int | None = None, timeout: float = 3600,
              tolerance: float = 0.005) -> list[RerunResult]:
    folder, data = Path(folder), Path(data)
    if not data.is_dir():
        raise ToolError(f"--data {data} is not a directory")
    if not (folder / "train_gpt.py").is_file():
        raise ToolError(f"{folder} has no train_gpt.py")
    runs = load_logs(logparse.folder_logs(folder))
    if seed is not None:
        runs = [r for r in runs if r.seed == seed]
        if not runs:
            raise ToolError(f"{folder} has no log for seed {seed}")
    sub = load_json(folder / "submission.json") if (folder / "submission.json").is_file() else {}
    code = sub.get("bytes_code") if isinstance(sub.get("bytes_code"), int) else None
    return [rerun_seed(folder, r, data, tokenizer, timeout, tolerance, code) for r in runs]


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audit"]:  # any author's record folder: tools/runs/audit.py has its own options
        from tools.runs import audit
        return audit.main(argv[1:])
    ap = argparse.ArgumentParser(description="Build, test, check and audit challenge submission folders.")
    sp = ap.add_subparsers(dest="cmd", required=True)
    sp.add_parser("audit", help="audit any record folder of the challenge (record audit --help)")
    n = sp.add_parser("new", help="create records/<track>/<date>_<name>/ from one log per seed")
    n.add_argument("logs", nargs="+", help="train_gpt.py logs (logs/<RUN_ID>.txt), one per seed")
    n.add_argument("--track", default="auto", choices=("auto", *TRACKS),
                   help="auto (default): the record track when eligible, else track_non_record_16mb with the reason")
    n.add_argument("--name", required=True, help="short name, used in the folder name")
    n.add_argument("--author", required=True)
    n.add_argument("--github-id", required=True)
    n.add_argument("--blurb", default="", help="one paragraph: what is new")
    n.add_argument("--technique", default=None, help="one line for technique_summary (default: scheme and settings)")
    n.add_argument("--note", default="", help="a line put first in README.md (e.g. that this is an example)")
    n.add_argument("--date", default=None, help="YYYY-MM-DD (default today)")
    n.add_argument("--replace", action="store_true", help="overwrite an existing folder")
    n.add_argument("--root", default=str(C.REPO / "records"), help="records directory (default: the repository's)")
    n.add_argument("--against", default=None, help="also store a significance test against a val_loss number or a record folder")
    n.add_argument("--json", action="store_true", help="print the submission.json written")
    s = sp.add_parser("significance", help="one-sided t-test: does the record beat a baseline by >= delta nats?")
    s.add_argument("record", help="record folder (its logs give the per-seed values)")
    s.add_argument("--against", required=True, help="baseline: a number (mean val_loss) or another record folder")
    s.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="required improvement (default %(default)s)")
    s.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level (default %(default)s)")
    s.add_argument("--metric", default="val_loss", choices=("val_loss", "val_bpb"))
    s.add_argument("--json", action="store_true")
    c = sp.add_parser("check", help="validate a record folder against its logs (and, with --run, re-run it)")
    c.add_argument("record")
    c.add_argument("--run", action="store_true", help="also run the record's train_gpt.py per seed and compare final lines")
    c.add_argument("--data", default=None, help="dataset directory for --run")
    c.add_argument("--tokenizer", default=None, help="tokenizer for --run when the log set TOKENIZER_PATH")
    c.add_argument("--seed", type=int, default=None, help="re-run only this seed")
    c.add_argument("--timeout", type=float, default=3600, help="seconds per re-run (default %(default)s)")
    c.add_argument("--tolerance", type=float, default=0.005, help="val_bpb tolerance for runs that are not deterministic")
    c.add_argument("--json", action="store_true")
    w = sp.add_parser("wrap", help="write the compressed self-extracting form of a train_gpt.py")
    w.add_argument("source")
    w.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "new":
        dest = new_record(args.logs, track=args.track, name=args.name, author=args.author, github_id=args.github_id,
                          blurb=args.blurb, technique=args.technique, date=args.date, replace=args.replace,
                          root=args.root, against=args.against, note=args.note)
        sub = load_json(dest / "submission.json")
        if args.json:
            print(dumps(sub, indent=2))
        else:
            print(f"wrote {dest}: {len(sub['seeds'])} seed(s), val_bpb {sub['val_bpb']:.8f}, val_loss {sub['val_loss']:.8f}, "
                  f"bytes_total {sub['bytes_total']} (code {sub['bytes_code']} bytes self-extracting, "
                  f"{sub['bytes_code_raw']} raw)" + (f"; non-record: {sub['non_record_reason']}" if "non_record_reason" in sub else ""))
        return 0
    if args.cmd == "significance":
        res = compute_significance(record_values(args.record, args.metric), args.against, args.delta, args.alpha, args.metric)
        if args.json:
            print(dumps(res))
        else:
            p = "n/a (needs >= 2 seeds on each side)" if res["p_value"] is None else f"{res['p_value']:.4g}"
            t = "n/a" if res["t"] is None else f"{res['t']:.4f}"
            df = "n/a" if res["df"] is None else f"{res['df']:.2f}"
            print(f"{res['test']}: n={res['n']} mean {args.metric} {res['mean']:.8f}; "
                  f"mean improvement {res['mean_improvement']:.6f} vs {args.against}")
            print(f"H1: improvement >= {res['delta']}  t={t} df={df} p={p}  alpha={res['alpha']}")
            print(f"verdict: {res['verdict']}")
        return 0
    if args.cmd == "wrap":
        C.refuse_writing_over(args.out, [args.source], "-o", "the source it wraps")
        src = Path(args.source).read_bytes()
        code = wrap(src)
        C.atomic_write(args.out, code)
        print(f"wrote {args.out}: {len(code)} bytes, self-extracting {len(src)} bytes of source")
        return 0
    problems, warnings = check_record(args.record)
    reruns = []
    if args.run:
        if not args.data:
            raise ToolError("check --run needs --data DIR")
        if problems:
            raise ToolError(f"{args.record} fails the static check ({problems[0]}); not running it")
        reruns = check_run(args.record, args.data, args.tokenizer, args.seed, args.timeout, args.tolerance)
        problems += [f"seed {r.seed} re-run: {r.message}" for r in reruns if not r.ok]
    if args.json:
        print(dumps({"ok": not problems, "problems": problems, "warnings": warnings,
                     "reruns": [r.__dict__ for r in reruns]}))
    else:
        for w_ in warnings:
            print(f"warning: {w_}")
        for r in reruns:
            print(f"seed {r.seed} re-run: {r.message}")
        for p_ in problems:
            print(f"problem: {p_}")
        print(f"{args.record}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
