"""Hyperparameter sweeps of train_gpt.py: expand a TOML spec, run it resumably, tabulate, plot, or emit Slurm.

    python -m tools sweep run SPEC.toml [--launcher torchrun|python] [--nproc-per-node K]
                                        [--gpus 0,1,2,3 [--gpus-per-run G]] [--cpu-cores N --cores-per-run K]
                                        [--early-stop-margin M --early-stop-min-fraction F] [--dry-run]
    python -m tools sweep table SPEC.toml [--json]          # results.csv + results.md, sorted by val_bpb
    python -m tools sweep plot SPEC.toml [--top K | --runs a,b]
    python -m tools sweep slurm SPEC.toml [--out FILE] [--partition P] [--time HH:MM:SS] [--gpus-per-task G]
    python -m tools sweep run-one SPEC.toml --run NAME       # one run (what each Slurm array task calls)

Every run gets OUT_DIR=runs/<sweep>/<run>/ and RUN_ID=<run>, and a state file runs/<sweep>/<run>/state.json
(written atomically). Killing the driver and starting it again reruns only unfinished runs. Spec format and
details: docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import datetime as _dt
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import common as C
from common import ToolError
from tools.runs import logparse, plot_runs
from tools.runs.sweep_spec import (  # noqa: F401  (the spec's names, re-exported for the driver's users)
    MAX_NPROC_PER_NODE, MAX_RUNS, Run, Spec, expand_spec, load_spec, sample_random)

FINAL_STATES = ("done", "failed", "stopped_early")
OVER_BUDGET_EXIT = 3  # train_gpt.py's exit status for a finished run whose submission is over its cap
STDERR_TAIL = 3000


# --------------------------------------------------------------------------- state files

def sweep_dir(runs_dir: str | Path, spec: Spec) -> Path:
    return Path(runs_dir) / spec.name


def state_path(sdir: Path, name: str) -> Path:
    return sdir / name / "state.json"


STATUSES = ("running", "done", "failed", "stopped_early", "interrupted")
STATE_MAX_BYTES = 1 << 20  # a state file is about a kilobyte (the command, the figures, the tail of stderr)
STATE_TEXT_KEYS = ("reason", "error", "ended", "started")
RESULT_NUMBERS = ("val_bpb", "val_loss", "bytes_total", "margin", "steps", "step_avg_ms", "train_time_ms",
                  "last_val_bpb")


def check_state(st, where: str) -> dict:
    """A state.json's value with the types the driver and the table rely on; ToolError naming the file and key. The
    driver writes these files itself, atomically, so a bad one came from elsewhere (an edit, a copied folder)."""
    def bad(key: str, value, expected: str) -> ToolError:
        return ToolError(f"{where}: `{key}` is {C.json_kind(value)}, expected {expected}; remove the file to run that "
                         f"run again")
    if not isinstance(st, dict):
        raise bad("(the document)", st, "an object")
    if st.get("status") not in STATUSES:
        raise bad("status", st.get("status"), " or ".join(STATUSES))
    for k in STATE_TEXT_KEYS:
        if st.get(k) is not None and not isinstance(st[k], str):
            raise bad(k, st[k], "a string or null")
    attempts = st.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise bad("attempts", attempts, "an integer >= 0")
    result = st.get("result")
    if result is not None and not isinstance(result, dict):
        raise bad("result", result, "an object or null")
    for k in RESULT_NUMBERS:
        v = (result or {}).get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad(f"result.{k}", v, "a number or null")
    return st


def read_state(sdir: Path, name: str) -> dict | None:
    """A run's state (None before its first start); ToolError when the file is not one the driver wrote."""
    p = state_path(sdir, name)
    if not p.exists():
        return None
    return check_state(C.read_json(p, "sweep state", max_bytes=STATE_MAX_BYTES), str(p))


def write_state(sdir: Path, name: str, state: dict) -> None:
    C.atomic_write(state_path(sdir, name), json.dumps(state, indent=1))


def now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def log_path(run_dir: Path, name: str) -> Path:
    return run_dir / "logs" / f"{name}.txt"


