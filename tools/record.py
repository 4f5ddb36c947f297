"""Turn train_gpt.py logs into a challenge record folder, test significance, and check a folder.

    python tools/record.py new --track track_10min_16mb --name MyIdea --author "A. Person" --github-id ap \\
        [--blurb TEXT] [--date YYYY-MM-DD] [--replace] [--root records] LOG [LOG ...]
    python tools/record.py significance RECORD_DIR --against NUMBER|OTHER_RECORD_DIR [--delta 0.005] [--alpha 0.01]
    python tools/record.py check RECORD_DIR

`new` writes records/<track>/<date>_<name>/ (README.md, submission.json, train_gpt.py, requirements.txt,
train_seed<SEED>.txt per log); it refuses, with the reason, when a seed's total size exceeds 16,000,000 bytes,
a log has no final round-trip line, the logs' sources differ, or the folder exists (without --replace).
See records/README.md.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
REPO = _HERE.parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import logparse  # noqa: E402
from logparse import SIZE_CAP, LogError, RunLog  # noqa: E402

TRACKS = ("track_10min_16mb", "track_non_record_16mb")
REQUIRED_FILES = ("README.md", "submission.json", "train_gpt.py")
SUBMISSION_FIELDS = ("author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total",
                     "bytes_code")
# hyperparameters that legitimately differ between the seeds of one record
PER_RUN_KEYS = {"RUN_ID", "SEED", "OUT_DIR", "CHECKPOINT_EVERY", "RESUME"}
DEFAULT_DELTA = 0.005
DEFAULT_ALPHA = 0.01
# import name -> pip name, for requirements.txt
PIP_NAMES = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "flash_attn": "flash-attn",
             "flash_attn_interface": "flash-attn", "cv2": "opencv-python"}


class RecordError(Exception):
    """A refusal or bad input: one line, printed as `error: ...`."""


# --------------------------------------------------------------------------- reading logs

def load_logs(paths: list[str | Path]) -> list[RunLog]:
    runs = []
    for p in paths:
        try:
            runs.append(logparse.parse_log(p))
        except LogError as e:
            raise RecordError(str(e)) from None
    return runs


def find_logs(folder: Path) -> list[Path]:
    """Log files of a record folder: those submission.json names, else every file that looks like a log."""
    sub = folder / "submission.json"
    if sub.is_file():
        try:
            d = json.loads(sub.read_text())
            names = [r.get("log") for r in (d.get("seed_results") or {}).values() if isinstance(r, dict)]
            if names and all(isinstance(n, str) for n in names):
                return [folder / n for n in names]
        except (json.JSONDecodeError, AttributeError):
            pass
    skip = {"train_gpt.py", "README.md", "submission.json", "requirements.txt"}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in skip and logparse.is_log(p))


def validate_runs(runs: list[RunLog]) -> list[str]:
    """Every reason these logs cannot form a record (empty list = fine)."""
    problems = []
    if not runs:
        return ["no logs given"]
    for r in runs:
        if not r.finished:
            problems.append(f"{r.path}: no final round-trip line (final_int8_zlib_roundtrip_exact): unfinished run")
        if r.source is None:
            problems.append(f"{r.path}: no train_gpt.py source block")
        if r.bytes_total is None:
            problems.append(f"{r.path}: no 'Total submission size' line")
        elif r.bytes_total > SIZE_CAP:
            problems.append(f"{r.path}: seed {r.seed} total size {r.bytes_total} bytes exceeds the cap of "
                            f"{SIZE_CAP} by {r.bytes_total - SIZE_CAP}")
        if r.seed is None:
            problems.append(f"{r.path}: no 'hparam SEED=' line")
    srcs = {r.source for r in runs if r.source is not None}
    if len(srcs) > 1:
        first = runs[0]
        for r in runs[1:]:
            if r.source is not None and r.source != first.source:
                problems.append(f"train_gpt.py sources differ: {first.path} ({len(first.source or b'')} bytes) vs "
                                f"{r.path} ({len(r.source)} bytes)")
    seeds = [r.seed for r in runs if r.seed is not None]
    dups = sorted({s for s in seeds if seeds.count(s) > 1})
    if dups:
        problems.append(f"several logs for seed(s) {', '.join(map(str, dups))}: one log per seed")
    base = runs[0].hparams
    for r in runs[1:]:
        for k in sorted(set(base) | set(r.hparams)):
            if k not in PER_RUN_KEYS and base.get(k) != r.hparams.get(k):
                problems.append(f"configurations differ: {k}={base.get(k)!r} in {runs[0].path} but "
                                f"{r.hparams.get(k)!r} in {r.path}")
    return problems


# --------------------------------------------------------------------------- statistics

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


def significance_vs_number(values: list[float], baseline: float, delta: float = DEFAULT_DELTA,
                           alpha: float = DEFAULT_ALPHA) -> dict:
    """One-sample one-sided t-test of H1: mean(baseline - values) > delta (lower loss is better).

    Same p-value as scipy.stats.ttest_1samp(values, baseline - delta, alternative='less'); `t` here is the
    statistic of the improvement (the negative of scipy's)."""
    n = len(values)
    imp = baseline - mean(values)
    res = {"test": "one-sample t (one-sided)", "n": n, "baseline": baseline, "mean": mean(values),
           "mean_improvement": imp, "delta": delta, "alpha": alpha}
    if n < 2:
        res.update(t=None, df=None, p_value=None)
    else:
        se = sample_std(values) / math.sqrt(n)
        df = n - 1
        res.update(df=df, **_t_and_p(imp - delta, se, df))
    res["verdict"] = verdict(res)
    return res


def significance_welch(values: list[float], other: list[float], delta: float = DEFAULT_DELTA,
                       alpha: float = DEFAULT_ALPHA) -> dict:
    """Welch's one-sided t-test of H1: mean(other) - mean(values) > delta (values = the new record).

    Same t and p as scipy.stats.ttest_ind(other, values + delta, equal_var=False, alternative='greater')."""
    nx, ny = len(values), len(other)
    imp = mean(other) - mean(values)
    res = {"test": "Welch t (one-sided)", "n": nx, "n_baseline": ny, "mean": mean(values),
           "baseline_mean": mean(other), "mean_improvement": imp, "delta": delta, "alpha": alpha}
    if nx < 2 or ny < 2:
        res.update(t=None, df=None, p_value=None)
    else:
        vx, vy = sample_std(values) ** 2 / nx, sample_std(other) ** 2 / ny
        se = math.sqrt(vx + vy)
        denom = vx * vx / (nx - 1) + vy * vy / (ny - 1)
        df = (vx + vy) ** 2 / denom if denom > 0 else float(nx + ny - 2)
        res.update(df=df, **_t_and_p(imp - delta, se, df))
    res["verdict"] = verdict(res)
    return res


def _t_and_p(diff: float, se: float, df: float) -> dict:
    if se > 0:
        t = diff / se
        return {"t": t, "p_value": _t_sf(t, df)}
    # no spread at all: the answer is certain either way
    return {"t": math.copysign(math.inf, diff) if diff else 0.0, "p_value": 0.0 if diff > 0 else 1.0}


def verdict(res: dict) -> str:
    if res["mean_improvement"] < 0:
        return "worse"
    p = res.get("p_value")
    if p is not None and p < res["alpha"]:
        return "record"
    return "not significant"


# --------------------------------------------------------------------------- defaults of train_gpt.py

_DEFAULTS_SNIPPET = r"""
import dataclasses, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("train_gpt_record_defaults", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
H = mod.Hyperparameters
out = {}
if dataclasses.is_dataclass(H):
    for f in dataclasses.fields(H):
        if f.default is not dataclasses.MISSING:
            out[f.name.upper()] = str(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name.upper()] = str(f.default_factory())
else:  # class attributes read from the environment at import time
    for k, v in vars(H).items():
        if not k.startswith("_") and isinstance(v, (str, int, float, bool)):
            out[k.upper()] = str(v)
print(json.dumps(out))
"""


def hparam_defaults(source: bytes, names: list[str]) -> dict[str, str] | None:
    """The defaults that the logged train_gpt.py declares, as the strings its log would print.

    Imports the logged source (importing train_gpt.py has no side effects) in a subprocess whose environment
    holds none of the hyperparameter names, so class-level `os.environ.get(NAME, default)` sees the default.
    Returns None when that fails (the README then lists the whole configuration)."""
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "train_gpt.py"
        path.write_bytes(source)
        env = {k: v for k, v in os.environ.items() if k not in set(names)}
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            out = subprocess.run([sys.executable, "-c", _DEFAULTS_SNIPPET, str(path)], env=env, cwd=td,
                                 capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None
    if out.returncode != 0:
        return None
    try:
        d = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None
    return {str(k): str(v) for k, v in d.items()}


def _same_value(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        pass
    truth = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    return truth.get(a.lower(), a) == truth.get(b.lower(), b)


def non_default(hparams: dict[str, str], defaults: dict[str, str] | None) -> dict[str, str]:
    if defaults is None:
        return dict(hparams)
    return {k: v for k, v in hparams.items() if k not in defaults or not _same_value(v, defaults[k])}


# --------------------------------------------------------------------------- building a record

def requirements_from_source(source: bytes) -> str:
    """Third-party modules train_gpt.py imports (imports inside try: are listed commented as optional)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "# train_gpt.py does not parse; list its packages by hand\n"
    required, optional = set(), set()

    def visit(node: ast.AST, in_try: bool) -> None:
        for child in ast.iter_child_nodes(node):
            t = in_try or isinstance(child, ast.Try)
            names = []
            if isinstance(child, ast.Import):
                names = [a.name.split(".")[0] for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module.split(".")[0]]
            for n in names:
                if n not in sys.stdlib_module_names and n != "__future__":
                    (optional if t else required).add(PIP_NAMES.get(n, n))
            visit(child, t)

    visit(tree, False)
    lines = ["# packages train_gpt.py imports (written by tools/record.py from the logged source)"]
    lines += sorted(required)
    lines += [f"# {n}  (optional: imported inside try)" for n in sorted(optional - required)]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, nd: int = 8) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _reproduce_command(run: RunLog, changed: dict[str, str], seeds: list[int]) -> str:
    env = " ".join(f"{k}={_shell_quote(v)}" for k, v in changed.items() if k not in PER_RUN_KEYS)
    ws = run.world_size or 1
    if (run.device or "").startswith("cpu") and ws == 1:
        launch = "python train_gpt.py"
    else:
        launch = f"torchrun --standalone --nproc_per_node={ws} train_gpt.py"
    prefix = f"{env} " if env else ""
    return (f"for SEED in {' '.join(map(str, seeds))}; do\n"
            f"  RUN_ID=seed$SEED SEED=$SEED {prefix}{launch}\ndone")


def _shell_quote(v: str) -> str:
    return v if re.fullmatch(r"[A-Za-z0-9_./:+,=@%-]+", v) else "'" + v.replace("'", "'\\''") + "'"


def build_submission(runs: list[RunLog], log_names: list[str], *, track: str, name: str, author: str,
                     github_id: str, blurb: str, date: str) -> dict:
    losses = [r.val_loss for r in runs]
    bpbs = [r.val_bpb for r in runs]
    seed_results = {}
    for r, ln in zip(runs, log_names):
        seed_results[str(r.seed)] = {
            "val_loss": r.val_loss, "val_bpb": r.val_bpb, "steps": r.steps,
            "ms_per_step": r.step_avg_ms, "train_time_ms": r.train_time_ms,
            "bytes_total": r.bytes_total, "bytes_model": r.bytes_model, "log": ln}
    std_l, std_b = sample_std(losses), sample_std(bpbs)
    return {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb, "date": date,
        "track": track,
        "val_loss": round(mean(losses), 8), "val_bpb": round(mean(bpbs), 8),
        "bytes_total": max(r.bytes_total for r in runs), "bytes_code": runs[0].bytes_code,
        "seed_results": seed_results,
        "statistics": {"n_seeds": len(runs),
                       "val_loss_mean": round(mean(losses), 8),
                       "val_loss_std": None if std_l is None else round(std_l, 8),
                       "val_bpb_mean": round(mean(bpbs), 8),
                       "val_bpb_std": None if std_b is None else round(std_b, 8)},
    }


def build_readme(sub: dict, runs: list[RunLog], changed: dict[str, str], defaults_known: bool) -> str:
    st = sub["statistics"]
    seeds = [r.seed for r in runs]
    r0 = runs[0]
    out = [f"# {sub['name']}", "", f"{sub['blurb']}".strip() or "_(no description)_", "",
           f"- Track: `{sub['track']}`", f"- Author: {sub['author']} (@{sub['github_id']})",
           f"- Date: {sub['date']}", "", "## Result", "",
           f"Mean over {st['n_seeds']} seed(s): **val_bpb {_fmt(st['val_bpb_mean'])}**"
           + (f" (std {_fmt(st['val_bpb_std'])})" if st["val_bpb_std"] is not None else "")
           + f", val_loss {_fmt(st['val_loss_mean'])}"
           + (f" (std {_fmt(st['val_loss_std'])})" if st["val_loss_std"] is not None else "") + ".",
           "The score is the final int8+zlib round trip (`final_int8_zlib_roundtrip_exact`): the artifact read back "
           "from disk, dequantized and evaluated.", "",
           "| seed | steps | val_loss | val_bpb | artifact bytes (total) | margin to 16,000,000 | train time |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        tt = "-" if r.train_time_ms is None else f"{r.train_time_ms / 1000:.1f} s"
        out.append(f"| {r.seed} | {r.steps} | {_fmt(r.val_loss)} | {_fmt(r.val_bpb)} | {r.bytes_total:,} | "
                   f"{r.margin:,} | {tt} |")
    mean_row = f"| mean | | {_fmt(st['val_loss_mean'])} | {_fmt(st['val_bpb_mean'])} | | | |"
    out += [mean_row]
    if st["val_loss_std"] is not None:
        out.append(f"| std | | {_fmt(st['val_loss_std'])} | {_fmt(st['val_bpb_std'])} | | | |")
    out += ["", f"Code: {sub['bytes_code']:,} bytes (`train_gpt.py`); largest total: {sub['bytes_total']:,} bytes.", ""]
    sig = sub.get("significance")
    if sig:
        p = "-" if sig.get("p_value") is None else f"{sig['p_value']:.3g}"
        out += ["## Significance", "",
                f"Against {sig.get('against')}: mean improvement {sig['mean_improvement']:.5f} nats, "
                f"{sig['test']} for improvement >= {sig['delta']} nats: p = {p} -> **{sig['verdict']}**.", ""]
    out += ["## Configuration", ""]
    if defaults_known:
        out.append("Hyperparameters that differ from the defaults `train_gpt.py` declares "
                   "(per-run names RUN_ID/SEED/OUT_DIR left out):")
    else:
        out.append("All logged hyperparameters (the defaults of the logged `train_gpt.py` could not be read):")
    out.append("")
    shown = {k: v for k, v in changed.items() if k not in PER_RUN_KEYS}
    if shown:
        out += ["| name | value |", "|---|---|"] + [f"| `{k}` | `{v}` |" for k, v in shown.items()]
    else:
        out.append("_(none: the defaults)_")
    out += ["", "## Hardware", ""]
    hw = sorted({r.hardware or "(not logged)" for r in runs})
    out += [f"- `{h}`" for h in hw]
    if r0.model_params:
        out += [f"- model parameters: {r0.model_params:,}"]
    out += ["", "## Reproduce", "", "From this folder, with the dataset in place:", "", "```bash",
            _reproduce_command(r0, changed, seeds), "```", "",
            "## Files", "", "- `train_gpt.py`: the exact source the logs embed",
            "- " + ", ".join(f"`{r['log']}`" for r in sub["seed_results"].values()) + ": training logs, one per seed",
            "- `submission.json`, `requirements.txt`", ""]
    return "\n".join(out)


def _atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def new_record(logs: list[str | Path], *, track: str, name: str, author: str, github_id: str, blurb: str = "",
               date: str | None = None, replace: bool = False, root: str | Path = REPO / "records",
               against: str | None = None, delta: float = DEFAULT_DELTA, alpha: float = DEFAULT_ALPHA) -> Path:
    if track not in TRACKS:
        raise RecordError(f"unknown track {track!r} (choose {', '.join(TRACKS)})")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise RecordError(f"name {name!r} must be letters, digits, '.', '_', '+', '-' (no spaces or slashes)")
    date = date or _dt.date.today().isoformat()
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        raise RecordError(f"date {date!r} is not YYYY-MM-DD") from None
    if len(date) != 10:
        raise RecordError(f"date {date!r} is not YYYY-MM-DD")
    track_dir = Path(root) / track
    dest = track_dir / f"{date}_{name}"
    if dest.exists() and not replace:
        raise RecordError(f"{dest} exists (pass --replace to overwrite it)")
    runs = load_logs(logs)
    problems = validate_runs(runs)
    if problems:
        raise RecordError("; ".join(problems))
    order = sorted(range(len(runs)), key=lambda i: runs[i].seed)
    runs = [runs[i] for i in order]
    logs = [Path(logs[i]) for i in order]
    log_names = [f"train_seed{r.seed}.txt" for r in runs]
    source = runs[0].source
    defaults = hparam_defaults(source, sorted(runs[0].hparams))
    changed = non_default(runs[0].hparams, defaults)
    sub = build_submission(runs, log_names, track=track, name=name, author=author, github_id=github_id,
                           blurb=blurb, date=date)
    if against is not None:
        sub["significance"] = compute_significance([r.val_loss for r in runs], against, delta, alpha)
    track_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{date}_{name}-", dir=track_dir))
    try:
        (tmp / "train_gpt.py").write_bytes(source)
        for src, ln in zip(logs, log_names):
            shutil.copyfile(src, tmp / ln)
        (tmp / "submission.json").write_text(json.dumps(sub, indent=2) + "\n")
        (tmp / "requirements.txt").write_text(requirements_from_source(source))
        (tmp / "README.md").write_text(build_readme(sub, runs, changed, defaults is not None))
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = track_dir / f".old-{dest.name}-{os.getpid()}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- significance

def record_values(folder: str | Path, metric: str = "val_loss") -> list[float]:
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordError(f"{folder}: not a record folder")
    paths = find_logs(folder)
    if not paths:
        raise RecordError(f"{folder}: no training logs found")
    runs = load_logs(paths)
    for r in runs:
        if not r.finished:
            raise RecordError(f"{r.path}: unfinished log (no final_int8_zlib_roundtrip_exact line)")
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
    res["against"] = against
    res["metric"] = metric
    return res


# --------------------------------------------------------------------------- check

def check_record(folder: str | Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) for a record folder."""
    folder = Path(folder)
    problems, warnings = [], []
    if not folder.is_dir():
        return [f"{folder}: not a directory"], []
    for f in REQUIRED_FILES:
        if not (folder / f).is_file():
            problems.append(f"missing {f}")
    if not (folder / "requirements.txt").is_file():
        warnings.append("no requirements.txt")
    sub = None
    if (folder / "submission.json").is_file():
        try:
            sub = json.loads((folder / "submission.json").read_text())
            if not isinstance(sub, dict):
                problems.append("submission.json is not a JSON object")
                sub = None
        except json.JSONDecodeError as e:
            problems.append(f"submission.json is not valid JSON ({e.msg} at line {e.lineno})")
    if sub is not None:
        for k in SUBMISSION_FIELDS:
            if k not in sub:
                problems.append(f"submission.json lacks '{k}'")
    log_paths = find_logs(folder)
    missing = [p for p in log_paths if not p.is_file()]
    problems += [f"missing log {p.name} (named in submission.json)" for p in missing]
    log_paths = [p for p in log_paths if p.is_file()]
    if not log_paths:
        problems.append("no training logs in the folder")
        return problems, warnings
    runs = []
    for p in log_paths:
        try:
            runs.append(logparse.parse_log(p))
        except LogError as e:
            problems.append(str(e))
    if not runs:
        return problems, warnings
    problems += [p.replace(f"{folder}/", "") for p in validate_runs(runs)]
    src = runs[0].source
    code_path = folder / "train_gpt.py"
    if code_path.is_file():
        code = code_path.read_bytes()
        try:
            compile(code, str(code_path), "exec")
        except (SyntaxError, ValueError) as e:
            problems.append(f"train_gpt.py does not compile: {e}")
        if src is not None and code != src:
            problems.append(f"train_gpt.py ({len(code)} bytes) differs from the source the logs embed "
                            f"({len(src)} bytes)")
        codes = {r.bytes_code for r in runs}
        if len(codes) == 1 and None not in codes and len(code) != codes.pop():
            problems.append(f"train_gpt.py is {len(code)} bytes but the logs say Code size {runs[0].bytes_code}")
    fin = [r for r in runs if r.finished and r.bytes_total is not None]
    if sub is not None and fin and len(fin) == len(runs):
        _compare(problems, "val_loss", sub.get("val_loss"), round(mean([r.val_loss for r in runs]), 8), 1e-8)
        _compare(problems, "val_bpb", sub.get("val_bpb"), round(mean([r.val_bpb for r in runs]), 8), 1e-8)
        _compare(problems, "bytes_total", sub.get("bytes_total"), max(r.bytes_total for r in runs), 0)
        _compare(problems, "bytes_code", sub.get("bytes_code"), runs[0].bytes_code, 0)
        if isinstance(sub.get("bytes_total"), (int, float)) and sub["bytes_total"] > SIZE_CAP:
            problems.append(f"submission.json bytes_total {sub['bytes_total']} exceeds {SIZE_CAP}")
        sr = sub.get("seed_results")
        if isinstance(sr, dict):
            by_seed = {str(r.seed): r for r in runs}
            for seed in sorted(set(sr) - set(by_seed)):
                problems.append(f"submission.json seed_results has seed {seed} but no log for it")
            for seed, r in by_seed.items():
                e = sr.get(seed)
                if not isinstance(e, dict):
                    problems.append(f"submission.json seed_results lacks seed {seed}")
                    continue
                for k, want, tol in (("val_loss", r.val_loss, 1e-8), ("val_bpb", r.val_bpb, 1e-8),
                                     ("steps", r.steps, 0), ("bytes_total", r.bytes_total, 0)):
                    if k in e:
                        _compare(problems, f"seed_results[{seed}].{k}", e[k], want, tol)
        stats = sub.get("statistics")
        if isinstance(stats, dict):
            losses, bpbs = [r.val_loss for r in runs], [r.val_bpb for r in runs]
            sl, sb = sample_std(losses), sample_std(bpbs)
            for k, want in (("n_seeds", len(runs)), ("val_loss_mean", round(mean(losses), 8)),
                            ("val_bpb_mean", round(mean(bpbs), 8)),
                            ("val_loss_std", None if sl is None else round(sl, 8)),
                            ("val_bpb_std", None if sb is None else round(sb, 8))):
                if k in stats:
                    _compare(problems, f"statistics.{k}", stats[k], want, 1e-8)
    return problems, warnings


def _compare(problems: list[str], key: str, got, want, tol: float) -> None:
    if want is None or got is None:
        if got != want:
            problems.append(f"submission.json {key} is {got!r} but the logs say {want!r}")
        return
    if not isinstance(got, (int, float)) or isinstance(got, bool) or abs(got - want) > tol:
        problems.append(f"submission.json {key} is {got!r} but the logs say {want!r}")


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build, test and check challenge record folders from train_gpt.py logs.")
    sp = ap.add_subparsers(dest="cmd", required=True)
    n = sp.add_parser("new", help="create records/<track>/<date>_<name>/ from one log per seed")
    n.add_argument("logs", nargs="+", help="train_gpt.py logs (logs/<RUN_ID>.txt), one per seed")
    n.add_argument("--track", required=True, choices=TRACKS)
    n.add_argument("--name", required=True, help="short name, used in the folder name")
    n.add_argument("--author", required=True)
    n.add_argument("--github-id", required=True)
    n.add_argument("--blurb", default="", help="one paragraph: what is new")
    n.add_argument("--date", default=None, help="YYYY-MM-DD (default today)")
    n.add_argument("--replace", action="store_true", help="overwrite an existing folder")
    n.add_argument("--root", default=str(REPO / "records"), help="records directory (default: %(default)s)")
    n.add_argument("--against", default=None,
                   help="also store a significance test against a val_loss number or a record folder")
    n.add_argument("--json", action="store_true", help="print the submission.json written")
    s = sp.add_parser("significance", help="one-sided t-test: does the record beat a baseline by >= delta nats?")
    s.add_argument("record", help="record folder (its logs give the per-seed values)")
    s.add_argument("--against", required=True, help="baseline: a number (mean val_loss) or another record folder")
    s.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="required improvement (default %(default)s)")
    s.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level (default %(default)s)")
    s.add_argument("--metric", default="val_loss", choices=("val_loss", "val_bpb"))
    s.add_argument("--json", action="store_true")
    c = sp.add_parser("check", help="validate a record folder against its logs")
    c.add_argument("record")
    c.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "new":
            dest = new_record(args.logs, track=args.track, name=args.name, author=args.author,
                              github_id=args.github_id, blurb=args.blurb, date=args.date, replace=args.replace,
                              root=args.root, against=args.against)
            if args.json:
                print((dest / "submission.json").read_text().rstrip())
            else:
                sub = json.loads((dest / "submission.json").read_text())
                print(f"wrote {dest}: {sub['statistics']['n_seeds']} seed(s), val_bpb {sub['val_bpb']:.8f}, "
                      f"val_loss {sub['val_loss']:.8f}, bytes_total {sub['bytes_total']}")
            return 0
        if args.cmd == "significance":
            vals = record_values(args.record, args.metric)
            res = compute_significance(vals, args.against, args.delta, args.alpha, args.metric)
            if args.json:
                print(json.dumps(res))
            else:
                p = "n/a (needs >= 2 seeds on each side)" if res["p_value"] is None else f"{res['p_value']:.4g}"
                t = "n/a" if res["t"] is None else f"{res['t']:.4f}"
                df = "n/a" if res["df"] is None else f"{res['df']:.2f}"
                print(f"{res['test']}: n={res['n']} mean {args.metric} {res['mean']:.8f}; "
                      f"mean improvement {res['mean_improvement']:.6f} vs {args.against}")
                print(f"H1: improvement >= {res['delta']}  t={t} df={df} p={p}  alpha={res['alpha']}")
                print(f"verdict: {res['verdict']}")
            return 0
        if args.cmd == "check":
            problems, warnings = check_record(args.record)
            if args.json:
                print(json.dumps({"ok": not problems, "problems": problems, "warnings": warnings}))
            else:
                for w in warnings:
                    print(f"warning: {w}")
                for p in problems:
                    print(f"problem: {p}")
                print(f"{args.record}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
            return 1 if problems else 0
    except (RecordError, LogError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
