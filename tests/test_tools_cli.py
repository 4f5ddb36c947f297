"""tools/ command lines on a tiny real training run: score reproduces the log, pack/fit/inspect/sample, bad input."""
from __future__ import annotations

import json
import re

import pytest
import torch

import train_gpt as tg
from tests.helpers import cli, run_tool, subprocess_env
from tools import common as C
from tools.artifacts import fit, inspect_artifact, pack, sample, score


@pytest.mark.slow
def test_the_run_writes_its_own_files(tiny_trained):
    _, run, stdout = tiny_trained
    summary = json.loads((run / "logs" / "tiny.json").read_text())
    assert summary["artifact"] == "models/tiny.ptz" and (run / "models" / "tiny.ptz").is_file()
    assert (run / "models" / "tiny.safetensors").is_file() and (run / "checkpoints" / "tiny" / "step_000006.ckpt").is_file()
    assert f"artifact scheme: {summary['artifact_scheme']} file: " in stdout


@pytest.mark.slow
def test_score_with_default_bf16_reproduces_the_logged_final_round_trip_exactly(tiny_trained):
    """score.py's --bf16 defaults to auto like the run's BF16 (the tiny run leaves it at auto): the same settings give
    the log's final exact line digit for digit."""
    data, run, stdout = tiny_trained
    logged = re.search(r"final_int8_zlib_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)", stdout).groups()
    r = run_tool("score", run / "models" / "tiny.ptz", "--data", data, "--seq-len", 64, "--stride", 32, "--batch-seqs", 8)
    assert r.returncode == 0, r.stderr
    assert re.search(r"score_exact val_loss:(\S+) val_bpb:(\S+)", r.stdout).groups() == logged
    assert re.search(r"^score val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} eval_time:\d+ms$", r.stdout, re.M)
    precision = re.search(r"^precision:(\w+)", stdout, re.M).group(1)
    assert f"precision:{precision} " in r.stdout


@pytest.mark.slow
def test_score_reads_checkpoints_raw_weights_and_packed_artifacts(tiny_trained, tmp_path, capsys):
    data, run, _ = tiny_trained
    ckpt = run / "checkpoints" / "tiny" / "step_000006.ckpt"
    art = tmp_path / "a.ptz"
    assert cli(pack.main, [str(ckpt), "-o", str(art), "--scheme", "int5-emb6-packed+zstd"], capsys)[0] == 0
    results = {}
    for model in (ckpt, run / "models" / "tiny.safetensors", art):
        code, out, err = cli(score.main, [str(model), "--data", str(data), "--seq-len", "64", "--stride", "64",
                                          "--max-tokens", "2000", "--json", "--bf16", "0"], capsys)
        assert code == 0, err
        results[model.name] = json.loads(out)
        assert results[model.name]["targets"] == 2000 and results[model.name]["bf16"] == 0
    assert results["step_000006.ckpt"]["val_bpb"] == results["tiny.safetensors"]["val_bpb"]
    assert abs(results["a.ptz"]["val_bpb"] - results["step_000006.ckpt"]["val_bpb"]) < 0.05


@pytest.mark.slow
def test_pack_writes_the_same_bytes_twice_for_every_codec_and_gptq(tiny_trained, tmp_path, capsys):
    data, run, _ = tiny_trained
    src = run / "models" / "tiny.safetensors"
    for spec in [f"int5-emb8-packed+{c}" for c in tg.CODEC_IDS] + ["int4-emb6-gptq-shuffle+brotli"]:
        a, b = tmp_path / f"{spec}.1.ptz", tmp_path / f"{spec}.2.ptz"
        for out in (a, b):
            code, stdout, err = cli(pack.main, [str(src), "-o", str(out), "--scheme", spec, "--json", "--data", str(data),
                                                "--seq-len", "64", "--batch-tokens", "512", "--gptq-batches", "4"], capsys)
            assert code == 0, err
        assert a.read_bytes() == b.read_bytes()
        report = json.loads(stdout)
        state, meta = tg.read_artifact(a)
        assert meta["scheme"] == report["scheme"] == tg.Scheme.parse(spec).spec
        assert report["total_bytes"] == report["artifact_bytes"] + report["code_bytes"] == a.stat().st_size + report["code_bytes"]
        assert report["margin"] == C.SUBMISSION_CAP_BYTES - report["total_bytes"] and 0 < report["rel_error"] < 0.1
        tg.model_from_state(state, meta["config"])