def result_from_log(run_dir: Path, name: str) -> dict | None:
    """Figures of a finished run from its own files: logs/<RUN_ID>.json (the run's summary) and logs/<RUN_ID>.txt
    (None when the log is missing or unfinished). An over-budget run (exit status 3) is finished; its result says so."""
    try:
        r = logparse.parse_log(log_path(run_dir, name))
    except ToolError:
        return None
    if not r.finished:
        return None
    res = {"val_bpb": r.val_bpb, "val_loss": r.val_loss, "bytes_total": r.bytes_total, "margin": r.margin,
           "bytes_code": r.bytes_code, "bytes_model": r.bytes_model, "steps": r.steps, "iterations": r.iterations,
           "step_avg_ms": r.step_avg_ms, "train_time_ms": r.train_time_ms, "over_budget": r.over_budget,
           "artifact_scheme": r.artifact_scheme, "last_val_bpb": r.val[-1].val_bpb if r.val else None}
    summ = log_path(run_dir, name).with_suffix(".json")
    if summ.is_file():
        try:
            s = logparse.load_summary(summ)
        except ToolError:
            return res
        res.update({k: s.get(k) for k in ("val_bpb", "val_loss", "bytes_total", "bytes_code", "bytes_model",
                                           "train_time_ms", "eval_time_ms", "over_budget", "artifact_scheme",
                                           "pre_quant_val_bpb", "pre_quant_val_loss")})
        if isinstance(s.get("size_cap_bytes"), int) and isinstance(s.get("bytes_total"), int):
            res["margin"] = s["size_cap_bytes"] - s["bytes_total"]
        if isinstance(s.get("artifact"), str):  # relative to the run's OUT_DIR: models/<RUN_ID>.ptz
            res["artifact"] = str(run_dir / s["artifact"])
    return res


