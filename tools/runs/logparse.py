"""Parse train_gpt.py logs (logs/<RUN_ID>.txt) and json summaries (logs/<RUN_ID>.json).

One parser for every command that reads a log (records, sweeps, plots, the topology study), with no torch import and
nothing executed. The log's shapes are the challenge's (the design notes' "Formats"): the script's source between two
marker lines, `hparam NAME=VALUE` lines, a hardware line, `step:S/N ...` lines, `artifact scheme:`, the size lines and the final round-trip lines, and an
`OVER BUDGET` line last when the run is over its cap. A log without the final `final_int8_zlib_roundtrip_exact` line is
*unfinished*: `RunLog.finished` is False and `require_finished` raises. `consistency_problems(run)` lists every way a
finished log contradicts itself (sizes that do not add up, a final line twice, non-finite figures, ...).

    python -m tools logparse LOG [--json]      # print what the parser sees

Library use:
    run = parse_log(path)            # RunLog; raises ToolError on a malformed log
    run.finished, run.seed, run.val_loss, run.val_bpb, run.bytes_total, run.source, run.hparams ...
    problems = consistency_problems(run)   # [] for a log that agrees with itself
    summary = load_summary(path)     # dict from logs/<RUN_ID>.json, keys checked, non-finite numbers refused
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools import common as C
from tools.common import ToolError

SOURCE_BEGIN_RE = re.compile(rb"^===== train_gpt\.py source begin \((\d+) bytes\) =====\r?\n", re.M)
SOURCE_END = b"===== train_gpt.py source end ====="
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf"
_KV_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_/]*):(\S+)")
_STEP_RE = re.compile(r"^step:(\d+)/(\d+)\s")
_CODE_RE = re.compile(r"^Code size:\s*(\d+) bytes")
_MODEL_RE = re.compile(r"^Serialized model(?: (\S+))?:\s*(\d+) bytes")
_TOTAL_RE = re.compile(r"^Total submission size(?: (\S+))?:\s*(\d+) bytes(?: \(margin to (\d+): (-?\d+) bytes\))?")
_FINAL_RE = re.compile(r"^final_int8_zlib_roundtrip(_exact)?\s+(.*)$")
_MODEL_PARAMS_RE = re.compile(r"^model_params:\s*(\d+)")
_SCHEME_RE = re.compile(r"^artifact scheme: (\S+) file: (.*)$")
_DATA_RE = re.compile(r"^data: train_shards:(\d+) train_tokens:(\d+) val_tokens:(\d+) tokenizer:(.*)$")
_CALIBRATION_RE = re.compile(r"train_time with calibration: ([0-9.]+)ms")
# what a finished run's logs/<RUN_ID>.json always holds (an EVAL_ARTIFACT run has no training figures)
SUMMARY_KEYS = ("run_id", "val_loss", "val_bpb", "bytes_code", "bytes_model", "bytes_total", "hparams", "hardware",
                "artifact", "artifact_scheme")
# lines that a finished log holds exactly once
ONCE = ("code", "model", "total", "final", "final_exact", "artifact_scheme")


@dataclass
class TrainPoint:
    step: int
    total: int
    train_loss: float
    train_time_ms: float | None = None
    step_avg_ms: float | None = None
    tok_s: float | None = None


@dataclass
class ValPoint:
    step: int
    total: int
    val_loss: float
    val_bpb: float
    train_time_ms: float | None = None
    step_avg_ms: float | None = None


@dataclass
class RunLog:
    path: str | None = None
    source: bytes | None = None          # exact bytes of train_gpt.py as logged
    source_declared_bytes: int | None = None
    hparams: dict[str, str] = field(default_factory=dict)
    hardware: str | None = None          # the hardware line without its "hardware:" prefix
    model_params: int | None = None
    train: list[TrainPoint] = field(default_factory=list)
    val: list[ValPoint] = field(default_factory=list)
    peak_memory: str | None = None
    bytes_code: int | None = None
    bytes_model: int | None = None
    bytes_total: int | None = None
    model_format: str | None = None      # e.g. "int8-emb8-bigram8+zlib"
    total_format: str | None = None
    roundtrip_val_loss: float | None = None
    roundtrip_val_bpb: float | None = None
    roundtrip_eval_time_ms: float | None = None
    exact_val_loss: float | None = None  # final_int8_zlib_roundtrip_exact (8 decimals): the score
    exact_val_bpb: float | None = None
    over_budget: bool = False
    over_budget_last: bool = True        # the OVER BUDGET line, when present, is the log's last line
    world_size_logged: int | None = None  # from the `world_size:N grad_accum_steps:...` line
    total_cap: int | None = None         # "(margin to CAP: M bytes)" of the Total line
    total_margin: int | None = None
    artifact_scheme: str | None = None   # "artifact scheme: SPEC file: PATH"
    artifact_file: str | None = None
    calibration_train_time_ms: float | None = None  # "train_time with calibration: Tms" (training + GPTQ statistics)
    data_train_tokens: int | None = None
    data_val_tokens: int | None = None   # the validation tokens the run scored (62,021,846 for the published FineWeb)
    data_tokenizer: str | None = None
    precision: str | None = None         # the "precision:... compile:... threads:..." line
    stopped_early: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # how often each once-only line appeared

    # ---- derived figures -------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.exact_val_loss is not None and self.exact_val_bpb is not None

    @property
    def val_loss(self) -> float | None:
        return self.exact_val_loss

    @property
    def val_bpb(self) -> float | None:
        return self.exact_val_bpb

    @property
    def seed(self) -> int | None:
        v = self.hparams.get("SEED")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    @property
    def run_id(self) -> str | None:
        return self.hparams.get("RUN_ID")

    @property
    def iterations(self) -> int | None:
        if "ITERATIONS" in self.hparams:
            try:
                return int(self.hparams["ITERATIONS"])
            except ValueError:
                pass
        pts = self.train or self.val
        return pts[-1].total if pts else None

    @property
    def steps(self) -> int | None:
        """Last step the log reports (train or val line)."""
        s = [p.step for p in self.train] + [p.step for p in self.val]
        return max(s) if s else None

    @property
    def train_time_ms(self) -> float | None:
        """Training time as the run counts it: the calibration line's total when there is one (GPTQ statistics read
        training data), else the last step line's."""
        if self.calibration_train_time_ms is not None:
            return self.calibration_train_time_ms
        pts = [(p.step, p.train_time_ms) for p in self.train + self.val if p.train_time_ms is not None]
        return max(pts)[1] if pts else None

    @property
    def eval_time_ms(self) -> float | None:
        return self.roundtrip_eval_time_ms

    @property
    def torch_version(self) -> str | None:
        m = re.search(r"\btorch:(\S+)", self.hardware or "")
        return m.group(1) if m else None

    @property
    def step_avg_ms(self) -> float | None:
        pts = [(p.step, p.step_avg_ms) for p in self.train + self.val if p.step_avg_ms is not None]
        return max(pts)[1] if pts else None

    @property
    def size_cap(self) -> int | None:
        """The cap the run checked itself against (SIZE_CAP_BYTES; the Total line's 'margin to CAP')."""
        if self.total_cap is not None:
            return self.total_cap
        try:
            return int(self.hparams["SIZE_CAP_BYTES"])
        except (KeyError, ValueError):
            return None

    @property
    def margin(self) -> int | None:
        return None if self.bytes_total is None or self.size_cap is None else self.size_cap - self.bytes_total

    @property
    def world_size(self) -> int | None:
        if self.world_size_logged is not None:
            return self.world_size_logged
        m = re.search(r"world_size:(\d+)|\bx(\d+)\b", self.hardware or "")
        return int(m.group(1) or m.group(2)) if m else None

    @property
    def device(self) -> str | None:
        """'cpu' or 'cuda', from the hardware line (`hardware: cpu ...` or `hardware: <GPU name> xN`)."""
        if not self.hardware:
            return None
        m = re.search(r"device:(\S+)", self.hardware)
        if m:
            return m.group(1)
        return "cpu" if self.hardware.split()[0].lower() == "cpu" else "cuda"

    def require_finished(self) -> "RunLog":
        if not self.finished:
            raise ToolError(f"{self.path}: unfinished log (no final_int8_zlib_roundtrip_exact line)")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["source_bytes"] = None if self.source is None else len(self.source)
        for k in ("finished", "seed", "run_id", "iterations", "steps", "train_time_ms", "eval_time_ms", "step_avg_ms",
                  "size_cap", "margin", "val_loss", "val_bpb", "world_size", "device", "torch_version"):
            d[k] = getattr(self, k)
        return d