@pytest.mark.slow
def test_fit_table_arithmetic_and_order(tiny_trained, capsys):
    _, run, _ = tiny_trained
    code, out, err = cli(fit.main, [str(run / "models" / "tiny.safetensors"), "--schemes", "int8,int3-emb4,int6+zstd-5",
                                    "--codecs", "zlib,lzma", "--code", str(run / "models" / "tiny.ptz"), "--json",
                                    "--no-progress"], capsys)
    assert code == 0, err
    report = json.loads(out)
    rows, code_bytes = report["rows"], (run / "models" / "tiny.ptz").stat().st_size
    assert sorted(r["scheme"] for r in rows) == sorted(["int8-emb8-bigram8+zlib", "int8-emb8-bigram8+lzma",
                                                        "int3-emb4-bigram3+zlib", "int3-emb4-bigram3+lzma",
                                                        "int6-emb8-bigram6+zstd-5"])
    for r in rows:
        assert r["code_bytes"] == code_bytes and r["total_bytes"] == r["artifact_bytes"] + r["code_bytes"]
        assert r["margin"] == C.SUBMISSION_CAP_BYTES - r["total_bytes"] and r["fits"]
        assert r["bytes_per_param"] == pytest.approx(r["artifact_bytes"] / report["base"]["params"])
    assert rows == fit.sort_rows(rows) and rows[0]["scheme"].startswith("int8")  # lowest reconstruction error first
    assert rows[0]["rel_error"] == rows[1]["rel_error"]  # the codec changes bytes, not weights


def test_fit_sorting_puts_the_best_fitting_row_first():
    row = lambda s, art, bpb: fit.table_row(s, art, 50_000, 1000, 0.01, bpb, 1.0)  # noqa: E731
    rows = fit.sort_rows([row("big", C.SUBMISSION_CAP_BYTES, 1.00), row("worse", 9_000_000, 1.20), row("best", 12_000_000, 1.05),
                          row("tie_small", 11_000_000, 1.05)])
    assert [r["scheme"] for r in rows] == ["tie_small", "best", "worse", "big"]
    assert rows[-1]["margin"] == C.SUBMISSION_CAP_BYTES - 16_050_000 and not rows[-1]["fits"]
    assert rows[0]["delta_bpb"] == pytest.approx(0.05)


