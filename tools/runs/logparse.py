"""Parse train_gpt.py logs (logs/<RUN_ID>.txt) and json summaries (logs/<RUN_ID>.json), golf's and the challenge's.

One parser for every command that reads a log (records, audits, sweeps, plots, the topology study), with no torch
import and nothing executed. The log's shapes are the challenge's (the design notes' "Formats"): the script's source
between two marker lines, `hparam NAME=VALUE` lines, a hardware line, `step:S/N ...` lines, `artifact scheme:`, the
size lines and the final round-trip lines, and an `OVER BUDGET` line last when the run is over its cap. A log without
the final `final_int8_zlib_roundtrip_exact` line is *unfinished*: `RunLog.finished` is False and `require_finished`
raises. `consistency_problems(run)` lists every way a finished log contradicts itself (sizes that do not add up, a
final line twice, a setting given twice, non-finite figures, ...).

The challenge's published record folders log in many more shapes, and `parse_text(..., strict=False)` reads them
too (a line it cannot read is skipped, never an error): the source printed above a line of `=` (after a
`Hyperparameters:` dump or torchrun's warnings), epoch timestamps and `[rankN]:` prefixes, `N/M val_loss: X` steps,
`train_time: 0.8m`, `Code size (compressed)` and `(uncompressed)`, a `Total submission size` without a scheme after
a scheme's model line, `budget:T/CAP`, every evaluation line `<label> val_loss:X val_bpb:Y [eval_time:Tms]`
(`RunLog.evals`: final_sliding_window_exact, quantized_ttt_phased, legal_ttt_exact, ...), `total_eval_time:`, TTT
durations, `val_tokens:` and `val_loader:... tokens:N`, `seed:N`, `world_size`, nvidia-smi's GPU rows, the stop line
and the GPTQ calibration logged after it.

    python -m tools logparse LOG [--json]      # print what the parser sees

Library use:
    run = parse_log(path)            # RunLog; raises ToolError on a malformed log
    run = parse_log(path, strict=False)   # any log of the challenge's records: skips what it cannot read
    run.finished, run.seed, run.val_loss, run.val_bpb, run.bytes_total, run.source, run.hparams, run.evals ...
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
_KV_SPACE_RE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_/]*): +(?=[-+.\d])")  # "val_loss: 2.54" -> "val_loss:2.54"
_STEP_RE = re.compile(r"^(?:step:)?(\d+)/(\d+)\s")  # golf's "step:S/N ...", and "S/N val_loss: ..." of later records
_CODE_RE = re.compile(r"^Code size(?: \((compressed|uncompressed)\))?:\s*(\d+) bytes")
_MODEL_RE = re.compile(r"^Serialized model(?: (\S+))?:\s*(\d+) bytes")
_TOTAL_RE = re.compile(r"^Total submission size(?: (\S+))?:\s*(\d+) bytes(?: \(margin to (\d+): (-?\d+) bytes\))?")
_BUDGET_RE = re.compile(r"^budget:(\d+)/(\d+)\b")  # the ternary/binary records: "budget:15993853/16000000 (...) FITS"
_ARTIFACT_CODE_RE = re.compile(r"^artifact:\S+ .*\bcode:(\d+)\b")
_MODEL_AND_TOTAL_RE = re.compile(r"^(\S+) model: (\d+) bytes \| Total submission: (\d+) bytes")
_MODEL_PARAMS_RE = re.compile(r"^model_params:\s*(\d+)")
_SCHEME_RE = re.compile(r"^artifact scheme: (\S+) file: (.*)$")
_DATA_RE = re.compile(r"^data: train_shards:(\d+) train_tokens:(\d+) val_tokens:(\d+) tokenizer:(.*)$")
_VAL_TOKENS_RE = re.compile(r"^(?:val_loader:shards pattern=\S+ tokens:|val_tokens:)(\d+)$")
_CALIBRATION_RE = re.compile(r"train_time with calibration: ([0-9.]+)ms")
_CALIBRATION_WORDS_RE = re.compile(r"hessian|calibrat|generat|gptq:done")  # GPTQ lines that time a calibration
_IN_SECONDS_RE = re.compile(r"\bin ([0-9.]+)s\b")
_TTT_TIME_RE = re.compile(r"^ttt\S*:(?:done|completed)\b.*?(?:elapsed=|time:)([0-9.]+s)\b")
_GPU_ROW_RE = re.compile(r"^\|\s*(\d+)\s+(NVIDIA [^|]*?)\s+(?:On|Off)\s*\|")  # a GPU row of nvidia-smi's table
_PARAMS_LINE_RE = re.compile(r"^params:\d+ .*\bws:(\d+)\b.*\bs:(\d+)\b")  # "params:N L:10 d:768 ... ws:8 ga:1 s:42"
_DUMP_ITEM_RE = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$")  # "  seed: 1337" under "Hyperparameters:"
_DIAGNOSTIC_RE = re.compile(r"diagnostic|pre[-_ ]?quant|post[-_ ]ema", re.I)
# prefixes some launchers put on every line: an epoch timestamp, torchrun's rank tag
_LINE_PREFIX_RE = re.compile(r"^(?:\d{9,11}\.\d{1,6} |\[rank\d+\]:)")
_SEPARATOR_RE = re.compile(r"^={40,}\s*$")
NEW_RUN = "\x00new run"  # put where a later run printed its source again (several runs appended to one log)
_CODE_LINE_RE = re.compile(r"^(?:import \w|from \S+ import |def \w|class \w)")
_CODE_START_RE = re.compile(r"^(?:\"|'|#|import \w|from \S+ import )")
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
class EvalResult:
    """One evaluation line after training: `<label> val_loss:X val_bpb:Y [eval_time:Tms]` (not a step line)."""
    label: str                 # e.g. final_int8_zlib_roundtrip_exact, final_sliding_window_exact, quantized_ttt_phased
    val_loss: float
    val_bpb: float
    eval_time_ms: float | None
    diagnostic: bool           # labelled diagnostic, pre-quantization or post-EMA: not a score


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
    # the shapes of the challenge's own records (read by record audit)
    source_form: str | None = None       # "marked" (golf's markers) or "printed" (the source above a line of '=')
    bytes_code_compressed: int | None = None    # "Code size (compressed): B bytes"
    bytes_code_uncompressed: int | None = None  # "Code size (uncompressed): B bytes"
    evals: list[EvalResult] = field(default_factory=list)
    total_eval_time_ms: float | None = None     # "total_eval_time:338.2s"
    ttt_time_ms: float | None = None            # "ttt_sliding:done ... elapsed=409.8s", "ttt:completed ... time:76.2s"
    stop_train_time_ms: float | None = None     # the stopping_early line's train_time
    calibration_after_ms: float | None = None   # longest GPTQ calibration timed after the stop line
    calibration_self_generated: bool = False    # the calibration data was generated by the model (no training data)
    post_gptq_total_ms: float | None = None     # "wallclock:post_gptq total_elapsed:858.2s"
    gptq_reserve_ms: float | None = None        # "gptq:reserving 14000ms from training budget"
    gpus: dict[str, str] = field(default_factory=dict)  # nvidia-smi's rows: index -> GPU name
    settings_seen: dict[str, list[str]] = field(default_factory=dict)  # "hparam SEED" -> every value given, in order
    skipped_lines: int = 0                      # lines a lenient parse could not read
    runs_in_log: int = 1                        # runs appended to this one log (their printed sources tell)

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
        training data), else the last step line's, or the stop line's when that is later (the last steps of some
        records log minutes, or no time at all)."""
        if self.calibration_train_time_ms is not None:
            return self.calibration_train_time_ms
        pts = [(p.step, p.train_time_ms) for p in self.train + self.val if p.train_time_ms is not None]
        times = [t for t in (max(pts)[1] if pts else None, self.stop_train_time_ms) if t is not None]
        return max(times) if times else None

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
        if (self.hparams.get("WORLD_SIZE") or "").isdecimal():  # a Hyperparameters dump's "world_size: 8"
            return int(self.hparams["WORLD_SIZE"])
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
        if s.endswith(suffix) and s[: -len(suffix)].replace(".", "", 1).lstrip("-").isdecimal():
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