def _num(s: str) -> float:
    s = s.rstrip(",;")
    for suffix in ("ms", "s"):
        if s.endswith(suffix) and s[: -len(suffix)].replace(".", "", 1).lstrip("-").isdigit():
            s = s[: -len(suffix)]
            break
    return float(s)


def _kv(text: str) -> dict[str, str]:
    return {k: v for k, v in _KV_RE.findall(text)}


def split_source(data: bytes, name: str = "log") -> tuple[bytes | None, int | None, bytes]:
    """Return (source bytes, declared size, the log with the source block removed).

    The block is `===== train_gpt.py source begin (B bytes) =====\\n` + B bytes + optional newline +
    `===== train_gpt.py source end =====`. Exactly B bytes are taken, so the source round-trips byte
    for byte whether or not it ends with a newline."""
    m = SOURCE_BEGIN_RE.search(data)
    if m is None:
        return None, None, data
    declared = int(m.group(1))
    start = m.end()
    src = data[start:start + declared]
    rest = data[start + declared:]
    if rest.startswith(b"\r\n"):
        rest = rest[2:]
    elif rest.startswith(b"\n"):
        rest = rest[1:]
    if not rest.startswith(SOURCE_END):
        if SOURCE_END not in data[start:]:
            raise ToolError(f"{name}: source block has no end marker")
        raise ToolError(f"{name}: source block length differs from the {declared} bytes its marker declares")
    after = rest[len(SOURCE_END):]
    return src, declared, data[:m.start()] + after