def _tail(path: Path, n: int = STDERR_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- commands and slots

def script_path(spec: Spec, override: str | None) -> str:
    return override or spec.script or str(C.TRAIN_GPT)


def build_command(launcher: str, nproc: int, script: str) -> list[str]:
    if launcher == "python":
        return [sys.executable, script]
    exe = shutil.which("torchrun")
    head = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    return head + ["--standalone", f"--nproc_per_node={nproc}", script]


def run_env(run: Run, run_dir: Path, slot: dict) -> dict[str, str]:
    """What the driver adds to its own environment for one run."""
    return {**run.env, **slot.get("env", {}), "OUT_DIR": str(run_dir.resolve()), "RUN_ID": run.name}


def make_slots(gpus: str | None, gpus_per_run: int, cpu_cores: int | None, cores_per_run: int | None) -> list[dict]:
    if gpus and cpu_cores:
        raise ToolError("give --gpus or --cpu-cores, not both")
    if gpus:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not ids or gpus_per_run < 1 or len(ids) < gpus_per_run:
            raise ToolError(f"--gpus {gpus!r} with --gpus-per-run {gpus_per_run}: not enough GPUs")
        return [{"label": f"gpu{','.join(ids[i:i + gpus_per_run])}",
                 "env": {"CUDA_VISIBLE_DEVICES": ",".join(ids[i:i + gpus_per_run])}}
                for i in range(0, len(ids) - gpus_per_run + 1, gpus_per_run)]
    if cpu_cores:
        k = cores_per_run or 1
        if k < 1 or cpu_cores < k:
            raise ToolError(f"--cpu-cores {cpu_cores} cannot hold --cores-per-run {k}")
        try:
            avail = sorted(os.sched_getaffinity(0))
        except AttributeError:
            avail = []
        slots = []
        for i in range(cpu_cores // k):
            cores = [avail[j % len(avail)] for j in range(i * k, (i + 1) * k)] if avail else []
            slots.append({"label": f"cpu{i}", "cores": cores,
                          "env": {"OMP_NUM_THREADS": str(k), "MKL_NUM_THREADS": str(k)}})
        return slots
    return [{"label": "default", "env": {}}]


def _child_setup(cores: list[int]):
    def fn():
        try:  # die with the driver, even when it is SIGKILLed (Linux)
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if cores:
            try:
                os.sched_setaffinity(0, cores)
            except (AttributeError, OSError):
                pass
    return fn


def fmt_command(env_add: dict[str, str], cmd: list[str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env_add.items()) + " " + shlex.join(cmd)


# --------------------------------------------------------------------------- early stop

def load_predictor(spec: str | None = None):
    """The early-stopping rule: tools/runs/early_stop.py's should_stop (a power-law fit of the validation curve), or
    the MODULE:FUNCTION `spec` names (a rule of your own, with the same arguments and return value)."""
    if spec is None:
        from tools.runs.early_stop import should_stop
        return should_stop
    import importlib
    mod_name, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod_name), fn or "should_stop")
    except (ImportError, AttributeError, ValueError) as e:
        raise ToolError(f"--predictor {spec}: {e}") from None


def log_prefix(run_dir: Path, run: Run) -> dict | None:
    """The run so far: what should_stop receives as `prefix`.

    steps/values/total_steps are the validation steps, their val_bpb (pre-quantization) and ITERATIONS, the
    dict form tools/runs/early_stop.py reads; val_history/train_history/hparams follow logs/<RUN_ID>.json."""
    try:
        r = logparse.parse_log(log_path(run_dir, run.name))
    except ToolError:
        return None
    return {"steps": [p.step for p in r.val], "values": [p.val_bpb for p in r.val], "total_steps": r.iterations or 0,
            "metric": "val_bpb", "last_step": r.steps, "run_id": run.name,
            "log_path": str(log_path(run_dir, run.name)), "run_dir": str(run_dir),
            "checkpoint_dir": str(run_dir / "checkpoints" / run.name), "hparams": r.hparams,
            "val_history": [{"step": p.step, "val_loss": p.val_loss, "val_bpb": p.val_bpb} for p in r.val],
            "train_history": [{"step": p.step, "train_loss": p.train_loss} for p in r.train]}


# --------------------------------------------------------------------------- driver

@dataclass
class Active:
    run: Run
    proc: subprocess.Popen
    slot: int
    run_dir: Path
    state: dict
    started: float
    last_check: float = 0.0
    stop_reason: str | None = None
    predicted: float | None = None


@dataclass
class Driver:
    spec: Spec
    runs_dir: Path
    launcher: str
    nproc: int
    script: str
    slots: list[dict]
    retry_failed: bool = False
    early_stop_margin: float | None = None
    early_stop_min_fraction: float = 0.3
    predictor: object = None
    poll_seconds: float = 1.0
    check_seconds: float = 5.0
    quiet: bool = False
    _stop_signal: int | None = field(default=None, init=False)

    @property
    def sdir(self) -> Path:
        return sweep_dir(self.runs_dir, self.spec)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    # ---- which runs still have to run
    def classify(self) -> tuple[list[Run], list[Run]]:
        todo, done = [], []
        for run in self.spec.runs:
            st = read_state(self.sdir, run.name)
            if st and st.get("status") in FINAL_STATES and not (self.retry_failed and st["status"] == "failed"):
                done.append(run)
                continue
            if st and st.get("status") in ("running", "interrupted"):
                res = result_from_log(self.sdir / run.name, run.name)
                if res is not None:  # finished before the driver could record it: keep, never rerun
                    st.update(status="done", result=res, ended=st.get("ended") or now(), recovered=True, error=None)
                    write_state(self.sdir, run.name, st)
                    done.append(run)
                    continue
            todo.append(run)
        return todo, done

    def best_final(self) -> float | None:
        """Best last pre-quantization val_bpb of the finished runs: the quantity the loss curve predicts."""
        vals = []
        for run in self.spec.runs:
            st = read_state(self.sdir, run.name)
            if st and st.get("status") == "done" and st.get("result"):
                v = st["result"].get("last_val_bpb", st["result"].get("val_bpb"))
                if isinstance(v, (int, float)):
                    vals.append(v)
        return min(vals) if vals else None

    def dry_run(self) -> list[str]:
        lines = []
        cmd = build_command(self.launcher, self.nproc, self.script)
        for i, run in enumerate(self.spec.runs):
            st = read_state(self.sdir, run.name)
            status = st.get("status") if st else "pending"
            slot = self.slots[i % len(self.slots)]
            env_add = run_env(run, self.sdir / run.name, slot)
            skip = status in FINAL_STATES and not (self.retry_failed and status == "failed")
            lines.append(("# skip (" + status + ") " if skip else "") + fmt_command(env_add, cmd))
        return lines

    def _on_signal(self, signum, _frame):
        self._stop_signal = signum

    def run(self, only: str | None = None) -> dict:
        """Drive the runs, holding the sweep's locks: `sweep run` takes the sweep lock exclusively; `run-one` (only
        = a run name) takes it shared, plus that run's own lock exclusively. So a run-one never races a whole-sweep
        driver, two drivers never race, and run-ones of different runs (a Slurm array) go in parallel."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            held.enter_context(C.lock(self.sdir / ".lock", shared=only is not None,
                                      busy=f"another driver ('python -m tools sweep run') is running sweep {self.spec.name} ({self.sdir})"
                                      if only is not None else f"another driver is running sweep {self.spec.name} or "
                                      f"one of its runs ({self.sdir})"))
            if only is not None:
                held.enter_context(C.lock(self.sdir / f".lock-{only}",
                                          busy=f"another driver is running run {only} ({self.sdir})"))
            manifest = {"name": self.spec.name, "spec": str(self.spec.path), "axes": self.spec.axes,
                        "base": self.spec.base, "runs": [r.name for r in self.spec.runs]}
            if only is None:
                C.atomic_write(self.sdir / "sweep.json", json.dumps(manifest, indent=1))
            old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
            try:
                return self._loop()
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    def _loop(self) -> dict:
        todo, done = self.classify()
        counts = {"skipped": len(done), "done": 0, "failed": 0, "stopped_early": 0, "interrupted": 0}
        self.say(f"sweep {self.spec.name}: {len(self.spec.runs)} runs, {len(done)} already finished, "
                 f"{len(todo)} to run on {len(self.slots)} slot(s)")
        bar = _progress(len(self.spec.runs), len(done), self.quiet)
        active: dict[int, Active] = {}
        queue = list(todo)
        while queue or active:
            if self._stop_signal is not None:
                self._interrupt(active, counts)
                break
            free = [i for i in range(len(self.slots)) if i not in active]
            while queue and free:
                slot = free.pop(0)
                active[slot] = self._start(queue.pop(0), slot)
            for slot, a in list(active.items()):
                rc = a.proc.poll()
                if rc is None:
                    self._maybe_stop_early(a)
                    continue
                if self._stop_signal is not None:
                    break  # handled as an interruption on the next turn
                status = self._finish(a, rc)
                counts[status] += 1
                del active[slot]
                bar.update(1)
            time.sleep(self.poll_seconds if active else 0)
        bar.close()
        counts["interrupted_by"] = self._stop_signal
        return counts

    def _start(self, run: Run, slot_i: int) -> Active:
        slot = self.slots[slot_i]
        run_dir = self.sdir / run.name
        prev = read_state(self.sdir, run.name) or {}
        if run_dir.exists():  # partial outputs of an interrupted attempt: start clean
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        env_add = run_env(run, run_dir, slot)
        cmd = build_command(self.launcher, self.nproc, self.script)
        state = {"name": run.name, "sweep": self.spec.name, "index": run.index, "axes": run.axes,
                 "env": env_add, "command": fmt_command(env_add, cmd), "status": "running",
                 "attempts": int(prev.get("attempts", 0)) + 1, "started": now(), "ended": None,
                 "slot": slot["label"], "returncode": None, "error": None, "result": None}
        write_state(self.sdir, run.name, state)
        out = open(run_dir / "stdout.txt", "wb")
        err = open(run_dir / "stderr.txt", "wb")
        try:
            proc = subprocess.Popen(cmd, env={**os.environ, **env_add}, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, preexec_fn=_child_setup(slot.get("cores", [])))
        except OSError as e:
            proc = _FailedProc(f"cannot start {cmd[0]}: {e.strerror}")
        finally:
            out.close(), err.close()
        self.say(f"start {run.name} [{slot['label']}]")
        return Active(run, proc, slot_i, run_dir, state, time.monotonic())

    def _finish(self, a: Active, rc: int) -> str:
        st = a.state
        st.update(returncode=rc, ended=now(), wall_seconds=round(time.monotonic() - a.started, 2))
        res = result_from_log(a.run_dir, a.run.name)
        if a.stop_reason is not None:
            st.update(status="stopped_early", reason=a.stop_reason, predicted=a.predicted)
            partial = log_prefix(a.run_dir, a.run)
            if partial:
                st["result"] = {"steps": partial["last_step"], "iterations": partial["total_steps"],
                                "last_val_bpb": partial["values"][-1] if partial["values"] else None}
        elif rc in (0, OVER_BUDGET_EXIT) and res is not None:
            st.update(status="done", result=res)
        else:
            tail = _tail(a.run_dir / "stderr.txt") or getattr(a.proc, "message", "")
            why = f"exit code {rc}" if rc >= 0 else f"killed by signal {-rc}"
            if rc == 0:
                why = "exit code 0 but the log has no final round-trip line"
            st.update(status="failed", error=f"{why}: {tail}" if tail else why)
        write_state(self.sdir, a.run.name, st)
        extra = (f" val_bpb={_cell(res.get('val_bpb'))}" if st["status"] == "done" else
                 f" ({last_line(st.get('reason') or st.get('error'))[:120]})")
        self.say(f"{st['status']} {a.run.name}{extra}")
        return st["status"]

    def _maybe_stop_early(self, a: Active) -> None:
        if self.early_stop_margin is None or self.predictor is None or a.stop_reason is not None:
            return
        t = time.monotonic()
        if t - a.last_check < self.check_seconds:
            return
        a.last_check = t
        best = self.best_final()
        prefix = log_prefix(a.run_dir, a.run)
        if best is None or prefix is None or not prefix["steps"]:
            return
        try:
            stop, predicted, reason = self.predictor(prefix, best, self.early_stop_margin,
                                                     self.early_stop_min_fraction)
        except Exception as e:  # a broken predictor must never kill a sweep
            self.say(f"warning: should_stop failed on {a.run.name}: {type(e).__name__}: {e}")
            return
        if stop:
            a.stop_reason, a.predicted = str(reason), (None if predicted is None else float(predicted))
            self.say(f"stopping {a.run.name} early: {reason}")
            _terminate(a.proc)

    def _interrupt(self, active: dict[int, Active], counts: dict) -> None:
        self.say(f"signal {self._stop_signal}: stopping {len(active)} running run(s); rerun the same command to resume")
        for a in active.values():
            _terminate(a.proc, wait=False)
        for a in active.values():
            _terminate(a.proc)
            rc = a.proc.returncode
            res = result_from_log(a.run_dir, a.run.name)
            st = a.state
            st.update(returncode=rc, ended=now(), wall_seconds=round(time.monotonic() - a.started, 2))
            if rc in (0, OVER_BUDGET_EXIT) and res is not None:
                st.update(status="done", result=res)
                counts["done"] += 1
            else:
                st.update(status="interrupted", error=f"driver stopped by signal {self._stop_signal}")
                counts["interrupted"] += 1
            write_state(self.sdir, a.run.name, st)
        active.clear()


class _FailedProc:
    """Stands in for a process that could not be started."""

    def __init__(self, message: str):
        self.message, self.returncode = message, 127

    def poll(self):
        return 127

    def wait(self, timeout=None):
        return 127

    def terminate(self):
        pass

    def kill(self):
        pass


def _terminate(proc, wait: bool = True, grace: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            proc.terminate()
        except ProcessLookupError:
            pass
    if wait:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, initial: int, quiet: bool):
    if quiet:
        return _NoBar()
    try:
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, unit="run", desc="sweep", file=sys.stderr)
    except ImportError:
        return _NoBar()


# --------------------------------------------------------------------------- results

COLUMNS_AFTER = ["val_bpb", "val_loss", "bytes_total", "margin", "steps", "step_avg_ms", "train_time_ms"]


def collect(spec: Spec, runs_dir: str | Path) -> list[dict]:
    """One row per run of the spec (status 'pending' for runs never started), sorted by val_bpb."""
    sdir = sweep_dir(runs_dir, spec)
    rows = []
    for run in spec.runs:
        st = read_state(sdir, run.name) or {}
        res = st.get("result") or {}
        row = {"run": run.name, "status": st.get("status", "pending"), **{a: run.axes.get(a, "") for a in spec.axes}}
        for k in COLUMNS_AFTER:
            row[k] = res.get(k) if st.get("status") == "done" else None
        row["note"] = last_line(st.get("reason") or st.get("error"))[:200] \
            if st.get("status") in ("failed", "stopped_early", "interrupted") else ""
        if st.get("status") == "done" and res.get("over_budget"):
            row["note"] = "OVER BUDGET: the run's code + artifact exceed its SIZE_CAP_BYTES"
        rows.append(row)
    rows.sort(key=lambda r: (r["val_bpb"] is None, r["val_bpb"] if r["val_bpb"] is not None else 0, r["run"]))
    return rows


def last_line(text: str | None) -> str:
    """The last non-blank line of a reason or an error ("" for none)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def table_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    return buf.getvalue()


def table_markdown(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(out) + "\n"


def write_tables(spec: Spec, runs_dir: str | Path) -> tuple[Path, Path, list[dict]]:
    rows = collect(spec, runs_dir)
    cols = ["run", "status", *spec.axes, *COLUMNS_AFTER, "note"]
    sdir = sweep_dir(runs_dir, spec)
    sdir.mkdir(parents=True, exist_ok=True)
    csv_p, md_p = sdir / "results.csv", sdir / "results.md"
    C.atomic_write(csv_p, table_csv(rows, cols))
    header = (f"# Sweep {spec.name}\n\n{sum(r['status'] == 'done' for r in rows)}/{len(rows)} runs done; sorted by "
              f"val_bpb (the final round trip of each run's artifact); margin = the run's SIZE_CAP_BYTES - "
              f"(code + artifact bytes).\n\n")
    C.atomic_write(md_p, header + table_markdown(rows, cols))
    return csv_p, md_p, rows


def make_plots(spec: Spec, runs_dir: str | Path, out_dir: str | Path | None = None, top: int = 5,
               names: list[str] | None = None) -> list[Path]:
    sdir = sweep_dir(runs_dir, spec)
    out_dir = Path(out_dir) if out_dir else sdir / "plots"
    rows = collect(spec, runs_dir)
    done = [r for r in rows if r["status"] == "done"]
    known = {r.name for r in spec.runs}
    if names:
        bad = [n for n in names if n not in known]
        if bad:
            raise ToolError(f"no run named {', '.join(bad)} in sweep {spec.name}")
        chosen = names
    else:
        chosen = [r["run"] for r in done[:top]]
    curves = []
    for n in chosen:
        try:
            curves.append((n, logparse.parse_log(log_path(sdir / n, n))))
        except ToolError:
            continue
    paths = [plot_runs.plot_loss_curves(curves, out_dir / "loss_curves.png", title=f"sweep {spec.name}")]
    for axis in spec.axes:
        pts = [(r[axis], r["val_bpb"]) for r in done if r[axis] != ""]
        if pts:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", axis)
            paths.append(plot_runs.plot_metric_vs_axis(pts, axis, out_dir / f"val_bpb_vs_{safe}.png"))
    return paths


# --------------------------------------------------------------------------- slurm

def slurm_script(spec: Spec, spec_path: str | Path, *, runs_dir: str = "runs", launcher: str = "torchrun",
                 nproc: int = 1, script: str | None = None, partition: str | None = None, time_limit: str = "00:30:00",
                 gpus_per_task: int = 1, cpus_per_task: int = 8, account: str | None = None,
                 max_parallel: int | None = None, workdir: str | None = None) -> str:
    n = len(spec.runs)
    if n == 0:
        raise ToolError(f"sweep {spec.name} has no runs")
    workdir = workdir or os.getcwd()
    sdir = f"{runs_dir}/{spec.name}"
    array = f"0-{n - 1}" + (f"%{max_parallel}" if max_parallel else "")
    lines = ["#!/bin/bash", f"# Slurm job array for sweep '{spec.name}': {n} runs, one array task per run.",
             f"# Written by 'python -m tools sweep slurm' from {spec_path}. Submit: sbatch <this file>",
             f"# Results land in {sdir}/<run>/ exactly as with 'python -m tools sweep run'; tabulate with",
             f"#   python -m tools sweep table {spec_path} --runs-dir {runs_dir}",
             f"#SBATCH --job-name=golf-{spec.name}", f"#SBATCH --array={array}",
             f"#SBATCH --output={sdir}/slurm-%A_%a.out", f"#SBATCH --time={time_limit}",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={cpus_per_task}"]
    if gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={gpus_per_task}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines += ["set -euo pipefail", f"cd {shlex.quote(workdir)}", f"mkdir -p {shlex.quote(sdir)}",
              'case "$SLURM_ARRAY_TASK_ID" in']
    for run in spec.runs:
        desc = " ".join(f"{k}={v}" for k, v in run.axes.items())
        lines.append(f"  {run.index}) RUN={run.name} ;;  # {desc}")
    lines += ['  *) echo "no run for array index $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;', "esac"]
    extra = f" --script {shlex.quote(script)}" if script else ""
    lines.append(f"exec python -m tools sweep run-one {shlex.quote(str(spec_path))} --run \"$RUN\" "
                 f"--runs-dir {shlex.quote(runs_dir)} --launcher {launcher} --nproc-per-node {nproc}{extra}")
    return "\n".join(lines) + "\n"


def run_one(spec: Spec, runs_dir: Path, name: str, **kw) -> str:
    """Run one named run of the spec (idempotent: a finished run is left alone). Returns its status."""
    match = [r for r in spec.runs if r.name == name]
    if not match:
        raise ToolError(f"no run named {name} in sweep {spec.name} (was the spec edited?)")
    sub = Spec(spec.name, spec.path, spec.base, spec.axes, match, spec.script, spec.launcher, spec.nproc_per_node)
    d = Driver(sub, runs_dir, slots=[{"label": "slurm", "env": {}}], **kw)
    d.run(only=name)
    return (read_state(d.sdir, name) or {}).get("status", "pending")


# --------------------------------------------------------------------------- command line

def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", choices=("torchrun", "python"), default=None,
                   help="torchrun --standalone --nproc_per_node=K (default) or plain python")
    p.add_argument("--nproc-per-node", type=int, default=None, help="processes per run under torchrun")
    p.add_argument("--script", default=None, help="training script (default: spec 'script' or <repo>/train_gpt.py)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Run hyperparameter sweeps of train_gpt.py from a TOML spec "
                                             "(format: docs/sweeps.md).")
    sp = ap.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("run", help="run every unfinished run of the spec (resumable)")
    r.add_argument("spec")
    r.add_argument("--runs-dir", default="runs", help="root of run directories (default %(default)s)")
    _add_run_args(r)
    r.add_argument("--gpus", default=None, help="comma-separated GPU ids; runs go in parallel, one slot each")
    r.add_argument("--gpus-per-run", type=int, default=1)
    r.add_argument("--cpu-cores", type=int, default=None, help="CPU core budget for parallel CPU runs")
    r.add_argument("--cores-per-run", type=int, default=None, help="cores (OMP_NUM_THREADS) per CPU run")
    r.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as failed")
    r.add_argument("--early-stop-margin", type=float, default=None,
                   help="stop a run whose predicted final val_bpb is worse than the best finished run by this much")
    r.add_argument("--early-stop-min-fraction", type=float, default=0.3,
                   help="fraction of the run that must be done before early stopping (default %(default)s)")
    r.add_argument("--predictor", default=None, help=argparse.SUPPRESS)  # MODULE:FUNCTION, an early-stopping rule of your own
    r.add_argument("--poll-seconds", type=float, default=1.0, help="how often the driver looks at its runs")
    r.add_argument("--check-seconds", type=float, default=10.0, help="how often logs are read for early stopping")
    r.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    r.add_argument("--quiet", action="store_true")
    o = sp.add_parser("run-one", help="run one named run (what a Slurm array task calls)")
    o.add_argument("spec")
    o.add_argument("--run", required=True)
    o.add_argument("--runs-dir", default="runs")
    _add_run_args(o)
    t = sp.add_parser("table", help="write results.csv and results.md (sorted by val_bpb) and print the table")
    t.add_argument("spec")
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--json", action="store_true", help="print the rows as JSON")
    pl = sp.add_parser("plot", help="loss curves of chosen runs and val_bpb against each axis (PNG)")
    pl.add_argument("spec")
    pl.add_argument("--runs-dir", default="runs")
    pl.add_argument("--runs", default=None, help="comma-separated run names for the loss curves")
    pl.add_argument("--top", type=int, default=5, help="otherwise the best K finished runs (default %(default)s)")
    pl.add_argument("--out", default=None, help="output directory (default runs/<sweep>/plots)")
    sl = sp.add_parser("slurm", help="write a Slurm job array script, one array task per run")
    sl.add_argument("spec")
    sl.add_argument("--runs-dir", default="runs")
    _add_run_args(sl)
    sl.add_argument("--out", default=None, help="write the script here (default: print it)")
    sl.add_argument("--partition", default=None)
    sl.add_argument("--account", default=None)
    sl.add_argument("--time", default="00:30:00", help="time limit per run (default %(default)s)")
    sl.add_argument("--gpus-per-task", type=int, default=1)
    sl.add_argument("--cpus-per-task", type=int, default=8)
    sl.add_argument("--max-parallel", type=int, default=None, help="at most this many array tasks at once")
    return ap


# (flag, lowest, highest) of the integer flags; None where the flag has no bound on that side
INT_FLAGS = (("nproc_per_node", 1, MAX_NPROC_PER_NODE), ("gpus_per_run", 1, None), ("cpu_cores", 1, None),
             ("cores_per_run", 1, None), ("top", 1, None), ("gpus_per_task", 0, None), ("cpus_per_task", 1, None),
             ("max_parallel", 1, None))
# (flag, lowest, highest, lowest included)
FLOAT_FLAGS = (("early_stop_margin", 0.0, None, True), ("early_stop_min_fraction", 0.0, 1.0, True),
               ("poll_seconds", 0.0, None, False), ("check_seconds", 0.0, None, True))
# words written into the Slurm script's #SBATCH lines: one word each
WORD_FLAGS = ("partition", "account", "time")


def check_flags(args: argparse.Namespace) -> None:
    """The ranges of the numeric flags and the shape of the words the Slurm script holds (one ToolError each)."""
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    for name, lo, hi in INT_FLAGS:
        v = getattr(args, name, None)
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise ToolError(f"{flag(name)} is {v}, expected an integer " +
                            (f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"))
    for name, lo, hi, closed in FLOAT_FLAGS:
        v = getattr(args, name, None)
        if v is None:
            continue
        below = lo is not None and (v < lo if closed else v <= lo)
        if not math.isfinite(v) or below or (hi is not None and v > hi):
            bounds = f"in [{lo}, {hi}]" if hi is not None else f"{'>=' if closed else '>'} {lo}" if lo is not None else ""
            raise ToolError(f"{flag(name)} is {v}, expected a finite number {bounds}".rstrip())
    for name in WORD_FLAGS:
        v = getattr(args, name, None)
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.:,+=@%/-]+", v):
            raise ToolError(f"{flag(name)} {v!r} must be one word (letters, digits and _ . : , + = @ % / -)")


def _run_command(args: argparse.Namespace, spec: Spec) -> int:
    """`run` and `run-one`."""
    launcher = args.launcher or spec.launcher
    nproc = args.nproc_per_node or (args.gpus_per_run if args.cmd == "run" and args.gpus else None) \
        or spec.nproc_per_node
    script = script_path(spec, args.script)
    if args.cmd == "run-one":
        status = run_one(spec, Path(args.runs_dir), args.run, launcher=launcher, nproc=nproc, script=script)
        print(status)
        return 0 if status == "done" else 1
    slots = make_slots(args.gpus, args.gpus_per_run, args.cpu_cores, args.cores_per_run)
    predictor = load_predictor(args.predictor) if args.early_stop_margin is not None else None
    d = Driver(spec, Path(args.runs_dir), launcher, nproc, script, slots, retry_failed=args.retry_failed,
               early_stop_margin=args.early_stop_margin,
               early_stop_min_fraction=args.early_stop_min_fraction, predictor=predictor,
               poll_seconds=args.poll_seconds, check_seconds=args.check_seconds, quiet=args.quiet)
    if args.dry_run:
        print("\n".join(d.dry_run()))
        return 0
    if not Path(script).is_file():
        raise ToolError(f"training script {script} not found")
    counts = d.run()
    csv_p, md_p, _ = write_tables(spec, args.runs_dir)
    print(f"sweep {spec.name}: {counts['done']} done, {counts['failed']} failed, "
          f"{counts['stopped_early']} stopped early, {counts['interrupted']} interrupted, "
          f"{counts['skipped']} already finished; table {md_p}")
    if counts["interrupted_by"] is not None:
        return 128 + counts["interrupted_by"]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    spec = load_spec(args.spec)
    if args.cmd in ("run", "run-one"):
        return _run_command(args, spec)
    if args.cmd == "table":
        csv_p, md_p, rows = write_tables(spec, args.runs_dir)
        print(json.dumps(rows) if args.json else md_p.read_text().rstrip())
        return 0
    if args.cmd == "plot":
        names = [n for n in args.runs.split(",") if n] if args.runs else None
        for p in make_plots(spec, args.runs_dir, args.out, args.top, names):
            print(f"wrote {p}")
        return 0
    text = slurm_script(spec, args.spec, runs_dir=args.runs_dir, launcher=args.launcher or spec.launcher,
                        nproc=args.nproc_per_node or spec.nproc_per_node, script=args.script,
                        partition=args.partition, time_limit=args.time, gpus_per_task=args.gpus_per_task,
                        cpus_per_task=args.cpus_per_task, account=args.account, max_parallel=args.max_parallel)
    if args.out:
        C.atomic_write(Path(args.out), text)
        print(f"wrote {args.out} ({len(spec.runs)} array tasks); submit with: sbatch {args.out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