def split_printed_source(lines: list[str]) -> tuple[str | None, list[str]]:
    """The challenge's scripts print their own source and then a line of '=' (above the source: nothing, a
    `Hyperparameters:` dump, torchrun's warnings or a launcher's settings). Returns (the last such source, the other
    lines, without any printed source: a log that several runs appended to prints one per run, and NEW_RUN marks where
    each later run starts); (None, lines) when no stretch of the log between two such lines reads as Python."""
    source, kept, start = None, [], 0
    for end in [i for i, line in enumerate(lines) if _SEPARATOR_RE.match(line)] + [len(lines)]:
        segment = lines[start:end]
        first = next((i for i, line in enumerate(segment) if _CODE_START_RE.match(line)), None)
        if end < len(lines) and first is not None and sum(1 for line in segment if _CODE_LINE_RE.match(line)) >= 3:
            segment = segment[:first] + ([NEW_RUN] if source is not None else [])
            source = "\n".join(lines[start + first:end]).strip("\n") + "\n"  # the last run's: its figures are kept
        kept += segment + lines[end:end + 1]
        start = end + 1
    return source, kept


def parse_text(data: bytes | str, path: str | None = None, strict: bool = True) -> RunLog:
    """The RunLog of a log's text. strict (golf's own logs): a line that starts like a known line but does not parse
    is a ToolError. strict=False (any record's log): such lines are counted in `skipped_lines` and the challenge's
    launcher prefixes and printed source are understood."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    name = path or "log"
    try:
        src, declared, rest = split_source(data, name)
    except ToolError:
        if strict:
            raise
        src, declared, rest = None, None, data
    run = RunLog(path=path, source=src, source_declared_bytes=declared, source_form=None if src is None else "marked")
    lines = rest.decode("utf-8", errors="replace").splitlines()
    if not strict:
        lines = [_LINE_PREFIX_RE.sub("", line) for line in lines]
        if src is None:
            printed, lines = split_printed_source(lines)
            if printed is not None:
                run.source, run.source_form = printed.encode("utf-8"), "printed"
    last, in_dump = "", False
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if raw == NEW_RUN:
            _new_run(run)
            continue
        last = line
        in_dump = line in ("Hyperparameters:", "hyperparameters:") or (in_dump and raw[:1].isspace())
        try:
            if in_dump and raw[:1].isspace():
                _dump_item(run, raw)
            else:
                _parse_line(run, line)
        except (ValueError, KeyError, IndexError) as e:
            if strict:
                raise ToolError(f"{name}: cannot parse line {line[:80]!r} ({e})") from None
            run.skipped_lines += 1
    run.over_budget_last = not run.over_budget or last.startswith("OVER BUDGET")
    return run


def _new_run(run: RunLog) -> None:
    """A later run appended to the same log: its figures replace the earlier run's (settings stay, so a setting
    given again shows the concatenation)."""
    run.runs_in_log += 1
    run.evals, run.train, run.val, run.gpus = [], [], [], {}
    run.stopped_early, run.stop_train_time_ms, run.calibration_after_ms = False, None, None
    run.total_eval_time_ms = run.ttt_time_ms = run.post_gptq_total_ms = None


def _setting(run: RunLog, shown: str, name: str, value: str) -> None:
    """A setting as the log states it. `shown` is how the line names it ("hparam SEED", "seed:"): the same line
    twice is a contradiction (logs concatenated or edited); `name` is its key in run.hparams (the later value wins)."""
    run.settings_seen.setdefault(shown, []).append(value)
    run.hparams[name] = value


def _dump_item(run: RunLog, raw: str) -> None:
    m = _DUMP_ITEM_RE.match(raw)
    if m is None:
        raise ValueError("not a 'name: value' line of the Hyperparameters dump")
    _setting(run, f"Hyperparameters: {m.group(1)}", m.group(1).upper(), (m.group(2) or "").strip())


def _ms(value: str) -> float:
    """A duration as logged ("600038ms", "409.8s", "0.8m", "1234") in milliseconds (a bare number is ms)."""
    value = value.rstrip(",;")
    for suffix, scale in (("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "", 1).isdecimal():
            return float(value[: -len(suffix)]) * scale
    return float(value)


def _parse_line(run: RunLog, line: str) -> None:
    for handler in _LINE_HANDLERS:
        if handler(run, line):
            return


def _line_setting(run: RunLog, line: str) -> bool:
    if line.startswith("hparam "):
        k, eq, v = line[len("hparam "):].partition("=")
        if not eq:
            raise ValueError("hparam line without '='")
        _setting(run, f"hparam {k.strip()}", k.strip(), v)
        return True
    m = re.fullmatch(r"seed:\s*(\d+)", line)
    if m:
        _setting(run, "seed:", "SEED", m.group(1))
        return True
    m = _PARAMS_LINE_RE.match(line)
    if m:
        run.world_size_logged = int(m.group(1))
        _setting(run, "params line s:", "SEED", m.group(2))
        return True
    return False


def _line_hardware(run: RunLog, line: str) -> bool:
    if line.startswith("hardware:"):
        run.hardware = line[len("hardware:"):].strip()
        return True
    m = _GPU_ROW_RE.match(line)
    if m:
        run.gpus[m.group(1)] = m.group(2).strip()
        return True
    m = re.match(r"^world_size:\s*(\d+)(?:\s|$)", line)
    if m:
        run.world_size_logged = int(m.group(1))
        return True
    return False


def _line_step(run: RunLog, line: str) -> bool:
    m = _STEP_RE.match(line)
    if not m:
        return False
    step, total = int(m.group(1)), int(m.group(2))
    kv = _kv(_KV_SPACE_RE.sub(r"\1:", line[m.end():]))
    t = _ms(kv.get("train_time", kv.get("t", ""))) if ("train_time" in kv or "t" in kv) else None
    avg = _ms(kv.get("step_avg", kv.get("avg", ""))) if ("step_avg" in kv or "avg" in kv) else None
    if "val_loss" in kv:
        run.val.append(ValPoint(step, total, _num(kv["val_loss"]), _num(kv["val_bpb"]), t, avg))
    elif "train_loss" in kv or "loss" in kv:
        tok = _num(kv["tok/s"]) if "tok/s" in kv else None
        run.train.append(TrainPoint(step, total, _num(kv.get("train_loss", kv.get("loss"))), t, avg, tok))
    return True


def _line_eval(run: RunLog, line: str) -> bool:
    """Every evaluation line; golf's (and the baseline's) two final lines also fill the score fields."""
    norm = _KV_SPACE_RE.sub(r"\1:", line)
    at = norm.find("val_loss:")
    if at < 0 or "val_bpb:" not in norm[at:]:
        return False
    label, kv = norm[:at].strip(), _kv(norm[at:])
    if not label:
        return False
    when = kv.get("eval_time", kv.get("time"))
    result = EvalResult(label, _num(kv["val_loss"]), _num(kv["val_bpb"]), None if when is None else _ms(when),
                        bool(_DIAGNOSTIC_RE.search(label)))
    if label == "final_int8_zlib_roundtrip_exact":
        _count(run, "final_exact")
        run.exact_val_loss, run.exact_val_bpb = result.val_loss, result.val_bpb
    elif label == "final_int8_zlib_roundtrip":
        _count(run, "final")
        run.roundtrip_val_loss, run.roundtrip_val_bpb = result.val_loss, result.val_bpb
        run.roundtrip_eval_time_ms = result.eval_time_ms
    run.evals.append(result)
    return True


def _line_sizes(run: RunLog, line: str) -> bool:
    m = _CODE_RE.match(line)
    if m:
        if m.group(1) is None:
            _count(run, "code")
            run.bytes_code = int(m.group(2))
        elif m.group(1) == "compressed":
            run.bytes_code_compressed = int(m.group(2))
        else:
            run.bytes_code_uncompressed = int(m.group(2))
        return True
    m = _TOTAL_RE.match(line)
    if m:
        # without a scheme it is the raw weights' total, unless a scheme's model line came first (some records)
        if m.group(1) or run.bytes_model is not None:
            _count(run, "total")
            run.bytes_total, run.total_format = int(m.group(2)), m.group(1)
            if m.group(3) is not None:
                run.total_cap, run.total_margin = int(m.group(3)), int(m.group(4))
        return True
    m = _MODEL_RE.match(line)
    if m:
        if m.group(1):  # "Serialized model int8+zlib: B bytes" (the raw "Serialized model: B" is ignored)
            _count(run, "model")
            run.model_format, run.bytes_model = m.group(1), int(m.group(2))
        return True
    return _line_other_sizes(run, line)


def _line_other_sizes(run: RunLog, line: str) -> bool:
    """The size lines of records that wrote their own: budget:T/CAP, artifact:... code:B, 'X model: B | Total: T'."""
    m = _BUDGET_RE.match(line)
    if m:
        run.bytes_total, run.total_cap = int(m.group(1)), int(m.group(2))
        return True
    m = _ARTIFACT_CODE_RE.match(line)
    if m:
        run.bytes_code = int(m.group(1))
        return True
    m = _MODEL_AND_TOTAL_RE.match(line)
    if m:
        run.model_format, run.bytes_model, run.bytes_total = m.group(1), int(m.group(2)), int(m.group(3))
        return True
    return False


def _line_times(run: RunLog, line: str) -> bool:
    if line.startswith("calibration:"):  # golf: training time with the GPTQ statistics, which read training data
        m = _CALIBRATION_RE.search(line)
        if m:
            run.calibration_train_time_ms = float(m.group(1))
        return True
    if line.startswith("stopping_early:"):
        run.stopped_early = True
        kv = _kv(_KV_SPACE_RE.sub(r"\1:", line))
        if "train_time" in kv:
            run.stop_train_time_ms = _ms(kv["train_time"])
        return True
    low = line.lower()
    if low.startswith("gptq"):
        _gptq_line(run, low)
        return True
    m = re.match(r"^wallclock:post_gptq total_elapsed:([0-9.]+s)", line)
    if m:
        run.post_gptq_total_ms = _ms(m.group(1))
        return True
    m = re.match(r"^total_eval_time:\s*(\S+)", line)
    if m:
        run.total_eval_time_ms = _ms(m.group(1))
        return True
    m = _TTT_TIME_RE.match(line)
    if m:
        run.ttt_time_ms = _ms(m.group(1))
        return True
    return False


def _gptq_line(run: RunLog, low: str) -> None:
    """GPTQ's lines: the time reserved from training, and each calibration step's duration after the stop line (a
    calibration that reads training data is training; the longest one logged is a lower bound of its cost)."""
    m = re.search(r"reserving ([0-9.]+)(ms|s)\b", low)
    if m:
        run.gptq_reserve_ms = float(m.group(1)) * (1.0 if m.group(2) == "ms" else 1000.0)
    if "autoregressive" in low or "self-gen" in low:
        run.calibration_self_generated = True
    m = _IN_SECONDS_RE.search(low)
    if m and (run.stopped_early or run.train) and _CALIBRATION_WORDS_RE.search(low):
        run.calibration_after_ms = max(run.calibration_after_ms or 0.0, float(m.group(1)) * 1000.0)


def _line_data(run: RunLog, line: str) -> bool:
    m = _SCHEME_RE.match(line)
    if m:
        _count(run, "artifact_scheme")
        run.artifact_scheme, run.artifact_file = m.group(1), m.group(2).strip()
        return True
    m = _DATA_RE.match(line)
    if m:
        run.data_train_tokens, run.data_val_tokens, run.data_tokenizer = int(m.group(2)), int(m.group(3)), m.group(4).strip()
        return True
    m = _VAL_TOKENS_RE.match(_KV_SPACE_RE.sub(r"\1:", line))
    if m:
        run.data_val_tokens = int(m.group(1))
        return True
    return False


def _line_misc(run: RunLog, line: str) -> bool:
    if line.startswith("precision:"):
        run.precision = line
    elif (m := _MODEL_PARAMS_RE.match(line)) is not None:
        run.model_params = int(m.group(1))
    elif line.startswith("peak memory"):
        run.peak_memory = line.partition(":")[2].strip()
    elif line.startswith("OVER BUDGET"):
        _count(run, "over_budget")
        run.over_budget = True
    else:
        return False
    return True


_LINE_HANDLERS = (_line_setting, _line_hardware, _line_step, _line_eval, _line_sizes, _line_times, _line_data,
                  _line_misc)


def _count(run: RunLog, kind: str) -> None:
    run.counts[kind] = run.counts.get(kind, 0) + 1


def _finite(x) -> bool:
    return x is None or math.isfinite(x)


def consistency_problems(run: RunLog) -> list[str]:
    """Every way a finished log contradicts itself (empty list: it agrees with itself). The figures a record is
    built from must be there once each, be finite, and add up: code + model = total, the Total line's margin is its
    cap minus the total, an OVER BUDGET line (last) exactly when the total exceeds that cap, the code size is at most
    the embedded source's (equal, or its self-extracting form's), each setting is given once, and the 4-decimal
    final line is the 8-decimal one rounded."""
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
    for shown, values in run.settings_seen.items():
        if len(values) > 1:
            out.append(f"{name}: the setting '{shown}' is given {len(values)} times ({', '.join(values)}): a log states "
                       "each setting once (logs concatenated or edited?)")
    for label, value in (("final val_loss", run.exact_val_loss), ("final val_bpb", run.exact_val_bpb),
                         ("round-trip val_loss", run.roundtrip_val_loss), ("round-trip val_bpb", run.roundtrip_val_bpb),
                         ("eval_time", run.roundtrip_eval_time_ms)):
        if not _finite(value):
            out.append(f"{name}: {label} is {value}, not a finite number")
    if any(not (_finite(p.val_loss) and _finite(p.val_bpb)) for p in run.val):
        out.append(f"{name}: a validation line holds a non-finite loss")
    if run.source is None:
        out.append(f"{name}: no train_gpt.py source block")
    elif run.bytes_code is not None and run.bytes_code > len(run.source):
        # the embedded source's bytes, or fewer: a run that counts the compressed self-extracting form it ships
        out.append(f"{name}: Code size {run.bytes_code} bytes is more than the {len(run.source)} bytes of the embedded "
                   "source (it is the source's bytes, or those of its compressed self-extracting form)")
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


def parse_log(path: str | Path, strict: bool = True) -> RunLog:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ToolError(f"{p}: cannot read log ({e.strerror})") from None
    return parse_text(data, str(p), strict)


def is_log(path: str | Path, head: int = 1 << 16) -> bool:
    """True when the file looks like a train_gpt.py log (source marker or step/hparam lines near the top)."""
    try:
        with open(path, "rb") as f:
            chunk = f.read(head)
    except OSError:
        return False
    return bool(SOURCE_BEGIN_RE.search(chunk)) or chunk.startswith(b"hparam ")


def folder_logs(folder: Path) -> list[Path]:
    """The logs of a record folder golf wrote: those submission.json names (plain file names in the folder), else
    every file that looks like a train_gpt.py log. (record audit looks further: any log under any folder.)"""
    sub = folder / "submission.json"
    if sub.is_file():
        try:
            d = C.read_json(sub, "submission.json")
            names = [r.get("log") for r in (d.get("seed_results") or {}).values() if isinstance(r, dict)]
            if names and all(isinstance(n, str) and n and Path(n).name == n and n not in ("..", ".") for n in names):
                return [folder / n for n in names]
        except (ToolError, AttributeError):
            pass
    skip = {"train_gpt.py", "README.md", "submission.json", "requirements.txt"}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in skip and is_log(p))


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
    ap.add_argument("--lenient", action="store_true",
                    help="a log of any of the challenge's records: skip the lines it cannot read instead of refusing")
    args = ap.parse_args(argv)
    for path in args.logs:
        run = parse_log(path, strict=not args.lenient)
        if not (run.source or run.hparams or run.train or run.val or run.evals):
            raise ToolError(f"{path}: not a train_gpt.py log (no source block, hparam, step or final line)"
                            + (": a logs/<RUN_ID>.json summary is read with the log beside it" if path.endswith(".json") else ""))
        if args.json:
            print(json.dumps(run.to_dict()))
        else:
            state = "finished" if run.finished else "UNFINISHED"
            print(f"{path}: {state} seed={run.seed} steps={run.steps}/{run.iterations} "
                  f"val_loss={run.val_loss} val_bpb={run.val_bpb} bytes_total={run.bytes_total} "
                  f"source={'none' if run.source is None else len(run.source)} hparams={len(run.hparams)}"
                  + (f" evals={len(run.evals)} last={run.evals[-1].label}:{run.evals[-1].val_bpb}" if run.evals else ""))
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