def parse_text(data: bytes | str, path: str | None = None) -> RunLog:
    if isinstance(data, str):
        data = data.encode("utf-8")
    name = path or "log"
    src, declared, rest = split_source(data, name)
    run = RunLog(path=path, source=src, source_declared_bytes=declared)
    last = ""
    for raw in rest.decode("utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        last = line
        try:
            _parse_line(run, line)
        except (ValueError, KeyError) as e:
            raise ToolError(f"{name}: cannot parse line {line[:80]!r} ({e})") from None
    run.over_budget_last = not run.over_budget or last.startswith("OVER BUDGET")
    return run


def _parse_line(run: RunLog, line: str) -> None:
    if line.startswith("hparam "):
        body = line[len("hparam "):]
        k, eq, v = body.partition("=")
        if not eq:
            raise ValueError("hparam line without '='")
        run.hparams[k.strip()] = v
        return
    if line.startswith("hardware:"):
        run.hardware = line[len("hardware:"):].strip()
        return
    m = _STEP_RE.match(line)
    if m:
        step, total = int(m.group(1)), int(m.group(2))
        kv = _kv(line[m.end():])
        t = _num(kv["train_time"]) if "train_time" in kv else None
        avg = _num(kv["step_avg"]) if "step_avg" in kv else None
        if "val_loss" in kv:
            run.val.append(ValPoint(step, total, _num(kv["val_loss"]), _num(kv["val_bpb"]), t, avg))
        elif "train_loss" in kv:
            tok = _num(kv["tok/s"]) if "tok/s" in kv else None
            run.train.append(TrainPoint(step, total, _num(kv["train_loss"]), t, avg, tok))
        return
    m = _FINAL_RE.match(line)
    if m:
        kv = _kv(m.group(2))
        if m.group(1):
            _count(run, "final_exact")
            run.exact_val_loss, run.exact_val_bpb = _num(kv["val_loss"]), _num(kv["val_bpb"])
        else:
            _count(run, "final")
            run.roundtrip_val_loss, run.roundtrip_val_bpb = _num(kv["val_loss"]), _num(kv["val_bpb"])
            if "eval_time" in kv:
                run.roundtrip_eval_time_ms = _num(kv["eval_time"])
        return
    m = _CODE_RE.match(line)
    if m:
        _count(run, "code")
        run.bytes_code = int(m.group(1))
        return
    m = _TOTAL_RE.match(line)
    if m:
        _count(run, "total")
        run.bytes_total = int(m.group(2))
        run.total_format = m.group(1)
        if m.group(3) is not None:
            run.total_cap, run.total_margin = int(m.group(3)), int(m.group(4))
        return
    m = _MODEL_RE.match(line)
    if m:
        if m.group(1):  # "Serialized model int8+zlib: B bytes" (the raw "Serialized model: B" is ignored)
            _count(run, "model")
            run.model_format, run.bytes_model = m.group(1), int(m.group(2))
        return
    m = _SCHEME_RE.match(line)
    if m:
        _count(run, "artifact_scheme")
        run.artifact_scheme, run.artifact_file = m.group(1), m.group(2).strip()
        return
    m = _DATA_RE.match(line)
    if m:
        run.data_train_tokens, run.data_val_tokens, run.data_tokenizer = int(m.group(2)), int(m.group(3)), m.group(4).strip()
        return
    if line.startswith("calibration:"):
        m = _CALIBRATION_RE.search(line)
        if m:
            run.calibration_train_time_ms = float(m.group(1))
        return
    if line.startswith("precision:"):
        run.precision = line
        return
    if line.startswith("stopping_early:"):
        run.stopped_early = True
        return
    m = re.match(r"^world_size:(\d+)\s", line)
    if m:
        run.world_size_logged = int(m.group(1))
        return
    m = _MODEL_PARAMS_RE.match(line)
    if m:
        run.model_params = int(m.group(1))
        return
    if line.startswith("peak memory"):
        run.peak_memory = line.partition(":")[2].strip()
        return
    if line.startswith("OVER BUDGET"):
        _count(run, "over_budget")
        run.over_budget = True


def _count(run: RunLog, kind: str) -> None:
    run.counts[kind] = run.counts.get(kind, 0) + 1


def _finite(x) -> bool:
    return x is None or math.isfinite(x)


def consistency_problems(run: RunLog) -> list[str]:
    """Every way a finished log contradicts itself (empty list: it agrees with itself). The figures a record is
    built from must be there once each, be finite, and add up: code + model = total, the Total line's margin is its
    cap minus the total, an OVER BUDGET line (last) exactly when the total exceeds that cap, the code size is the
    embedded source's, and the 4-decimal final line is the 8-decimal one rounded."""
    name, out = run.path or "log", []
    if not run.finished:
        return [f"{name}: no final round-trip line (final_int8_zlib_roundtrip_exact): unfinished run"]
    for kind in ONCE:
        n = run.counts.get(kind, 0)
        if n != 1:
            label = {"code": "Code size", "model": "Serialized model", "total": "Total submission size",
                     "final": "final_int8_zlib_roundtrip", "final_exact": "final_int8_zlib_roundtrip_exact",
                     "artifact_scheme": "artifact scheme"}[kind]
            out.append(f"{name}: {n} '{label}' lines (a finished log has exactly one)")
    for label, value in (("final val_loss", run.exact_val_loss), ("final val_bpb", run.exact_val_bpb),
                         ("round-trip val_loss", run.roundtrip_val_loss), ("round-trip val_bpb", run.roundtrip_val_bpb),
                         ("eval_time", run.roundtrip_eval_time_ms)):
        if not _finite(value):
            out.append(f"{name}: {label} is {value}, not a finite number")
    if any(not (_finite(p.val_loss) and _finite(p.val_bpb)) for p in run.val):
        out.append(f"{name}: a validation line holds a non-finite loss")
    if run.source is None:
        out.append(f"{name}: no train_gpt.py source block")
    elif run.bytes_code is not None and run.bytes_code != len(run.source):
        out.append(f"{name}: Code size {run.bytes_code} bytes is not the {len(run.source)} bytes of the embedded source")
    if None not in (run.bytes_code, run.bytes_model, run.bytes_total) and run.bytes_code + run.bytes_model != run.bytes_total:
        out.append(f"{name}: Total submission size {run.bytes_total} is not Code size {run.bytes_code} + "
                   f"Serialized model {run.bytes_model} = {run.bytes_code + run.bytes_model}")
    if run.bytes_total is not None and run.total_cap is None:
        out.append(f"{name}: the Total submission size line does not state its cap ('margin to CAP: M bytes')")
    if run.total_cap is not None and run.bytes_total is not None:
        if run.total_margin != run.total_cap - run.bytes_total:
            out.append(f"{name}: the Total line's margin {run.total_margin} is not {run.total_cap} - {run.bytes_total}")
        over = run.bytes_total > run.total_cap
        if over != run.over_budget:
            out.append(f"{name}: total {run.bytes_total} bytes against the cap {run.total_cap}, "
                       + ("but no OVER BUDGET line" if over else "yet the log says OVER BUDGET"))
        declared = run.hparams.get("SIZE_CAP_BYTES")
        if declared is not None and declared != str(run.total_cap):
            out.append(f"{name}: hparam SIZE_CAP_BYTES={declared} but the Total line measures against {run.total_cap}")
    if run.over_budget and not run.over_budget_last:
        out.append(f"{name}: lines follow the OVER BUDGET line (it is the last line a run writes)")
    formats = {f for f in (run.model_format, run.total_format, run.artifact_scheme) if f is not None}
    if len(formats) > 1:
        out.append(f"{name}: the scheme differs between the size lines: {', '.join(sorted(formats))}")
    for exact, rounded, label in ((run.exact_val_loss, run.roundtrip_val_loss, "val_loss"),
                                  (run.exact_val_bpb, run.roundtrip_val_bpb, "val_bpb")):
        if None not in (exact, rounded) and _finite(exact) and _finite(rounded) and abs(round(exact, 4) - rounded) > 6e-5:
            out.append(f"{name}: final {label} {rounded} is not the exact {exact} rounded")
    return out


def parse_log(path: str | Path) -> RunLog:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ToolError(f"{p}: cannot read log ({e.strerror})") from None
    return parse_text(data, str(p))


def is_log(path: str | Path, head: int = 1 << 16) -> bool:
    """True when the file looks like a train_gpt.py log (source marker or step/hparam lines near the top)."""
    try:
        with open(path, "rb") as f:
            chunk = f.read(head)
    except OSError:
        return False
    return bool(SOURCE_BEGIN_RE.search(chunk)) or chunk.startswith(b"hparam ")


def summary_path_for(log_path: str | Path) -> Path:
    p = Path(log_path)
    return p.with_suffix(".json")


def load_summary(path: str | Path) -> dict:
    p = Path(path)
    d = C.read_json(p, "summary")
    if not isinstance(d, dict):
        raise ToolError(f"{p}: summary is not a JSON object")
    missing = [k for k in SUMMARY_KEYS if k not in d]
    if missing:
        raise ToolError(f"{p}: summary lacks {', '.join(missing)}")
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Show what the golf log parser reads from train_gpt.py logs.")
    ap.add_argument("logs", nargs="+", help="log files (logs/<RUN_ID>.txt)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per log")
    args = ap.parse_args(argv)
    for path in args.logs:
        run = parse_log(path)
        if args.json:
            print(json.dumps(run.to_dict()))
        else:
            state = "finished" if run.finished else "UNFINISHED"
            print(f"{path}: {state} seed={run.seed} steps={run.steps}/{run.iterations} "
                  f"val_loss={run.val_loss} val_bpb={run.val_bpb} bytes_total={run.bytes_total} "
                  f"source={'none' if run.source is None else len(run.source)} hparams={len(run.hparams)}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
