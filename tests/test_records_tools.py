"""tools/logparse.py and tools/record.py: record folders from real tiny CPU runs, refusals, statistics, check."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from records_sweep_support import (FAKE_SOURCE, REPO, TRAIN_GPT, fake_log, make_tiny_dataset, subprocess_env,
                                   tiny_env)

import logparse  # noqa: E402  (tools/ is on sys.path via records_sweep_support)
import record  # noqa: E402

needs_train_gpt = pytest.mark.skipif(not TRAIN_GPT.is_file(), reason="train_gpt.py not present")


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory) -> list[Path]:
    """Two real tiny CPU runs of train_gpt.py (seeds 1 and 2): their logs."""
    if not TRAIN_GPT.is_file():
        pytest.skip("train_gpt.py not present")
    root = tmp_path_factory.mktemp("tiny_runs")
    data = make_tiny_dataset(root / "data")
    logs = []
    for seed in (1, 2):
        out = root / f"out{seed}"
        env = tiny_env(data, SEED=seed, RUN_ID=f"seed{seed}", OUT_DIR=out, ITERATIONS=12, VAL_LOSS_EVERY=6)
        p = subprocess.run([sys.executable, str(TRAIN_GPT)], env=subprocess_env(env), capture_output=True,
                           text=True, timeout=300, cwd=root)
        assert p.returncode == 0, p.stderr[-2000:]
        logs.append(out / "logs" / f"seed{seed}.txt")
    return logs


@pytest.fixture(scope="module")
def tiny_record(tiny_logs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("records")
    return record.new_record(tiny_logs, track="track_non_record_16mb", name="TinyCPU", author="Ada Tester",
                             github_id="adatest", blurb="Two tiny CPU seeds.", date="2026-11-25", root=root)


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- parser

@needs_train_gpt
def test_parser_reads_every_part_of_a_real_log(tiny_logs):
    run = logparse.parse_log(tiny_logs[0])
    summary = logparse.load_summary(tiny_logs[0].with_suffix(".json"))
    assert run.finished and run.seed == 1 and run.iterations == 12 and run.steps == 12
    assert run.source == TRAIN_GPT.read_bytes()  # byte for byte
    import train_gpt
    from dataclasses import fields
    assert set(run.hparams) == {f.name.upper() for f in fields(train_gpt.Hyperparameters)}
    assert run.hparams == summary["hparams"]
    assert [p.step for p in run.val] == [6, 12]
    assert run.train and run.train[0].step == 1 and run.train[0].tok_s > 0
    assert run.bytes_code == summary["bytes_code"] == len(run.source)
    assert run.bytes_total == run.bytes_code + run.bytes_model == summary["bytes_total"]
    assert math.isclose(run.val_loss, summary["val_loss"], abs_tol=5e-9)
    assert math.isclose(run.val_bpb, summary["val_bpb"], abs_tol=5e-9)
    assert run.device == "cpu" and run.world_size == 1 and run.hardware.startswith("cpu")
    assert run.train_time_ms == summary["train_time_ms"]


def test_parser_calls_a_log_without_the_exact_line_unfinished(tmp_path):
    full = fake_log()
    cut = "".join(l for l in full.splitlines(True) if not l.startswith("final_int8_zlib_roundtrip_exact"))
    run = logparse.parse_text(cut, "cut.txt")
    assert not run.finished and run.roundtrip_val_loss is not None
    with pytest.raises(logparse.LogError, match="unfinished"):
        run.require_finished()


def test_parser_extracts_a_source_without_final_newline_byte_exact():
    src = b"print('no newline at the end')\n# \xc3\xa9t\xc3\xa9"
    run = logparse.parse_text(fake_log(source=src))
    assert run.source == src and run.finished


def test_parser_ignores_log_shaped_lines_inside_the_source():
    src = "x = 1\nstep:5/20 val_loss:9.0 val_bpb:9.0 train_time:1ms step_avg:1ms\nhparam SEED=999\n"
    run = logparse.parse_text(fake_log(source=src, seed=7))
    assert run.seed == 7 and all(p.val_loss < 9 for p in run.val)


# ----------------------------------------------------------------------------- new

@needs_train_gpt
def test_new_record_from_two_tiny_cpu_runs(tiny_record, tiny_logs):
    d = tiny_record
    assert d.name == "2026-11-25_TinyCPU" and d.parent.name == "track_non_record_16mb"
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "requirements.txt", "submission.json",
                                                  "train_gpt.py", "train_seed1.txt", "train_seed2.txt"]
    assert (d / "train_gpt.py").read_bytes() == TRAIN_GPT.read_bytes()
    runs = [logparse.parse_log(p) for p in tiny_logs]
    sub = json.loads((d / "submission.json").read_text())
    for k in record.SUBMISSION_FIELDS:
        assert k in sub
    assert sub["author"] == "Ada Tester" and sub["github_id"] == "adatest" and sub["date"] == "2026-11-25"
    assert sub["val_loss"] == round((runs[0].val_loss + runs[1].val_loss) / 2, 8)
    assert sub["val_bpb"] == round((runs[0].val_bpb + runs[1].val_bpb) / 2, 8)
    assert sub["bytes_total"] == max(r.bytes_total for r in runs) and sub["bytes_code"] == len(TRAIN_GPT.read_bytes())
    assert sub["seed_results"]["2"]["val_loss"] == runs[1].val_loss and sub["seed_results"]["1"]["steps"] == 12
    std = math.sqrt(((runs[0].val_loss - runs[1].val_loss) ** 2) / 2)
    assert math.isclose(sub["statistics"]["val_loss_std"], std, abs_tol=1e-8)
    readme = (d / "README.md").read_text()
    assert f"| 1 | 12 | {runs[0].val_loss:.8f} | {runs[0].val_bpb:.8f} | {runs[0].bytes_total:,} |" in readme
    assert runs[0].hardware in readme and "for SEED in 1 2; do" in readme
    # configuration: only what differs from train_gpt.Hyperparameters' defaults
    assert "| `NUM_LAYERS` | `2` |" in readme and "| `MODEL_DIM` | `64` |" in readme
    assert "`MATRIX_LR`" not in readme and "`ROPE_BASE`" not in readme
    assert "torch" in (d / "requirements.txt").read_text().split()
    assert record.check_record(d) == ([], [])


def test_new_refuses_a_seed_over_the_size_cap(tmp_path):
    ok = _write(tmp_path, "a.txt", fake_log(seed=1))
    big = _write(tmp_path, "b.txt", fake_log(seed=2, bytes_model=15_999_990))
    with pytest.raises(record.RecordError, match=r"seed 2 total size 16000\d+ bytes exceeds the cap"):
        record.new_record([ok, big], track="track_10min_16mb", name="Big", author="a", github_id="g",
                          root=tmp_path / "records")
    assert not (tmp_path / "records" / "track_10min_16mb").exists() or \
        not any((tmp_path / "records" / "track_10min_16mb").iterdir())


def test_new_refuses_a_log_without_final_roundtrip_line(tmp_path):
    ok = _write(tmp_path, "a.txt", fake_log(seed=1))
    bad = _write(tmp_path, "b.txt", fake_log(seed=2, finished=False))
    with pytest.raises(record.RecordError, match="b.txt: no final round-trip line"):
        record.new_record([ok, bad], track="track_10min_16mb", name="X", author="a", github_id="g",
                          root=tmp_path / "records")


def test_new_refuses_logs_with_different_sources(tmp_path):
    a = _write(tmp_path, "a.txt", fake_log(seed=1))
    b = _write(tmp_path, "b.txt", fake_log(seed=2, source=FAKE_SOURCE + "# tweak\n"))
    with pytest.raises(record.RecordError, match="sources differ"):
        record.new_record([a, b], track="track_10min_16mb", name="X", author="a", github_id="g",
                          root=tmp_path / "records")


def test_new_refuses_an_existing_folder_unless_replace(tmp_path):
    a = _write(tmp_path, "a.txt", fake_log(seed=1, val_loss=2.5))
    kw = dict(track="track_10min_16mb", name="Again", author="a", github_id="g", date="2026-01-02",
              root=tmp_path / "records")
    d = record.new_record([a], **kw)
    with pytest.raises(record.RecordError, match="exists .*--replace"):
        record.new_record([a], **kw)
    b = _write(tmp_path, "b.txt", fake_log(seed=3, val_loss=2.4))
    d2 = record.new_record([b], replace=True, **kw)
    assert d2 == d and json.loads((d / "submission.json").read_text())["val_loss"] == 2.4
    assert sorted(p.name for p in d.parent.iterdir()) == ["2026-01-02_Again"]  # no temp or old folders left


def test_cli_prints_one_error_line_and_exits_1(tmp_path, capsys):
    bad = _write(tmp_path, "b.txt", fake_log(seed=2, finished=False))
    rc = record.main(["new", "--track", "track_10min_16mb", "--name", "X", "--author", "a", "--github-id", "g",
                      "--root", str(tmp_path / "r"), str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "no final round-trip line" in err[0]


# ----------------------------------------------------------------------------- significance

X = [2.0512, 2.0498, 2.0531, 2.0487, 2.0520]     # new record's per-seed val_loss
Y = [2.0621, 2.0660, 2.0598, 2.0644]             # previous record's


def test_welch_test_matches_scipy():
    from scipy import stats
    for delta in (0.0, 0.005, 0.02):
        ours = record.significance_welch(X, Y, delta=delta)
        ref = stats.ttest_ind(Y, [x + delta for x in X], equal_var=False, alternative="greater")
        assert math.isclose(ours["t"], ref.statistic, rel_tol=1e-9)
        assert math.isclose(ours["p_value"], ref.pvalue, rel_tol=1e-9)
        assert math.isclose(ours["df"], ref.df, rel_tol=1e-9)
    # the other sign of the question: scipy's 'less' on the swapped samples is the same test
    ref2 = stats.ttest_ind([x + 0.005 for x in X], Y, equal_var=False, alternative="less")
    assert math.isclose(record.significance_welch(X, Y)["p_value"], ref2.pvalue, rel_tol=1e-9)


def test_one_sample_test_matches_scipy():
    from scipy import stats
    for base, delta in ((2.0620, 0.005), (2.0600, 0.0), (2.0530, 0.005)):
        ours = record.significance_vs_number(X, base, delta=delta)
        ref = stats.ttest_1samp(X, base - delta, alternative="less")
        assert math.isclose(ours["t"], -ref.statistic, rel_tol=1e-9)
        assert math.isclose(ours["p_value"], ref.pvalue, rel_tol=1e-9)


def test_verdicts():
    assert record.significance_welch(X, Y)["verdict"] == "record"            # ~0.013 nats better, p << 0.01
    assert record.significance_vs_number(X, 2.0530)["verdict"] == "not significant"  # better by < 0.005
    assert record.significance_vs_number(X, 2.0400)["verdict"] == "worse"
    one = record.significance_vs_number([2.0], 2.1)
    assert one["p_value"] is None and one["verdict"] == "not significant"  # one seed proves nothing


@needs_train_gpt
def test_significance_cli_against_number_and_folder(tiny_record, capsys):
    assert record.main(["significance", str(tiny_record), "--against", "9.0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"].startswith("one-sample") and res["n"] == 2 and res["mean_improvement"] > 3
    assert record.main(["significance", str(tiny_record), "--against", str(tiny_record), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"].startswith("Welch") and res["mean_improvement"] == 0 and res["verdict"] == "not significant"


# ----------------------------------------------------------------------------- check

@needs_train_gpt
def test_check_catches_tampered_submission_json(tiny_record, tmp_path, capsys):
    d = Path(shutil.copytree(tiny_record, tmp_path / "rec"))
    sub = json.loads((d / "submission.json").read_text())
    sub["val_bpb"] = round(sub["val_bpb"] - 0.01, 8)
    sub["seed_results"]["1"]["val_loss"] = 1.0
    del sub["github_id"]
    (d / "submission.json").write_text(json.dumps(sub))
    problems, _ = record.check_record(d)
    text = "\n".join(problems)
    assert "val_bpb" in text and "seed_results[1].val_loss" in text and "lacks 'github_id'" in text
    assert record.main(["check", str(d)]) == 1
    assert "problem(s)" in capsys.readouterr().out


@needs_train_gpt
def test_check_catches_a_modified_train_gpt(tiny_record, tmp_path):
    d = Path(shutil.copytree(tiny_record, tmp_path / "rec"))
    code = (d / "train_gpt.py").read_text()
    (d / "train_gpt.py").write_text(code.replace("matrix_lr: float = 0.035", "matrix_lr: float = 0.036"))
    problems, _ = record.check_record(d)
    assert any("differs from the source the logs embed" in p for p in problems)
    (d / "train_gpt.py").write_text(code + "\ndef broken(:\n")
    problems, _ = record.check_record(d)
    assert any("does not compile" in p for p in problems)


def test_check_reports_missing_files_and_over_cap(tmp_path):
    a = _write(tmp_path, "a.txt", fake_log(seed=1))
    d = record.new_record([a], track="track_10min_16mb", name="Ok", author="a", github_id="g", root=tmp_path / "r")
    (d / "README.md").unlink()
    log = d / "train_seed1.txt"
    log.write_text(log.read_text().replace("Serialized model int8+zlib: 15000000", "Serialized model int8+zlib: 16000000")
                   .replace("Total submission size int8+zlib: 15000", "Total submission size int8+zlib: 16000"))
    problems, _ = record.check_record(d)
    text = "\n".join(problems)
    assert "missing README.md" in text and "exceeds the cap" in text and "bytes_total" in text
