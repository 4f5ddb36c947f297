"""tools/runs/logparse.py and tools/runs/record.py: submission folders from real tiny CPU runs, the self-extracting counted
code, the record/non-record decision, refusals of logs that contradict themselves (never running anything from a
log), statistics, `check` and `check --run`."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import train_gpt
from tests.helpers import FAKE_SOURCE, REPO, TRAIN_GPT, fake_log, make_byte_dataset, run_concurrently, run_train, tiny_env
from tools import common as C
from tools.runs import logparse, plot_runs, record

EXAMPLE = REPO / "records" / "track_non_record_16mb" / "2026-11-27_Example_TinyShakespeareCPU"


@pytest.fixture(scope="module")
def tiny_logs(tiny_data, tmp_path_factory) -> list[Path]:
    """Two real tiny CPU runs of train_gpt.py (seeds 1 and 2, two processes at once): their logs, and the source
    they embed."""
    root = tmp_path_factory.mktemp("tiny_runs")
    script = root / "train_gpt.py"  # one copy for both seeds: the repository's file may change between the runs
    shutil.copyfile(TRAIN_GPT, script)
    envs = [tiny_env(tiny_data, root, SEED=seed, RUN_ID=f"seed{seed}", ITERATIONS=12, VAL_LOSS_EVERY=6, ARTIFACT="int6+brotli")
            for seed in (1, 2)]
    for p in run_concurrently(*(lambda env=env: run_train(env, script=script) for env in envs)):
        assert p.returncode == 0, p.stderr[-2000:]
    return [root / "logs" / f"seed{seed}.txt" for seed in (1, 2)]


@pytest.fixture(scope="module")
def tiny_record(tiny_logs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("records")
    return record.new_record(tiny_logs, name="TinyCPU", author="Ada Tester", github_id="adatest",
                             blurb="Two tiny CPU seeds.", date="2026-11-25", root=root)


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def eligible_log(seed: int, **kw) -> str:
    """A log with everything the 10-minute record track asks: 8xH100, under 600 s each, the published FineWeb."""
    args = dict(seed=seed, hardware="NVIDIA H100 80GB HBM3 x8", val_tokens=62_021_846, step_ms=25.0,
                tokenizer="./data/tokenizers/fineweb_1024_bpe.model", eval_ms=90_000.0)
    args.update(kw)
    return fake_log(**args)


NEW = dict(name="X", author="a", github_id="g", date="2026-01-02")


# ----------------------------------------------------------------------------- parser

@pytest.mark.slow
def test_parser_reads_every_part_of_a_real_log(tiny_logs):
    run = logparse.parse_log(tiny_logs[0])
    summary = logparse.load_summary(tiny_logs[0].with_suffix(".json"))
    assert run.finished and run.seed == 1 and run.iterations == 12 and run.steps == 12
    assert logparse.consistency_problems(run) == []
    assert set(run.hparams) == {f.name.upper() for f in fields(train_gpt.Hyperparameters)}
    assert run.hparams == summary["hparams"]
    assert [p.step for p in run.val] == [6, 12] and run.train and run.train[0].tok_s > 0
    assert run.bytes_code == summary["bytes_code"] == len(train_gpt.shipped_code(run.source))
    assert run.bytes_total == run.bytes_code + run.bytes_model == summary["bytes_total"]
    assert run.size_cap == summary["size_cap_bytes"] and run.margin == run.size_cap - run.bytes_total
    assert run.artifact_scheme == summary["artifact_scheme"] == "int6-emb8-bigram6+brotli"
    assert math.isclose(run.val_loss, summary["val_loss"], abs_tol=5e-9)
    assert math.isclose(run.val_bpb, summary["val_bpb"], abs_tol=5e-9)
    assert run.device == "cpu" and run.world_size == 1 and run.hardware.startswith("cpu")
    assert run.train_time_ms == summary["train_time_ms"] and run.eval_time_ms == pytest.approx(summary["eval_time_ms"], abs=1)
    assert run.data_val_tokens > 0 and run.torch_version == train_gpt.torch.__version__


def test_parser_calls_a_log_without_the_exact_line_unfinished():
    full = fake_log()
    cut = "".join(line for line in full.splitlines(True) if not line.startswith("final_int8_zlib_roundtrip_exact"))
    run = logparse.parse_text(cut, "cut.txt")
    assert not run.finished and run.roundtrip_val_loss is not None
    with pytest.raises(C.ToolError, match="unfinished"):
        run.require_finished()


def test_parser_extracts_a_source_without_final_newline_byte_exact():
    src = b"print('no newline at the end')\n# \xc3\xa9t\xc3\xa9"
    run = logparse.parse_text(fake_log(source=src))
    assert run.source == src and run.finished and logparse.consistency_problems(run) == []


def test_parser_ignores_log_shaped_lines_inside_the_source():
    src = "x = 1\nstep:5/20 val_loss:9.0 val_bpb:9.0 train_time:1ms step_avg:1ms\nhparam SEED=999\n" \
          "final_int8_zlib_roundtrip_exact val_loss:0.1 val_bpb:0.1\n"
    run = logparse.parse_text(fake_log(source=src, seed=7))
    assert run.seed == 7 and all(p.val_loss < 9 for p in run.val) and logparse.consistency_problems(run) == []


def test_summaries_with_nan_are_refused(tmp_path):
    p = _write(tmp_path, "s.json", '{"val_loss": NaN}')
    with pytest.raises(C.ToolError, match="NaN, not a finite number"):
        logparse.load_summary(p)


# ----------------------------------------------------------------------------- the counted code

@pytest.mark.slow
def test_wrap_is_a_smaller_script_that_runs_the_same_source_byte_for_byte(tmp_path):
    src = TRAIN_GPT.read_bytes()
    code = record.wrap(src)
    assert record.unwrap(code) == train_gpt.strip_source(src) and record.wrap(src) == code  # deterministic
    assert code == train_gpt.shipped_code(src) and len(code) < 0.25 * len(src)  # what a run counts as its Code size
    assert record.wrap(record.unwrap(code)) == code  # the stripped source ships as the same bytes
    with pytest.raises(C.ToolError, match="already"):
        record.wrap(code)
    assert record.unwrap(b"print('hi')\n") is None and record.unwrap(code.replace(b"exec(", b"eval(")) is None
    # the wrapped script runs the payload as train_gpt.py: same output, inspect.getsource works (triton's @jit needs it)
    probe = (b"import inspect, sys\ndef f():\n    return 42\nprint(f(), inspect.getsource(f).splitlines()[0], __name__,"
             b" sorted(k for k in ('brotli', 'lzma') if k in sys.modules) != [])\n")
    (tmp_path / "raw.py").write_bytes(probe)
    (tmp_path / "wrapped.py").write_bytes(record.wrap(probe))
    outs = [subprocess.run([sys.executable, str(tmp_path / n)], capture_output=True, text=True, cwd=tmp_path).stdout
            for n in ("raw.py", "wrapped.py")]
    assert outs[0].split()[:4] == outs[1].split()[:4] == ["42", "def", "f():", "__main__"]


def test_wrap_refuses_what_is_not_a_python_source_and_never_writes_over_its_source(tmp_path, capsys):
    """`record wrap` of random bytes or of a file that does not parse used to end in a UnicodeDecodeError or
    TokenError traceback, and `record wrap X -o X` replaced the readable source by its shipped form."""
    cases = [("bytes.py", bytes(range(128, 256)), "not UTF-8 text"), ("broken.py", b"def f(:\n", "does not compile"),
             ("nul.py", b"x = 1\0\n", "does not compile")]
    for name, content, message in cases:
        (tmp_path / name).write_bytes(content)
        assert C.run_cli(record.main, ["wrap", str(tmp_path / name), "-o", str(tmp_path / "out.py")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    src = tmp_path / "script.py"
    src.write_bytes(b"print('hi')\n")
    assert C.run_cli(record.main, ["wrap", str(src), "-o", str(tmp_path / "." / "script.py")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is the source it wraps" in err and err.count("\n") == 1, err
    assert src.read_bytes() == b"print('hi')\n" and not (tmp_path / "out.py").exists()


@pytest.mark.slow
def test_defaults_are_read_with_ast_and_match_the_dataclass():
    defaults = record.hparam_defaults(TRAIN_GPT.read_bytes())
    assert defaults == {f.name.upper(): str(f.default) for f in fields(train_gpt.Hyperparameters)}
    assert record.hparam_defaults(record.wrap(TRAIN_GPT.read_bytes())) == defaults
    assert record.hparam_defaults(b"def broken(:\n") is None


def test_building_a_record_never_runs_code_from_a_log(tmp_path):
    """`record new` once imported the logged source to read its defaults; a log whose source writes a file
    on import created that file."""
    marker = tmp_path / "pwned"
    evil = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            "class Hyperparameters:\n    matrix_lr: float = 0.035\n    num_layers: int = 9\n"
            f"    side: str = str(pathlib.Path({str(marker)!r}).touch())\n")
    logs = [_write(tmp_path, f"s{s}.txt", fake_log(seed=s, source=evil)) for s in (1, 2)]
    d = record.new_record(logs, root=tmp_path / "records", **NEW)
    assert not marker.exists()
    readme = (d / "README.md").read_text()
    assert "| `NUM_LAYERS` | `7` |" in readme and "`MATRIX_LR`" not in readme  # defaults came from the ast
    assert record.check_record(d)[0] == [] and not marker.exists()
    assert record.unwrap((d / "train_gpt.py").read_bytes()) == train_gpt.strip_source(evil.encode())


# ----------------------------------------------------------------------------- new

@pytest.mark.slow
def test_new_record_from_two_tiny_cpu_runs(tiny_record, tiny_logs):
    d = tiny_record
    assert d.name == "2026-11-25_TinyCPU" and d.parent.name == "track_non_record_16mb"
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "requirements.txt", "submission.json",
                                                  "train_gpt.py", "train_seed1.log", "train_seed2.log"]
    runs = [logparse.parse_log(p) for p in tiny_logs]
    code = (d / "train_gpt.py").read_bytes()
    assert record.unwrap(code) == train_gpt.strip_source(runs[0].source) and len(code) < len(runs[0].source) // 2
    sub = json.loads((d / "submission.json").read_text())
    for k in record.SUBMISSION_FIELDS:
        assert k in sub, k
    assert sub["track"] == "non_record_16mb" and "not 8xH100" in sub["non_record_reason"]
    assert "not the published FineWeb sp1024 validation set" in sub["non_record_reason"]
    assert sub["author"] == "Ada Tester" and sub["github_id"] == "adatest" and sub["date"] == "2026-11-25"
    assert sub["seeds"] == [1, 2]
    assert sub["val_loss"] == round((runs[0].val_loss + runs[1].val_loss) / 2, 8)
    assert sub["val_bpb"] == round((runs[0].val_bpb + runs[1].val_bpb) / 2, 8)
    assert math.isclose(sub["val_loss_std"], abs(runs[0].val_loss - runs[1].val_loss) / math.sqrt(2), abs_tol=1e-8)
    assert sub["bytes_code"] == len(code) and sub["bytes_code_raw"] == len(runs[0].source)
    totals = [r.bytes_model + len(code) for r in runs]
    assert [sub["seed_results"][s]["artifact_bytes"] for s in ("1", "2")] == totals
    assert sub["bytes_total"] == sub["artifact_bytes_max"] == max(totals) and sub["artifact_bytes_mean"] == round(sum(totals) / 2)
    assert sub["seed_results"]["2"]["val_loss"] == runs[1].val_loss and sub["seed_results"]["1"]["steps"] == 12
    assert sub["pytorch_version"] == runs[0].torch_version and sub["hardware"].startswith("cpu")
    c = sub["compliance"]
    assert c["train_under_600s"] and c["eval_under_600s"] and c["artifact_under_16mb"] and not c["hardware_8xh100"]
    assert c["fineweb_val_tokens"] == 62_021_846 and c["val_tokens"] == runs[0].data_val_tokens
    readme = (d / "README.md").read_text()
    assert f"| 1 | 12 | {runs[0].val_loss:.8f} | {runs[0].val_bpb:.8f} | {runs[0].bytes_model:,} | {totals[0]:,} |" in readme
    assert runs[0].hardware in readme and "for SEED in 1 2; do" in readme and f"{len(code):,} bytes" in readme
    assert "| `NUM_LAYERS` | `2` |" in readme and "| `MODEL_DIM` | `64` |" in readme
    assert "`MATRIX_LR`" not in readme and "`ROPE_BASE`" not in readme
    reqs = (d / "requirements.txt").read_text().split()
    assert "torch" in reqs and ("brotli" in reqs or "lzma" in code[:20].decode())
    assert record.check_record(d) == ([], [])


@pytest.mark.slow
def test_check_run_reproduces_the_final_line_in_an_empty_folder(tiny_record, tiny_data, tmp_path, capsys):
    """The record's self-extracting train_gpt.py, run alone with the logged settings, ends on the log's exact line."""
    assert C.run_cli(record.main, ["check", str(tiny_record), "--run", "--data", str(tiny_data), "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and len(out["reruns"]) == 1 and "(matches the log exactly)" in out["reruns"][0]["message"]
    logged = logparse.parse_log(tiny_record / "train_seed1.log")
    assert f"val_loss:{logged.val_loss:.8f} val_bpb:{logged.val_bpb:.8f}" in out["reruns"][0]["message"]
    # on other data the same script cannot end on the same line: the comparison is real
    other = make_byte_dataset(tmp_path / "other")
    (other / "tiny_val_000000.bin").write_bytes((tiny_data / "tiny_train_000000.bin").read_bytes())
    assert C.run_cli(record.main, ["check", str(tiny_record), "--run", "--data", str(other), "--seed", "1"]) == 1
    text = capsys.readouterr().out
    assert "seed 1 re-run: final_int8_zlib_roundtrip_exact" in text and "vs the log's" in text


@pytest.mark.parametrize("edit, reason", [
    (lambda t: t.replace("size int8-emb8-bigram8+zlib: 15000069", "size int8-emb8-bigram8+zlib: 14000069")
     .replace("(margin to 16000000: 999931", "(margin to 16000000: 1999931"), "is not Code size"),
    (lambda t: t.replace("final_int8_zlib_roundtrip_exact val_loss:2.34567891", "final_int8_zlib_roundtrip_exact val_loss:2.34567891")
     + "final_int8_zlib_roundtrip_exact val_loss:1.00000000 val_bpb:0.50000000\n", "2 'final_int8_zlib_roundtrip_exact' lines"),
    (lambda t: t + "final_int8_zlib_roundtrip val_loss:1.0000 val_bpb:0.5000 eval_time:1ms\n", "2 'final_int8_zlib_roundtrip' lines"),
    (lambda t: t.replace("val_loss:2.34567891", "val_loss:nan"), "not a finite number"),
    (lambda t: t.replace("val_bpb:1.23456789", "val_bpb:-inf"), "not a finite number"),
    (lambda t: t.replace("val_loss:2.34567891", "val_loss:2.30000000"), "is not the exact"),
    (lambda t: t + "OVER BUDGET: the submission is 5 bytes over the 16000000-byte cap\n", "yet the log says OVER BUDGET"),
    (lambda t: t.replace("Code size: 69 bytes", "Code size: 70 bytes"), "more than the 69 bytes of the embedded source"),
    (lambda t: t.replace("hparam SIZE_CAP_BYTES=16000000", "hparam SIZE_CAP_BYTES=20000000"), "SIZE_CAP_BYTES=20000000"),
])
def test_logs_that_contradict_themselves_are_refused_by_new_and_check(edit, reason, tmp_path):
    """A Total that is not code + model, a second (better) final line, nan/-inf, an OVER BUDGET line that
    does not match the sizes: `new` used these and wrote NaN into submission.json."""
    good = fake_log(seed=1)
    assert f"Code size: {len(FAKE_SOURCE)} bytes" in good and len(FAKE_SOURCE) == 69
    bad = edit(good)
    assert bad != good
    a, b = _write(tmp_path, "a.txt", fake_log(seed=2)), _write(tmp_path, "b.txt", bad)
    with pytest.raises(C.ToolError, match=reason):
        record.new_record([a, b], root=tmp_path / "records", **NEW)
    assert not (tmp_path / "records" / "track_non_record_16mb").exists() or \
        not any((tmp_path / "records" / "track_non_record_16mb").iterdir())
    d = record.new_record([a], root=tmp_path / "records", **NEW)  # a good folder, then the bad log put in it
    shutil.copyfile(b, d / "train_seed2.log")
    assert any(reason.split("|")[0] in p for p in record.check_record(d)[0])


def test_a_model_over_the_cap_is_refused_whatever_its_total_line_says(tmp_path):
    """A 16+ MB model with an OVER BUDGET line but a Total edited under the cap."""
    over = fake_log(seed=1, bytes_model=16_100_000)
    assert "OVER BUDGET" in over
    lied = over.replace("size int8-emb8-bigram8+zlib: 16100069", "size int8-emb8-bigram8+zlib: 15900069") \
        .replace("(margin to 16000000: -100069 bytes)", "(margin to 16000000: 99931 bytes)")
    assert lied.count("15900069") == 1 and "99931" in lied
    for text, reason in ((over, "OVER BUDGET"), (lied, "is not Code size")):
        with pytest.raises(C.ToolError, match=reason):
            record.new_record([_write(tmp_path, "o.txt", text)], root=tmp_path / "r", **NEW)
    # fits its own (raised) cap, but not the challenge's: model + counted code > 16,000,000
    big = fake_log(seed=1, bytes_model=16_000_000, cap=17_000_000)
    with pytest.raises(C.ToolError, match=r"seed 1 total size 1600\d{4} bytes .* exceeds the cap of 16000000"):
        record.new_record([_write(tmp_path, "big.txt", big)], root=tmp_path / "r", **NEW)


def test_new_refuses_unfinished_logs_different_sources_configs_and_seeds(tmp_path):
    ok = _write(tmp_path, "a.txt", fake_log(seed=1))
    cases = [(fake_log(seed=2, finished=False), "b.txt: no final round-trip line"),
             (fake_log(seed=2, source=FAKE_SOURCE + "# tweak\n"), "sources differ"),
             (fake_log(seed=2, hparams={"MATRIX_LR": "0.05"}), "configurations differ: MATRIX_LR"),
             (fake_log(seed=1), "several logs for seed"),
             (fake_log(seed=2, hparams={"EVAL_ARTIFACT": "models/x.ptz"}), "evaluation-only run")]
    for text, reason in cases:
        with pytest.raises(C.ToolError, match=reason):
            record.new_record([ok, _write(tmp_path, "b.txt", text)], root=tmp_path / "records", **NEW)


def test_new_refuses_an_existing_folder_unless_replace(tmp_path):
    a = _write(tmp_path, "a.txt", fake_log(seed=1, val_loss=2.5))
    kw = dict(name="Again", author="a", github_id="g", date="2026-01-02", root=tmp_path / "records")
    d = record.new_record([a], **kw)
    with pytest.raises(C.ToolError, match="exists .*--replace"):
        record.new_record([a], **kw)
    b = _write(tmp_path, "b.txt", fake_log(seed=3, val_loss=2.4))
    d2 = record.new_record([b], replace=True, **kw)
    assert d2 == d and json.loads((d / "submission.json").read_text())["val_loss"] == 2.4
    assert sorted(p.name for p in d.parent.iterdir()) == ["2026-01-02_Again"]  # no temp or old folders left


def test_eligible_runs_go_to_the_record_track_and_the_rest_never_do(tmp_path):
    logs = [_write(tmp_path, f"e{s}.txt", eligible_log(s)) for s in (1, 2, 3)]
    d = record.new_record(logs, root=tmp_path / "records", **NEW)
    sub = json.loads((d / "submission.json").read_text())
    assert d.parent.name == "track_10min_16mb" and sub["track"] == "10min_16mb" and "non_record_reason" not in sub
    assert sub["hardware"] == "8xNVIDIA H100 80GB HBM3" and all(v is True for k, v in sub["compliance"].items()
                                                                 if k in ("train_under_600s", "eval_under_600s",
                                                                          "artifact_under_16mb", "hardware_8xh100",
                                                                          "published_fineweb_sp1024"))
    assert record.check_record(d) == ([], [])
    for kw, reason in ((dict(hardware="NVIDIA H100 80GB HBM3 x1"), "not 8xH100"),
                       (dict(hardware="NVIDIA A100-SXM4-80GB x8"), "not 8xH100"),
                       (dict(step_ms=31_000.0), "training took up to 620.0 s"),
                       (dict(eval_ms=601_000.0), "evaluation took up to 601.0 s"),
                       (dict(val_tokens=40_540_160), "not the published FineWeb sp1024")):
        logs = [_write(tmp_path, f"n{s}.txt", eligible_log(s, **kw)) for s in (1, 2)]
        d = record.new_record(logs, root=tmp_path / "records", replace=True, **NEW)
        sub = json.loads((d / "submission.json").read_text())
        assert d.parent.name == "track_non_record_16mb" and reason in sub["non_record_reason"], sub["non_record_reason"]
        with pytest.raises(C.ToolError, match="not eligible for the record track: .*" + reason.split(" up")[0]):
            record.new_record(logs, root=tmp_path / "other", track="track_10min_16mb", **NEW)
        # moved by hand into the record track, check refuses it
        moved = tmp_path / "records" / "track_10min_16mb" / "moved"
        shutil.rmtree(moved, ignore_errors=True)
        shutil.copytree(d, moved)
        assert any("in the record track but not eligible" in p for p in record.check_record(moved)[0])


def test_cli_prints_one_error_line_and_exits_1(tmp_path, capsys):
    bad = _write(tmp_path, "b.txt", fake_log(seed=2, finished=False))
    rc = C.run_cli(record.main, ["new", "--name", "X", "--author", "a", "--github-id", "g", "--root", str(tmp_path / "r"), str(bad)])
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
    flat = record.significance_vs_number([2.0, 2.0], 2.1)  # no spread: no infinite t in the JSON
    assert flat["t"] is None and flat["p_value"] == 0.0 and json.loads(record.dumps(flat))["verdict"] == "record"


def test_statistics_refuse_non_finite_inputs(tmp_path, capsys):
    """Significance against 7.0 once on nan losses said `t=inf p=0 verdict: record`."""
    for call in (lambda: record.significance_vs_number([float("nan"), 2.0], 7.0),
                 lambda: record.significance_vs_number([2.0, 2.1], float("inf")),
                 lambda: record.significance_welch([2.0, 2.1], [2.2, float("-inf")]),
                 lambda: record.significance_vs_number([2.0, 2.1], 7.0, delta=float("nan")),
                 lambda: record.significance_vs_number([2.0, 2.1], 7.0, alpha=1.5)):
        with pytest.raises(C.ToolError, match="finite|alpha"):
            call()
    with pytest.raises(C.ToolError, match="non-finite"):
        record.dumps({"x": float("nan")})
    good = record.new_record([_write(tmp_path, f"s{s}.txt", fake_log(seed=s)) for s in (1, 2)], root=tmp_path / "r", **NEW)
    assert C.run_cli(record.main, ["significance", str(good), "--against", "nan"]) == 1
    assert "must be finite numbers" in capsys.readouterr().err
    bad = Path(shutil.copytree(good, tmp_path / "bad"))
    log = bad / "train_seed2.log"
    log.write_text(log.read_text().replace("val_loss:2.34567891", "val_loss:nan").replace("val_loss:2.3457", "val_loss:nan"))
    assert C.run_cli(record.main, ["significance", str(bad), "--against", "7.0"]) == 1
    err = capsys.readouterr().err
    assert "not a finite number" in err and err.count("\n") == 1


@pytest.mark.slow
def test_significance_cli_against_number_and_folder(tiny_record, capsys):
    assert C.run_cli(record.main, ["significance", str(tiny_record), "--against", "9.0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"].startswith("one-sample") and res["n"] == 2 and res["mean_improvement"] > 3
    assert C.run_cli(record.main, ["significance", str(tiny_record), "--against", str(tiny_record), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"].startswith("Welch") and res["mean_improvement"] == 0 and res["verdict"] == "not significant"


# ----------------------------------------------------------------------------- check

@pytest.mark.slow
def test_check_catches_tampered_submission_json(tiny_record, tmp_path, capsys):
    d = Path(shutil.copytree(tiny_record, tmp_path / "rec"))
    sub = json.loads((d / "submission.json").read_text())
    sub["val_bpb"] = round(sub["val_bpb"] - 0.01, 8)
    sub["seed_results"]["1"]["val_loss"] = 1.0
    sub["compliance"]["hardware_8xh100"] = True
    sub["bytes_code"] = 1000
    del sub["github_id"]
    (d / "submission.json").write_text(json.dumps(sub))
    text = "\n".join(record.check_record(d)[0])
    for needle in ("submission.json val_bpb", "seed_results.1.val_loss", "lacks 'github_id'", "compliance.hardware_8xh100",
                   "bytes_code is 1000"):
        assert needle in text, needle
    assert C.run_cli(record.main, ["check", str(d)]) == 1
    assert "problem(s)" in capsys.readouterr().out
    (d / "submission.json").write_text(json.dumps(sub).replace('"val_bpb": ', '"val_bpb": NaN, "x": ', 1))
    assert any("not a finite number" in p for p in record.check_record(d)[0])


@pytest.mark.slow
def test_check_catches_a_modified_train_gpt(tiny_record, tmp_path):
    d = Path(shutil.copytree(tiny_record, tmp_path / "rec"))
    source = record.unwrap((d / "train_gpt.py").read_bytes())
    (d / "train_gpt.py").write_bytes(record.wrap(source + b"EDITED_AFTER_THE_RUNS = 1\n"))
    assert any("differ from the" in p for p in record.check_record(d)[0])
    (d / "train_gpt.py").write_bytes(source)  # the raw source runs the same code, but its raw bytes are counted
    problems, warnings = record.check_record(d)
    assert any("is not a self-extracting script" in w for w in warnings) and any("bytes_code is" in p for p in problems)
    (d / "train_gpt.py").write_bytes(source + b"\ndef broken(:\n")
    assert any("does not compile" in p for p in record.check_record(d)[0])


def test_check_reports_missing_files_and_over_cap(tmp_path):
    a = _write(tmp_path, "a.txt", fake_log(seed=1))
    d = record.new_record([a], root=tmp_path / "r", **NEW)
    (d / "README.md").unlink()
    log = d / "train_seed1.log"
    log.write_text(fake_log(seed=1, bytes_model=16_000_000, cap=17_000_000))
    text = "\n".join(record.check_record(d)[0])
    assert "missing README.md" in text and "exceeds the cap of 16000000" in text


def test_the_shipped_example_passes_the_static_check():
    assert EXAMPLE.is_dir(), "the worked example folder is missing"
    assert record.check_record(EXAMPLE) == ([], [])
    readme = (EXAMPLE / "README.md").read_text()
    assert "not a challenge entry" in readme.lower()
    sub = json.loads((EXAMPLE / "submission.json").read_text())
    assert sub["track"] == "non_record_16mb" and "example" in sub["name"].lower() and len(sub["seeds"]) >= 2
    assert sum(p.stat().st_size for p in EXAMPLE.iterdir()) < 600_000


def test_plot_runs_never_writes_its_chart_over_a_log_it_reads(tmp_path, capsys):
    """`plot_runs a.txt b.txt --out b.txt` used to replace the log b.txt by a PNG (the run's log lost)."""
    logs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for i, log in enumerate(logs):
        log.write_text(fake_log(seed=i))
    before = [log.read_bytes() for log in logs]
    for out in (logs[1], tmp_path / "." / "a.txt"):
        assert C.run_cli(plot_runs.main, [*map(str, logs), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "is one of the logs it plots" in err and err.count("\n") == 1, err
    assert [log.read_bytes() for log in logs] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_logparse_refuses_a_file_with_nothing_of_a_log_in_it(tmp_path, capsys):
    """`logparse` of random bytes, an empty file or a run's logs/<RUN_ID>.json used to print `UNFINISHED seed=None`
    and exit 0, as if it had read the log of a run that had not finished."""
    cases = {"random.bin": bytes(range(256)) * 4, "empty.txt": b"", "run.json": json.dumps({"val_bpb": 1.2}).encode()}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert C.run_cli(logparse.main, [str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: not a train_gpt.py log") and err.count("\n") == 1, err
    (tmp_path / "started.txt").write_text(fake_log(finished=False))
    assert C.run_cli(logparse.main, [str(tmp_path / "started.txt")]) == 0 and "UNFINISHED" in capsys.readouterr().out


def test_a_record_shipped_by_an_earlier_strip_still_runs_its_logged_source():
    """A record keeps the shipped form of the day it was written: golf's stripper has since cut more spaces, so the
    payload is compared with the logged source as a syntax tree, not byte for byte; a changed program is not."""
    source = b'def f(a: int, b=2) -> int:\n    """doc"""\n    return a * b  # twice\nx = f(3)\n'
    older = b'def f(a, b = 2):\n return a * b\nx = f(3)\n'  # the 2026-12-06 stripper's form
    assert train_gpt.strip_source(source) == b'def f(a,b=2):\n return a*b\nx=f(3)\n'
    assert record.ships_source(older, source) and record.ships_source(train_gpt.strip_source(source), source)
    assert record.ships_source(source, source)
    assert not record.ships_source(older.replace(b"a * b", b"a + b"), source)
    assert not record.ships_source(b"\xff not python", source)
