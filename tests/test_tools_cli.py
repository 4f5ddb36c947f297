"""tools/ command lines on a tiny real training run: score reproduces the log, pack/fit/inspect/sample, bad input."""
from __future__ import annotations

import json
import re

import pytest
import torch

from tools_test_support import run_tool, tiny_trained  # noqa: F401  (tiny_trained is a fixture)
import artifact as A  # noqa: E402
import fit  # noqa: E402
import inspect_artifact  # noqa: E402
import pack  # noqa: E402
import sample  # noqa: E402
import train_gpt as tg  # noqa: E402


def cli(main, argv, capsys) -> tuple[int, str, str]:
    code = A.run_cli(lambda: main(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_score_reproduces_the_logged_final_round_trip_number_exactly(tiny_trained):
    data, run, stdout = tiny_trained
    logged = re.search(r"final_int8_zlib_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)", stdout).groups()
    r = run_tool("score.py", run / "final_model.int8.ptz", "--data", data, "--seq-len", 64, "--stride", 32,
                 "--batch-seqs", 8, "--bf16", 1)
    assert r.returncode == 0, r.stderr
    mine = re.search(r"score_exact val_loss:(\S+) val_bpb:(\S+)", r.stdout).groups()
    assert mine == logged
    assert re.search(r"^score val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} eval_time:\d+ms$", r.stdout, re.M)


def test_score_reads_checkpoints_and_packed_artifacts(tiny_trained, tmp_path):
    data, run, _ = tiny_trained
    ckpt = run / "checkpoints" / "tiny" / "step_000006.ckpt"
    art = tmp_path / "a.ptz"
    assert A.run_cli(lambda: pack.main([str(ckpt), "-o", str(art), "--bits", "6", "--clip-search", "--codec", "zstd"])) == 0
    results = {}
    for model in (ckpt, run / "final_model.safetensors", art):
        r = run_tool("score.py", model, "--data", data, "--seq-len", 64, "--stride", 64, "--max-tokens", 2000, "--json")
        assert r.returncode == 0, r.stderr
        results[model.name] = json.loads(r.stdout)
        assert results[model.name]["targets"] == 2000
    assert results["step_000006.ckpt"]["val_bpb"] == results["final_model.safetensors"]["val_bpb"]
    assert abs(results["a.ptz"]["val_bpb"] - results["step_000006.ckpt"]["val_bpb"]) < 0.05


def test_pack_writes_the_same_bytes_twice_and_every_codec_loads(tiny_trained, tmp_path, capsys):
    _, run, _ = tiny_trained
    src = run / "final_model.safetensors"
    for codec in A.CODEC_IDS:
        a, b = tmp_path / f"{codec}1.ptz", tmp_path / f"{codec}2.ptz"
        for out in (a, b):
            code, _, err = cli(pack.main, [str(src), "-o", str(out), "--bits", "5", "--codec", codec, "--layout", "packed",
                                           "--embed-bits", "8", "--json"], capsys)
            assert code == 0, err
        assert a.read_bytes() == b.read_bytes()
        state, meta = tg.read_artifact(a)
        assert meta["scheme"] == f"int5-emb8-packed+{codec}" and meta["tensors"]["tok_emb.weight"]["bits"] == 8
        tg.model_from_state(state, meta["config"])


def test_fit_table_arithmetic_and_order(tiny_trained, capsys):
    _, run, _ = tiny_trained
    code, out, err = cli(fit.main, [str(run / "final_model.safetensors"), "--schemes", "int8,int4-clip", "--codecs",
                                    "zlib,lzma", "--code", str(run / "final_model.int8.ptz"), "--json", "--no-progress"], capsys)
    assert code == 0, err
    report = json.loads(out)
    rows, code_bytes = report["rows"], (run / "final_model.int8.ptz").stat().st_size
    assert len(rows) == 4
    for r in rows:
        assert r["code_bytes"] == code_bytes
        assert r["total_bytes"] == r["artifact_bytes"] + r["code_bytes"]
        assert r["margin"] == 16_000_000 - r["total_bytes"] and r["fits"]
        assert r["bytes_per_param"] == pytest.approx(r["artifact_bytes"] / report["base"]["params"])
    assert rows == fit.sort_rows(rows)
    assert [r["scheme"] for r in rows][:2] == ["int8", "int8"]  # lower reconstruction error first
    assert rows[0]["total_bytes"] <= rows[1]["total_bytes"]


def test_fit_sorting_puts_the_best_fitting_row_first():
    row = lambda s, art, bpb: fit.table_row(s, "zstd", 22, art, 50_000, 1000, 0.01, bpb, 1.0)
    rows = fit.sort_rows([row("big", 16_000_000, 1.00), row("worse", 9_000_000, 1.20), row("best", 12_000_000, 1.05),
                          row("tie_small", 11_000_000, 1.05)])
    assert [r["scheme"] for r in rows] == ["tie_small", "best", "worse", "big"]
    assert rows[-1]["margin"] == 16_000_000 - 16_050_000 and not rows[-1]["fits"]
    assert rows[0]["delta_bpb"] == pytest.approx(0.05)


def test_fit_with_data_scores_each_round_trip(tiny_trained, capsys):
    data, run, _ = tiny_trained
    code, out, err = cli(fit.main, [str(run / "final_model.safetensors"), "--schemes", "int8,int4", "--codecs", "zlib",
                                    "--data", str(data), "--seq-len", "64", "--stride", "64", "--max-tokens", "1500",
                                    "--no-progress"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["val_bpb", "d_bpb"] and "unquantized val_bpb" in lines[-1]
    assert len(lines) == 5


def test_inspect_lists_every_tensor_and_totals(tiny_trained, capsys):
    _, run, _ = tiny_trained
    art = run / "final_model.int8.ptz"
    code, out, err = cli(inspect_artifact.main, [str(art), "--json", "--no-progress"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    _, meta = tg.read_artifact(art)
    assert [t["name"] for t in rep["tensors"]] == list(meta["tensors"])
    assert rep["artifact_bytes"] == art.stat().st_size and rep["codec"] == "zlib"
    assert rep["total_bytes"] == rep["artifact_bytes"] + rep["code_bytes"] and rep["margin"] == 16_000_000 - rep["total_bytes"]
    assert rep["params"] == sum(v.numel() for v in tg.load_checkpoint_weights(run / "final_model.safetensors").values())
    assert all(t["est_compressed_bytes"] > 0 for t in rep["tensors"])


def test_sample_compares_with_a_random_model(tiny_trained, capsys):
    data, run, _ = tiny_trained
    argv = [str(run / "final_model.int8.ptz"), "--data", str(data), "--prompt", "to be or not to be", "--tokens", "12",
            "--seed", "3", "--compare-random", "--json"]
    code, out, err = cli(sample.main, argv, capsys)
    assert code == 0, err
    res = {r["model"]: r for r in json.loads(out)["results"]}
    assert len(res["trained"]["tokens"]) == 12 and len(res["random"]["tokens"]) == 12
    assert res["trained"]["prompt_loss"] < res["random"]["prompt_loss"]
    assert cli(sample.main, argv, capsys)[1] == out  # same seed, same text


def test_bad_inputs_give_one_error_line_and_exit_1(tiny_trained, tmp_path, capsys):
    data, run, _ = tiny_trained
    art = run / "final_model.int8.ptz"
    truncated = tmp_path / "trunc.ptz"
    truncated.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    state, meta = tg.read_artifact(art)
    wrong = dict(meta["config"], model_dim=32, num_heads=2, num_kv_heads=1)
    mismatched = tmp_path / "mismatch.ptz"
    mismatched.write_bytes(A.pack(state, wrong, A.Scheme(bits=8), "zlib"))
    pickled = tmp_path / "model.pt"
    torch.save(state, pickled)
    cases = [
        (pack.main, [str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "x.ptz")], "cannot read"),
        (pack.main, [str(truncated), "-o", str(tmp_path / "x.ptz")], "truncated"),
        (pack.main, [str(pickled), "-o", str(tmp_path / "x.ptz")], "pickle"),
        (pack.main, [str(art), "-o", str(tmp_path / "x.ptz"), "--codec", "zstd", "--level", "40"], "out of range"),
        (fit.main, [str(mismatched), "--no-progress"], "does not match the model shape"),
        (fit.main, [str(art), "--schemes", "int3"], "int3"),
        (inspect_artifact.main, [str(truncated), "--no-progress"], "truncated"),
        (sample.main, [str(art), "--prompt", "x"], "--data"),
    ]
    for main, argv, needle in cases:
        code, _, err = cli(main, argv, capsys)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, (argv, err)
    assert not (tmp_path / "x.ptz").exists()
    r = run_tool("score.py", mismatched, "--data", data, "--seq-len", 64)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "does not match the model shape" in r.stderr
    r = run_tool("score.py", art, "--data", data, "--seq-len", 64, "--stride", 128)
    assert r.returncode == 1 and "exceeds --seq-len" in r.stderr


def test_score_under_torchrun_splits_windows_across_two_processes(tiny_trained):
    import subprocess
    import sys
    from tools_test_support import TOOLS, clean_env
    data, run, stdout = tiny_trained
    logged = float(re.search(r"final_int8_zlib_roundtrip_exact val_loss:\S+ val_bpb:(\S+)", stdout).group(1))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(TOOLS / "score.py"), str(run / "final_model.int8.ptz"), "--data", str(data), "--seq-len", "64",
                        "--stride", "32", "--batch-seqs", "8", "--json"], env=clean_env(), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["world_size"] == 2 and rep["val_bpb"] == pytest.approx(logged, abs=1e-7)
