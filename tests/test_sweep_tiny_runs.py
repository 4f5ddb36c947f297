"""The sweep command end to end with real tiny CPU runs of train_gpt.py: SIGKILL of the driver's process group
midway, resume, every run recorded exactly once; then the results table and the plots."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import TRAIN_GPT, subprocess_env, tiny_settings, tool_command
from tools import common as C
from tools.runs import logparse, plot_runs, sweep


def _spec_text(data: Path) -> str:
    base = tiny_settings(data, ITERATIONS=12, VAL_LOSS_EVERY=4)
    lines = ['name = "tiny"', "seeds = [1]", "[base]"] + [f'{k} = "{v}"' for k, v in base.items()]
    # two good configurations, then one that train_gpt.py rejects at start-up (NUM_HEADS=4 % NUM_KV_HEADS=3)
    lines += ["[[configs]]", "MATRIX_LR = 0.02", "[[configs]]", "MATRIX_LR = 0.05", "[[configs]]", "NUM_KV_HEADS = 3"]
    return "\n".join(lines) + "\n"


def _states(sdir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sdir.glob("*/state.json")}


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_tiny")
    script = root / "train_gpt.py"  # one copy for every run: the repository's file may change meanwhile
    script.write_bytes(TRAIN_GPT.read_bytes())
    spec_path = root / "tiny.toml"
    spec_path.write_text(_spec_text(tiny_data))
    spec = sweep.load_spec(spec_path)
    sdir = root / "runs" / "tiny"
    args = [*tool_command("sweep"), "run", str(spec_path), "--runs-dir", str(root / "runs"), "--launcher", "python",
            "--script", str(script), "--poll-seconds", "0.1", "--quiet"]
    env = subprocess_env()
    # first driver: SIGKILL its whole process group once run 1 is done and run 2 has logged training steps
    proc = subprocess.Popen(args, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    second = spec.runs[1].name
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        st = _states(sdir)
        log = sdir / second / "logs" / f"{second}.txt"
        if st.get(spec.runs[0].name, {}).get("status") == "done" and log.is_file() and "train_loss" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "driver ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    after_kill = _states(sdir)
    first_log = sdir / spec.runs[0].name / "logs" / f"{spec.runs[0].name}.txt"
    first_mtime = first_log.stat().st_mtime_ns
    # second driver: resumes and finishes
    r = subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    return {"root": root, "spec": spec, "spec_path": spec_path, "sdir": sdir, "after_kill": after_kill,
            "first_mtime": first_mtime, "first_log": first_log, "resume": r, "args": args, "env": env, "script": script}


@pytest.mark.slow
def test_killed_sweep_resumes_and_records_every_run_exactly_once(killed_and_resumed):
    k = killed_and_resumed
    spec, sdir = k["spec"], k["sdir"]
    first, second, bad = (r.name for r in spec.runs)
    assert k["after_kill"][first]["status"] == "done" and k["after_kill"][second]["status"] == "running"
    assert bad not in k["after_kill"]
    assert k["resume"].returncode == 0, k["resume"].stderr[-2000:]
    st = _states(sdir)
    assert set(st) == {first, second, bad}
    assert st[first] == k["after_kill"][first]                    # the finished run was not rerun
    assert k["first_log"].stat().st_mtime_ns == k["first_mtime"]
    assert st[second]["status"] == "done" and st[second]["attempts"] == 2
    assert st[bad]["status"] == "failed" and "NUM_KV_HEADS" in st[bad]["error"] and st[bad]["attempts"] == 1
    for name in (first, second):
        log = logparse.parse_log(sdir / name / "logs" / f"{name}.txt")
        assert log.finished and log.run_id == name and log.hparams["OUT_DIR"] == str(sdir / name)
        raw = (sdir / name / "logs" / f"{name}.txt").read_bytes()
        src, _, rest = logparse.split_source(raw)
        assert src == k["script"].read_bytes() and logparse.SOURCE_BEGIN_RE.search(rest) is None  # one attempt
        assert rest.count(b"\nfinal_int8_zlib_roundtrip_exact ") == 1
        assert st[name]["result"]["val_bpb"] == pytest.approx(log.val_bpb, abs=5e-9) and st[name]["result"]["steps"] == 12
        summary = json.loads((sdir / name / "logs" / f"{name}.json").read_text())
        assert st[name]["result"]["artifact"] == str(sdir / name / "models" / f"{name}.ptz") == \
            str(sdir / name / summary["artifact"]) and (sdir / name / "models" / f"{name}.ptz").is_file()
    # a third start has nothing to do and changes nothing
    r = subprocess.run(k["args"], env=k["env"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and _states(sdir) == st
    assert "0 done, 0 failed, 0 stopped early, 0 interrupted, 3 already finished" in r.stdout


@pytest.mark.slow
def test_results_table_sorted_by_val_bpb_with_every_axis(killed_and_resumed):
    k = killed_and_resumed
    assert sweep.main(["table", str(k["spec_path"]), "--runs-dir", str(k["root"] / "runs")]) == 0
    rows = list(csv.DictReader((k["sdir"] / "results.csv").open()))
    assert [r["run"] for r in rows].count(k["spec"].runs[0].name) == 1 and len(rows) == 3
    assert list(rows[0]) == ["run", "status", "MATRIX_LR", "NUM_KV_HEADS", "SEED", "val_bpb", "val_loss",
                             "bytes_total", "margin", "steps", "step_avg_ms", "train_time_ms", "note"]
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 2 and float(done[0]["val_bpb"]) <= float(done[1]["val_bpb"])
    assert rows[2]["status"] == "failed" and rows[2]["NUM_KV_HEADS"] == "3" and rows[2]["val_bpb"] == ""
    for r in done:
        assert int(r["margin"]) == C.SUBMISSION_CAP_BYTES - int(r["bytes_total"]) and r["steps"] == "12"
        assert float(r["step_avg_ms"]) > 0 and r["SEED"] == "1"
    md = (k["sdir"] / "results.md").read_text()
    assert md.count("\n| ") == 4 and "| run | status | MATRIX_LR |" in md


@pytest.mark.slow
def test_plots_from_the_sweep_and_from_plain_logs(killed_and_resumed, tmp_path):
    k = killed_and_resumed
    assert sweep.main(["plot", str(k["spec_path"]), "--runs-dir", str(k["root"] / "runs")]) == 0
    plots = k["sdir"] / "plots"
    for name in ("loss_curves.png", "val_bpb_vs_MATRIX_LR.png", "val_bpb_vs_SEED.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert not (plots / "val_bpb_vs_NUM_KV_HEADS.png").exists()  # only failed runs have that axis
    logs = [str(k["sdir"] / r.name / "logs" / f"{r.name}.txt") for r in k["spec"].runs[:2]]
    out = tmp_path / "curves.png"
    assert plot_runs.main([*logs, "--out", str(out), "--labels", "lr0.02,lr0.05"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