@pytest.mark.slow
def test_fit_with_data_scores_each_distinct_round_trip_once(tiny_trained, capsys):
    data, run, _ = tiny_trained
    code, out, err = cli(fit.main, [str(run / "models" / "tiny.safetensors"), "--schemes", "int8,int4-gptq",
                                    "--codecs", "zlib,brotli", "--data", str(data), "--seq-len", "64", "--stride", "64",
                                    "--max-tokens", "1500", "--calib-seq-len", "64", "--batch-tokens", "512",
                                    "--gptq-batches", "2", "--json", "--no-progress"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert len(report["rows"]) == 4 and report["base"]["targets"] == 1500
    by = {r["scheme"]: r for r in report["rows"]}
    assert by["int8-emb8-bigram8+zlib"]["val_bpb"] == by["int8-emb8-bigram8+brotli"]["val_bpb"]
    assert sum(r["eval_seconds"] is not None for r in report["rows"]) == 4
    assert abs(by["int8-emb8-bigram8+zlib"]["delta_bpb"]) < 0.01


@pytest.mark.slow
def test_inspect_lists_every_tensor_and_totals(tiny_trained, capsys):
    _, run, _ = tiny_trained
    art = run / "models" / "tiny.ptz"
    code, out, err = cli(inspect_artifact.main, [str(art), "--json", "--no-progress"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    state, meta = tg.read_artifact(art)
    assert [t["name"] for t in rep["tensors"]] == list(meta["tensors"]) and rep["scheme"] == meta["scheme"]
    assert rep["artifact_bytes"] == art.stat().st_size and rep["codec"] == tg.Scheme.parse(meta["scheme"]).codec
    assert rep["total_bytes"] == rep["artifact_bytes"] + rep["code_bytes"] and rep["margin"] == C.SUBMISSION_CAP_BYTES - rep["total_bytes"]
    assert rep["params"] == sum(v.numel() for v in state.values())
    assert all(t["est_compressed_bytes"] > 0 for t in rep["tensors"])


@pytest.mark.slow
def test_sample_compares_with_a_random_model(tiny_trained, capsys):
    data, run, _ = tiny_trained
    argv = [str(run / "models" / "tiny.ptz"), "--data", str(data), "--prompt", "to be or not to be", "--tokens", "12",
            "--seed", "3", "--compare-random", "--json"]
    code, out, err = cli(sample.main, argv, capsys)
    assert code == 0, err
    res = {r["model"]: r for r in json.loads(out)["results"]}
    assert len(res["trained"]["tokens"]) == 12 and len(res["random"]["tokens"]) == 12
    assert res["trained"]["prompt_loss"] < res["random"]["prompt_loss"]
    assert cli(sample.main, argv, capsys)[1] == out  # same seed, same text


@pytest.mark.slow
def test_bad_inputs_give_one_error_line_and_exit_1(tiny_trained, tmp_path, capsys):
    data, run, _ = tiny_trained
    art = run / "models" / "tiny.ptz"
    truncated = tmp_path / "trunc.ptz"
    truncated.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    state, meta = tg.read_artifact(art)
    mismatched = tmp_path / "mismatch.ptz"
    mismatched.write_bytes(tg.pack_artifact(state, dict(meta["config"], model_dim=32, num_heads=2, num_kv_heads=1),
                                            tg.Scheme.parse("int8+zlib")))
    pickled = tmp_path / "model.pt"
    torch.save(state, pickled)
    out = str(tmp_path / "x.ptz")
    cases = [
        (pack.main, [str(tmp_path / "missing.ckpt"), "-o", out], "cannot read"),
        (pack.main, [str(truncated), "-o", out], "integrity check failed"),
        (pack.main, [str(pickled), "-o", out], "pickle"),
        (pack.main, [str(art), "-o", out, "--scheme", "int6+zstd-40"], "zstd level must be 1..22"),
        (pack.main, [str(art), "-o", out, "--scheme", "int6-gptq+zstd"], "give --data"),
        (fit.main, [str(mismatched), "--no-progress"], "do not match the model config"),
        (fit.main, [str(art), "--schemes", "int9"], "int9"),
        (fit.main, [str(art), "--level", "gzip=3"], "expected CODEC=N"),
        (inspect_artifact.main, [str(truncated), "--no-progress"], "integrity check failed"),
        (sample.main, [str(art), "--prompt", "x"], "--data"),
    ]
    for main, argv, needle in cases:
        code, _, err = cli(main, argv, capsys)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, (argv, err)
    assert not (tmp_path / "x.ptz").exists()
    for argv, needle in (([str(mismatched), "--data", str(data), "--seq-len", "64"], "do not match the model config"),
                         ([str(art), "--data", str(data), "--seq-len", "64", "--stride", "128"], "exceeds --seq-len"),
                         ([str(art), "--data", str(tmp_path)], "does not exist")):
        code, _, err = cli(score.main, argv, capsys)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, (argv, err)


@pytest.mark.slow
def test_score_under_torchrun_splits_windows_across_two_processes(tiny_trained):
    import subprocess
    import sys
    data, run, stdout = tiny_trained
    logged = float(re.search(r"final_int8_zlib_roundtrip_exact val_loss:\S+ val_bpb:(\S+)", stdout).group(1))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "tools", "score", str(run / "models" / "tiny.ptz"), "--data", str(data), "--seq-len", "64",
                        "--stride", "32", "--batch-seqs", "8", "--json"], env=subprocess_env(), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["world_size"] == 2 and rep["val_bpb"] == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow
def test_bench_pack_reports_penalties_layouts_and_the_end_to_end_time(tiny_trained, tmp_path, capsys):
    from bench import bench_pack
    data, run, _ = tiny_trained
    md = tmp_path / "bench.md"
    code, out, err = cli(bench_pack.main, [str(run / "models" / "tiny.safetensors"), "--data", str(data), "--schemes",
                                           "int8,int6,int6-packed,int4-emb6-gptq", "--codecs", "zlib", "--max-tokens", "1000",
                                           "--seq-len", "64", "--calib-seq-len", "64", "--batch-tokens", "512",
                                           "--gptq-batches", "2", "--markdown", str(md), "--json", "--no-progress"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert len(report["rows"]) == 4 and report["base"]["targets"] == 1000
    assert report["layout"] == [{"scheme": "int6-emb8-bigram6+zlib", "variant": "packed",
                                 "plain": next(r["artifact_bytes"] for r in report["rows"] if r["scheme"] == "int6-emb8-bigram6+zlib"),
                                 "bytes": next(r["artifact_bytes"] for r in report["rows"] if r["scheme"] == "int6-emb8-bigram6-packed+zlib")}]
    assert report["end_to_end"]["targets"] == 1000 and md.read_text().startswith("checkpoint: ")
