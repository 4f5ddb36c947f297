"""tools/runs/audit.py (`record audit`) and the challenge's log shapes in tools/runs/logparse.py: folders in the shape
of the challenge's records, built here, each check firing on a folder that breaks it and silent on one that does not;
`record new` refusing what its own audit would fail; the leaderboard read from a git history made here."""
from __future__ import annotations

import base64
import json
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, fake_log
from tools import common as C
from tools.runs import audit, logparse, record

EXAMPLE = REPO / "records" / "track_non_record_16mb" / "2026-11-27_Example_TinyShakespeareCPU"
SOURCE = ('"""a record\'s train_gpt.py"""\nimport os\nimport math\n\n\ndef main():\n    print(math.pi)\n\n\n'
          'class Model:\n    pass\n\n\nif __name__ == "__main__":\n    main()\n')
SEP = "=" * 100
GPU_ROW = "|   {i}  {gpu}          On  |   00000000:18:00.0 Off |                    0 |"
RATIO = 1.69  # nats per bpb of the sp1024 FineWeb split (2.0727 / 1.2244 in the baseline's log)
SEEDS = {1337: 1.1012, 42: 1.1021, 2025: 1.1005}  # seed -> val_bpb of a good 3-seed record


def challenge_log(seed: int = 1337, bpb: float = 1.1012, *, source: str = SOURCE, code: int | None = None,
                  model: int = 15_800_000, train_ms: float = 600_038, step_ms: float = 43.54, eval_ms: float = 70_000,
                  world: int = 8, gpu: str = "NVIDIA H100 80GB HBM3", val_tokens: int = 62_021_632,
                  after_stop: tuple[str, ...] = (), tail: tuple[str, ...] = ()) -> str:
    """A log in the shape of the challenge's baseline: the printed source, a line of '=', nvidia-smi, the run."""
    code = len(source.encode()) if code is None else code
    loss = bpb * RATIO
    lines = [source.rstrip("\n"), SEP, "Running Python 3.12.3", "Running PyTorch 2.9.1+cu128"]
    lines += [GPU_ROW.format(i=i, gpu=gpu) for i in range(world)] + [SEP]
    lines += ["val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/tokenizers/fineweb_1024_bpe.model",
              f"val_loader:shards pattern=./data/datasets/fineweb10B_sp1024/fineweb_val_*.bin tokens:{val_tokens}",
              f"world_size:{world} grad_accum_steps:1", f"seed:{seed}",
              "step:0/20000 val_loss:6.9357 val_bpb:4.1077 train_time:0ms step_avg:0.01ms",
              f"step:1000/20000 train_loss:2.5000 train_time:{1000 * step_ms:.0f}ms step_avg:{step_ms:.2f}ms",
              f"step:13780/20000 val_loss:{loss + 0.01:.4f} val_bpb:{bpb + 0.006:.4f} train_time:{train_ms:.0f}ms "
              f"step_avg:{step_ms:.2f}ms",
              f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:13780/20000", *after_stop,
              "Serialized model: 67224983 bytes", f"Code size: {code} bytes",
              f"Total submission size: {67224983 + code} bytes",
              f"Serialized model int8+zlib: {model} bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)",
              f"Total submission size int8+zlib: {model + code} bytes",
              f"final_int8_zlib_roundtrip val_loss:{loss:.4f} val_bpb:{bpb:.4f} eval_time:{eval_ms:.0f}ms",
              f"final_int8_zlib_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}", *tail]
    return "\n".join(lines) + "\n"


def submission(seeds: dict[int, float], model: int = 15_800_000, code: int | None = None, **extra) -> dict:
    code = len(SOURCE.encode()) if code is None else code
    bpbs = list(seeds.values())
    sub = {"author": "A. Tester", "github_id": "atest", "name": "Test record", "date": "2026-03-22",
           "track": "10min_16mb", "val_bpb": round(sum(bpbs) / len(bpbs), 8),
           "val_loss": round(sum(b * RATIO for b in bpbs) / len(bpbs), 8), "seeds": list(seeds),
           "seed_results": {str(s): {"val_bpb": b, "val_loss": round(b * RATIO, 8), "artifact_bytes": model + code}
                            for s, b in seeds.items()},
           "bytes_total": model + code, "bytes_code": code}
    sub.update(extra)
    return sub


def write_folder(root: Path, logs: dict[str, str], sub: dict | None, *, script: bytes | None = SOURCE.encode(),
                 track: str = "track_10min_16mb", name: str = "2026-03-22_Test", files: dict | None = None) -> Path:
    folder = root / track / name
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("# a record\n")
    if sub is not None:
        (folder / "submission.json").write_text(json.dumps(sub, indent=1))
    if script is not None:
        (folder / "train_gpt.py").write_bytes(script)
    for rel, text in {**logs, **(files or {})}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text) if isinstance(text, str) else (folder / rel).write_bytes(text)
    return folder


def good_folder(root: Path, seeds: dict[int, float] = SEEDS, **log_kw) -> Path:
    logs = {f"train_seed{s}.log": challenge_log(s, b, **log_kw) for s, b in seeds.items()}
    return write_folder(root, logs, submission(seeds, model=log_kw.get("model", 15_800_000)))


def run_audit(folder: Path, sota: float | None = 1.13, **kw) -> audit.FolderAudit:
    report = audit.audit_folder(folder, sota=sota, **kw)
    assert not any("audit error" in p for p in report.problems), report.problems
    return report


def has(items: list[str], *needles: str) -> bool:
    return any(all(n in item for n in needles) for item in items)


# ----------------------------------------------------------------------------- the parser learns the challenge's shapes

def test_parser_reads_the_baseline_shape_with_its_printed_source():
    run = logparse.parse_text(challenge_log(42, 1.1021, eval_ms=1401), strict=False)
    assert run.source_form == "printed" and run.source.decode() == SOURCE and run.seed == 42
    assert (run.bytes_code, run.bytes_model, run.bytes_total) == (len(SOURCE), 15_800_000, 15_800_000 + len(SOURCE))
    assert run.world_size == 8 and set(run.gpus.values()) == {"NVIDIA H100 80GB HBM3"} and len(run.gpus) == 8
    assert run.data_val_tokens == 62_021_632 and run.stop_train_time_ms == 600_038 and run.train_time_ms == 600_038
    assert [e.label for e in run.evals] == ["final_int8_zlib_roundtrip", "final_int8_zlib_roundtrip_exact"]
    assert run.val_bpb == 1.1021 and run.evals[0].eval_time_ms == 1401 and run.skipped_lines == 0
    # without the printed source excised, a logged f-string would be an unreadable evaluation line
    assert logparse.parse_text(SOURCE + '    log0(f"final x val_loss:{a:.4f} val_bpb:{b:.4f}")\n' + SEP + "\n",
                               strict=False).skipped_lines == 0


def test_parser_reads_the_later_records_shapes():
    text = "\n".join([
        SEP, "Hyperparameters:", "  seed: 7", "  world_size: 8", "  vocab_size: 8192", SOURCE.rstrip(), SEP,
        "1776142361.425 val_tokens: 40540160",
        "1776142362.768 gptq:reserving 12s, effective=588000ms",
        "[rank0]:1/20000 train_loss: 9.0089 train_time: 0.0m tok/s: 16371725",
        "4000/20000 val_loss: 2.6756 val_bpb: 1.1628",
        "4832/20000 train_loss: 2.6000 train_time: 9.8m tok/s: 7950000",
        "stopping_early: wallclock_cap train_time: 588091ms step: 4832/20000",
        "diagnostic pre-quantization post-ema val_loss:2.76990528 val_bpb:1.07228209 eval_time:6424ms",
        "Code size (uncompressed): 139831 bytes", "Code size (compressed): 28599 bytes",
        "GPTQ:collected 67 Hessians in 12.7s",
        "Serialized model quantized+brotli: 15968098 bytes", "Total submission size quantized+brotli: 15996697 bytes",
        "quantized_ttt_phased val_loss:2.76951521 val_bpb:1.07216564 eval_time:500104ms", "total_eval_time:500.1s"])
    run = logparse.parse_text(text, strict=False)
    assert run.seed == 7 and run.world_size == 8 and run.hparams["VOCAB_SIZE"] == "8192" and run.data_val_tokens == 40540160
    assert run.source.decode() == SOURCE and run.gptq_reserve_ms == 12000 and run.calibration_after_ms == 12700
    assert run.train[-1].train_time_ms == pytest.approx(9.8 * 60000) and run.val[-1].val_bpb == 1.1628
    assert run.stop_train_time_ms == 588091 and run.train_time_ms == 588091  # the stop line, not the rounded minutes
    assert (run.bytes_code, run.bytes_code_uncompressed, run.bytes_code_compressed) == (None, 139831, 28599)
    assert run.bytes_total == 15996697 and run.total_eval_time_ms == 500100
    assert [e.diagnostic for e in run.evals] == [True, False] and run.evals[-1].label == "quantized_ttt_phased"
    assert not run.finished  # no final_int8_zlib_roundtrip_exact line: golf's own commands refuse it


def test_parser_reads_the_size_lines_records_wrote_themselves():
    ternary = logparse.parse_text("artifact:15.92MB ternary:64880640(14239486B) fp:2513744(2537376B) code:70853\n"
                                  "budget:15993853/16000000 (15.99/16.00MB) FITS\n"
                                  "final_sliding val_loss:2.9869 val_bpb:1.1565 (stride=16, T=0.90) eval_time:429311ms\n",
                                  strict=False)
    assert (ternary.bytes_code, ternary.bytes_total, ternary.total_cap) == (70853, 15993853, 16_000_000)
    assert ternary.evals[0].label == "final_sliding" and ternary.evals[0].eval_time_ms == 429311
    legendre = logparse.parse_text("INT7+zlib model: 15370972 bytes | Total submission: 15441941 bytes\n", strict=False)
    assert (legendre.bytes_model, legendre.bytes_total, legendre.model_format) == (15370972, 15441941, "INT7+zlib")
    # a Total line without a scheme is the raw weights' total, unless a scheme's model line came first
    dg = logparse.parse_text("Serialized model: 111568154 bytes\nTotal submission size: 111648442 bytes\n"
                             "Serialized model rdquant+zstd: 16558180 bytes\nTotal submission size: 16638468 bytes\n",
                             strict=False)
    assert (dg.bytes_model, dg.bytes_total) == (16558180, 16638468)


def test_parser_keeps_the_last_of_several_runs_appended_to_one_log():
    text = challenge_log(1337, 1.20, eval_ms=5000) + challenge_log(1337, 1.10, eval_ms=7000, train_ms=599_000)
    run = logparse.parse_text(text, strict=False)
    assert run.runs_in_log == 2 and [e.val_bpb for e in run.evals] == [1.1, 1.1]
    assert run.stop_train_time_ms == 599_000 and run.settings_seen["seed:"] == ["1337", "1337"]


def test_a_setting_given_twice_is_a_contradiction_of_the_log():
    twice = fake_log(seed=1).replace("hparam SEED=1\n", "hparam SEED=1\nhparam SEED=42\n")
    run = logparse.parse_text(twice)
    assert run.seed == 42 and run.settings_seen["hparam SEED"] == ["1", "42"]
    assert logparse.consistency_problems(run) == [
        "log: the setting 'hparam SEED' is given 2 times (1, 42): a log states each setting once (logs concatenated or "
        "edited?)"]
    assert logparse.consistency_problems(logparse.parse_text(fake_log(seed=1))) == []


def test_strict_parsing_still_refuses_a_malformed_line_and_lenient_skips_it():
    bad = fake_log(seed=1).replace("val_bpb:1.23456789", "val_bpb:oops")
    with pytest.raises(C.ToolError, match="cannot parse line"):
        logparse.parse_text(bad)
    assert logparse.parse_text(bad, strict=False).skipped_lines == 1


# ----------------------------------------------------------------------------- a good folder, and what every check reads

def test_a_good_record_folder_audits_clean_and_reports_every_figure(tmp_path):
    folder = good_folder(tmp_path)
    r = run_audit(folder)
    assert r.ok and r.problems == [] and r.track == "track_10min_16mb", r.problems
    assert r.warnings == [], r.warnings
    f = r.seeds["42"].figures
    assert f["log"] == "train_seed42.log" and f["val_bpb"] == 1.1021 and f["claimed_val_bpb"] == 1.1021
    assert f["val_loss"] == pytest.approx(1.1021 * RATIO) and f["code_bytes"] == len(SOURCE)
    assert (f["model_bytes"], f["total_bytes"]) == (15_800_000, 15_800_000 + len(SOURCE))
    assert f["train_time_ms"] == 600_038 and f["eval_time_ms"] == 70_000 and f["processes"] == 8
    st = r.statistics
    assert st["verdict"] == "record" and st["p_value"] < 0.01 and st["n"] == 3
    assert st["gain_nats"] == pytest.approx((1.13 - sum(SEEDS.values()) / 3) * RATIO, rel=1e-6)
    doc = r.to_json()
    assert set(doc) >= {"folder", "ok", "problems", "warnings", "seeds"} and doc["ok"] is True
    assert set(doc["seeds"]["1337"]) >= {"log", "val_bpb", "val_loss", "claimed_val_bpb", "code_bytes", "model_bytes",
                                         "total_bytes", "train_time_ms", "eval_time_ms"}


def test_golfs_example_and_a_folder_record_new_writes_audit_clean(tmp_path):
    if EXAMPLE.is_dir():
        r = run_audit(EXAMPLE, sota=None)
        assert r.ok and r.track == "track_non_record_16mb", r.problems
        assert all(s.figures["val_bpb"] is not None for s in r.seeds.values()) and len(r.seeds) >= 2
    logs = []
    for s in (1, 2, 3):
        logs.append(tmp_path / f"s{s}.txt")
        logs[-1].write_text(fake_log(seed=s, hardware="NVIDIA H100 80GB HBM3 x8", val_tokens=62_021_846,
                                     tokenizer="fineweb_1024_bpe.model", step_ms=25.0, eval_ms=90_000.0))
    d = record.new_record(logs, name="X", author="a", github_id="g", date="2026-01-02", root=tmp_path / "records")
    r = run_audit(d, sota=None, leaderboard=False)
    assert d.parent.name == "track_10min_16mb" and r.ok, r.problems
    assert r.seeds["1"].figures["code_bytes"] == len((d / "train_gpt.py").read_bytes())  # the self-extracting form


# ----------------------------------------------------------------------------- each check fires, and only then

def test_claims_against_the_logs(tmp_path):
    sub = submission(SEEDS)
    sub["seed_results"]["42"]["val_bpb"] = 1.0900
    sub["seed_results"]["2025"]["artifact_bytes"] = 15_000_000
    sub["val_loss"] = sub["val_bpb"]  # a bpb figure under the name val_loss
    logs = {f"train_seed{s}.log": challenge_log(s, b) for s, b in SEEDS.items()}
    r = run_audit(write_folder(tmp_path, logs, sub))
    assert has(r.problems, "seed 42", "claims val_bpb 1.09", "no evaluation line")
    assert has(r.problems, "seed 2025", "claims 15000000 bytes")
    assert has(r.problems, "submission.json val_loss", "mean of")
    assert not has(r.problems, "seed 1337")


def test_claims_written_as_strings_are_checked_and_unreadable_ones_are_problems(tmp_path):
    """A claim that is not a JSON number (`"val_bpb": "1.0"`, `"bytes_total": "big"`, `true`) used to be skipped
    without a word, so a folder claiming a better score as a string audited ok."""
    logs = {f"train_seed{s}.log": challenge_log(s, b) for s, b in SEEDS.items()}
    sub = submission(SEEDS, val_bpb="1.0", bytes_total="big", bytes_code=True, val_loss_std=None)
    sub["seed_results"]["42"] = {"val_bpb": "1.0900"}
    sub["seed_results"]["1337"] = "0.9"
    r = run_audit(write_folder(tmp_path, logs, sub))
    assert has(r.problems, "submission.json val_bpb 1.0", "mean of")
    assert has(r.problems, "bytes_total is 'big', not a number") and has(r.problems, "bytes_code is True, not a number")
    assert has(r.problems, "seed 42", "claims val_bpb 1.09") and has(r.problems, "seed 1337", "claims val_bpb 0.9")
    assert not has(r.problems, "val_loss_std")  # null: not stated
    good = submission(SEEDS)
    good["val_bpb"], good["seed_results"]["42"]["val_bpb"] = str(good["val_bpb"]), "1.1021"
    assert run_audit(write_folder(tmp_path / "strings", logs, good)).ok  # true figures as strings are read, not refused


def test_a_headline_that_is_one_seeds_value_is_a_warning_and_a_stated_std_is_checked(tmp_path):
    sub = submission(SEEDS, val_bpb=1.1021, val_bpb_std=0.0123)
    sub.pop("val_loss")
    r = run_audit(write_folder(tmp_path, {f"train_seed{s}.log": challenge_log(s, b) for s, b in SEEDS.items()}, sub))
    assert r.ok, r.problems
    assert has(r.warnings, "val_bpb 1.1021 is one seed's value") and has(r.warnings, "val_bpb std 0.0123")


def test_every_seeds_total_within_the_cap(tmp_path):
    r = run_audit(good_folder(tmp_path / "a", model=16_000_000 - len(SOURCE)))
    assert r.ok, r.problems  # exactly 16,000,000 bytes is allowed
    r = run_audit(good_folder(tmp_path / "b", {1337: 1.10, 42: 1.1005, 2025: 1.0995}, model=16_000_000))
    assert has(r.problems, "over the 16000000-byte cap by") and r.seeds["42"].figures["total_bytes"] == 16_000_000 + len(SOURCE)


def test_code_counted_compressed_but_shipped_raw_counts_raw(tmp_path):
    raw = len(SOURCE)
    compressed = lambda t: t.replace(f"Code size: {raw} bytes", f"Code size (uncompressed): {raw} bytes\n"  # noqa: E731
                                                                 "Code size (compressed): 30 bytes")
    logs = {f"train_seed{s}.log": compressed(challenge_log(s, b, model=16_000_000 - 30)) for s, b in SEEDS.items()}
    r = run_audit(write_folder(tmp_path, logs, None))
    assert has(r.warnings, "counts the code compressed (30 bytes) but the folder ships train_gpt.py raw")
    assert has(r.problems, f"model 15999970 + code {raw} = {16_000_000 - 30 + raw} bytes, over the")


def test_the_log_ran_other_code_and_prints_another_source(tmp_path):
    other = SOURCE.replace("math.pi", "math.e")
    logs = {f"train_seed{s}.log": challenge_log(s, b, source=other if s == 42 else SOURCE, code=len(SOURCE) + (s == 2025))
            for s, b in SEEDS.items()}
    folder = write_folder(tmp_path, logs, submission(SEEDS))
    (folder / "train_gpt_v2.py").write_text("x" * (len(SOURCE) + 1))
    r = run_audit(folder)
    assert has(r.problems, "train_seed42.log: the source printed in the log", "is not train_gpt.py")
    assert has(r.problems, f"train_seed2025.log: Code size {len(SOURCE) + 1} bytes", "the log ran train_gpt_v2.py")
    assert not has(r.problems, "train_seed1337.log")


def test_a_self_extracting_script_is_decoded_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    source = SOURCE + f"open({str(marker)!r}, 'w').write('ran')\n"
    packed = lzma.compress(source.encode(), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    wrapper = ('import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("' + base64.b85encode(packed).decode() +
               '"),format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))\n').encode()
    assert audit.wrapped_payload(wrapper) == source.encode() and audit.wrapped_payload(SOURCE.encode()) is None
    logs = {f"train_seed{s}.log": challenge_log(s, b, source=source, code=len(wrapper)) for s, b in SEEDS.items()}
    r = run_audit(write_folder(tmp_path, logs, submission(SEEDS, code=len(wrapper)), script=wrapper))
    assert r.ok and not marker.exists(), r.problems
    assert r.seeds["42"].figures["code_bytes"] == len(wrapper)


def test_helper_files_the_script_loads_are_counted(tmp_path):
    stub = b'exec(open(__file__.replace("train_gpt.py","train_gpt_decode.py")).read())\n'
    logs = {f"train_seed{s}.log": challenge_log(s, b, code=len(SOURCE)) for s, b in SEEDS.items()}
    folder = write_folder(tmp_path, logs, None, script=stub, files={"train_gpt_decode.py": SOURCE})
    r = run_audit(folder)
    assert has(r.warnings, "loads train_gpt_decode.py from the folder")
    assert r.seeds["42"].figures["code_bytes"] == len(stub) + len(SOURCE) and not has(r.problems, "Code size")


def test_training_time_one_step_over_is_let_through_more_is_not(tmp_path):
    r = run_audit(good_folder(tmp_path / "a", train_ms=600_200, step_ms=43.5))
    assert r.ok, r.problems
    r = run_audit(good_folder(tmp_path / "b", train_ms=601_000, step_ms=43.5))
    assert has(r.problems, "training took 601.0 s")


def test_gptq_calibration_after_the_timer_counts_as_training(tmp_path):
    reads = ("gptq:reserving 0ms from training budget, effective=600000ms", "GPTQ:collected 67 Hessians in 3.5s")
    r = run_audit(good_folder(tmp_path / "a", train_ms=599_500, after_stop=reads))
    assert has(r.problems, "stopped at 599.5 s, then GPTQ calibration took 3.5 s after the timer: 603.0 s")
    assert r.seeds["42"].figures["calibration_after_timer_ms"] == 3500
    generated = ("gptq:generating autoregressive calibration data (64 seqs x 2048 tokens)...",
                 "gptq:generated 64 sequences in 198.3s")
    r = run_audit(good_folder(tmp_path / "b", train_ms=600_000, after_stop=generated))
    assert r.ok and has(r.warnings, "798.3 s > 600 s", "generated by the model"), r.problems
    r = run_audit(good_folder(tmp_path / "c", train_ms=586_000, after_stop=reads))
    assert r.ok, r.problems  # time was reserved for it


def test_evaluation_time_counts_every_scoring_pass(tmp_path):
    ttt = ("final_ttt_lora val_loss:1.8500 val_bpb:1.0950 eval_time:560000ms",)
    seeds = {1337: 1.0950, 42: 1.0950, 2025: 1.0950}
    logs = {f"train_seed{s}.log": challenge_log(s, 1.10, eval_ms=50_000, tail=ttt) for s in seeds}
    r = run_audit(write_folder(tmp_path / "a", logs, None))
    assert r.seeds["42"].figures["eval_time_ms"] == 610_000 and has(r.problems, "evaluation took 610.0 s")
    assert r.seeds["42"].figures["val_bpb"] == 1.095  # the last result is the score
    diag = ("diagnostic quantized val_loss:1.9 val_bpb:1.12 eval_time:90000ms",)
    r = run_audit(good_folder(tmp_path / "b", eval_ms=550_000, after_stop=diag))
    assert r.ok and r.seeds["42"].figures["eval_time_ms"] == 550_000, r.problems  # a diagnostic pass is not scored


def test_eight_processes_on_h100s(tmp_path):
    r = run_audit(good_folder(tmp_path / "a", world=4))
    assert has(r.problems, "4 processes, not 8")
    r = run_audit(good_folder(tmp_path / "b", gpu="NVIDIA H200"))
    assert has(r.problems, "ran on NVIDIA H200, not H100")


def test_the_non_record_track_leaves_time_and_hardware_alone(tmp_path):
    logs = {"train.log": challenge_log(1337, 1.20, train_ms=14_400_000, world=1, gpu="NVIDIA GeForce RTX 5090")}
    sub = {"val_bpb": 1.2, "track": "non_record_16mb"}
    r = run_audit(write_folder(tmp_path, logs, sub, track="track_non_record_16mb"))
    assert r.ok and r.statistics is None, r.problems


def test_seed_count_and_the_same_validation_split(tmp_path):
    two = {1337: 1.1012, 42: 1.1021}
    r = run_audit(write_folder(tmp_path / "a", {f"train_seed{s}.log": challenge_log(s, b) for s, b in two.items()},
                               submission(two)))
    assert r.ok and has(r.warnings, "2 seeds"), r.problems
    r = run_audit(write_folder(tmp_path / "b", {"train.log": challenge_log(1337, 1.10)}, submission({1337: 1.10})))
    assert has(r.problems, "1 seed log(s) with a score")
    logs = {f"train_seed{s}.log": challenge_log(s, b, val_tokens=62_021_632 + (s == 42)) for s, b in SEEDS.items()}
    r = run_audit(write_folder(tmp_path / "c", logs, submission(SEEDS)))
    assert has(r.problems, "different validation sets (62021632, 62021633 tokens)")


def test_the_gain_must_be_significant(tmp_path):
    folder = good_folder(tmp_path)
    assert run_audit(folder, sota=1.13).ok
    r = run_audit(folder, sota=1.1045)  # ~0.005 nats better on average: not shown at p < 0.01
    assert has(r.problems, "not a significant gain over 1.1045") and r.statistics["verdict"] == "not significant"
    r = run_audit(folder, sota=1.09)
    assert r.statistics["verdict"] == "worse" and r.statistics["gain_nats"] < 0


def test_a_setting_twice_and_appended_runs_are_problems(tmp_path):
    logs = {f"train_seed{s}.log": challenge_log(s, b) for s, b in SEEDS.items()}
    logs["train_seed42.log"] = challenge_log(42, 1.13) + logs["train_seed42.log"]
    r = run_audit(write_folder(tmp_path, logs, submission(SEEDS)))
    assert has(r.problems, "train_seed42.log: the setting 'seed:' is given 2 times", "holds 2 runs")
    assert r.seeds["42"].figures["val_bpb"] == 1.1021


def test_the_log_for_a_claimed_seed_is_found_by_its_figures(tmp_path):
    logs = {f"train_seed{s}.log": challenge_log(s, b) for s, b in SEEDS.items()}
    logs["train_seed42.log"] = challenge_log(7, SEEDS[42])  # the log of "seed 42" ran seed 7
    logs["extra_seed9.log"] = challenge_log(9, 1.2)
    r = run_audit(write_folder(tmp_path, logs, submission(SEEDS)))
    assert has(r.problems, "seed 42: the claimed val_bpb 1.1021 is in train_seed42.log, which logs seed 7")
    assert has(r.warnings, "train_seed42.log is named for seed 42 but logs seed 7")
    assert has(r.warnings, "other log(s) not audited", "extra_seed9.log") and r.seeds["42"].figures["val_bpb"] == 1.1021


def test_an_evaluation_only_score_log_takes_training_from_the_seeds_other_log(tmp_path):
    logs = {f"train_seed{s}.log": challenge_log(s, b + 0.004) for s, b in SEEDS.items()}
    for s, b in SEEDS.items():
        logs[f"ttt/seed_{s}.log"] = (f"seed:{s}\nval_tokens: 62021632\nquantized_ttt_phased val_loss:{b * RATIO:.8f} "
                                     f"val_bpb:{b:.8f} eval_time:400000ms\ntotal_eval_time:400.0s\n")
    r = run_audit(write_folder(tmp_path, logs, submission(SEEDS)))
    assert r.ok, r.problems
    f = r.seeds["42"].figures
    assert f["log"] == "ttt/seed_42.log" and f["train_log"] == "train_seed42.log" and f["eval_time_ms"] == 400_000
    assert f["model_bytes"] == 15_800_000 and f["train_time_ms"] == 600_038
    assert has(r.warnings, "seed 42: the score comes from ttt/seed_42.log, an evaluation-only log")


def test_folders_it_cannot_read_are_problems_never_tracebacks(tmp_path):
    empty = tmp_path / "track_10min_16mb" / "2026-03-22_Empty"
    empty.mkdir(parents=True)
    r = run_audit(empty)
    assert has(r.problems, "no submission.json") and has(r.problems, "no training logs") and not r.ok
    bad = good_folder(tmp_path / "b")
    (bad / "submission.json").write_text('{"val_bpb": NaN}')
    assert has(run_audit(bad).problems, "cannot read the folder", "not a finite number")
    assert has(run_audit(tmp_path / "missing").problems, "not a directory")
    (bad / "submission.json").write_text(json.dumps(submission(SEEDS)))
    (bad / "train_gpt.py").write_bytes(b"")
    assert has(run_audit(bad).problems, "train_gpt.py is empty")
    (bad / "train_gpt.py").write_bytes(b"def broken(:\n")
    assert has(run_audit(bad).problems, "train_gpt.py does not compile")
    binary = good_folder(tmp_path / "c")
    (binary / "train_seed42.log").write_bytes(b"\xff\xfe\x00garbage val_loss val_bpb\n" * 50)
    r = run_audit(binary)
    assert has(r.problems, "seed 42", "no final val_loss/val_bpb line")


# ----------------------------------------------------------------------------- the leaderboard, from a git history

def _commit(repo: Path, readme: str, when: str) -> None:
    (repo / "README.md").write_text(readme)
    env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    for args in (["add", "README.md"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", when]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def _readme(rows: list[tuple[str, float, str, str]]) -> str:
    table = "\n".join(f"| {run} | {score} | someone | what | {date} | [info]({info}) |" for run, score, date, info in rows)
    return ("# challenge\n\n## Leaderboard\n\n| Run | Score | Author | Summary | Date | Info |\n"
            "|-----|------:|--------|---------|------|------|\n" + table + "\n\n#### Notable Non-Record Runs\n\n"
            "| Run | Score | Author | Summary | Date | Info |\n|---|---|---|---|---|---|\n| nr | 0.5 | x | y | 2026-03-01 | z |\n")


def test_the_sota_is_read_from_the_leaderboard_as_of_the_records_date(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "challenge"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _commit(repo, _readme([("old", 1.2244, "2026-03-18", "a")]), "2026-03-18T12:00:00+00:00")
    _commit(repo, _readme([("prev", 1.1300, "2026-03-20", "b"), ("same day", 1.0900, "2026-03-22", "c"),
                           ("this one", 1.1012, "2026-03-22", "records/track_10min_16mb/2026-03-22_Test/README.md"),
                           ("old", 1.2244, "2026-03-18", "a")]), "2026-03-22T20:00:00+00:00")
    _commit(repo, _readme([("later", 1.05, "2026-03-25", "d")]), "2026-03-25T12:00:00+00:00")
    folder = good_folder(repo / "records")
    r = run_audit(folder, sota=None)  # the folder is inside the repository: its history is found
    assert r.statistics["sota_bpb"] == 1.13 and "prev (2026-03-20)" in r.statistics["sota_from"], r.statistics
    assert r.ok, r.problems
    outside = good_folder(tmp_path / "elsewhere")
    assert run_audit(outside, sota=None, git_dir=str(repo / ".git")).statistics["sota_bpb"] == 1.13
    assert has(run_audit(outside, sota=None).warnings, "no SOTA to compare with")
    first = write_folder(tmp_path / "first", {"train.log": challenge_log(1337, 1.22)}, submission({1337: 1.22}, date="2026-03-17"),
                         name="2026-03-17_First")
    r = run_audit(first, sota=None, git_dir=str(repo / ".git"))
    assert r.ok and has(r.warnings, "no earlier leaderboard row") and has(r.warnings, "1 seed log(s)"), r.problems


def test_leaderboard_rows_are_the_first_table_under_its_heading():
    rows = audit.leaderboard_rows(_readme([("a", 1.2, "2026-03-18", "x"), ("b", 1.1, "2026-03-19", "y")]))
    assert [(r["run"], r["score"], r["date"]) for r in rows] == [("a", 1.2, "2026-03-18"), ("b", 1.1, "2026-03-19")]
    assert audit.leaderboard_rows("# no leaderboard\n| a | b |\n") == []


# ----------------------------------------------------------------------------- the command, and record new

def test_cli_json_table_and_exit_status(tmp_path, capsys):
    good, bad = good_folder(tmp_path / "g"), good_folder(tmp_path / "b", world=2)
    assert C.run_cli(record.main, ["audit", str(good), "--sota", "1.13", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, list) and len(doc) == 1 and doc[0]["ok"] is True and doc[0]["folder"] == str(good)
    assert C.run_cli(record.main, ["audit", str(good), str(bad), "--sota", "1.13"]) == 1
    out = capsys.readouterr().out
    assert "problem: seed 1337: 2 processes, not 8" in out and "2 folder(s): 1 ok, 1 with problems" in out
    assert C.run_cli(record.main, ["audit", str(good), "--sota", "1.13", "--table"]) == 0
    assert "| 2026-03-22_Test | record | 3/3 | 1.10127 | 15,800,149 | 600.0 s | 70.0 s | none |" in capsys.readouterr().out
    assert C.run_cli(record.main, ["audit", str(good), "--sota", "nan"]) == 1
    assert capsys.readouterr().err.startswith("error: --sota must be a positive number")


def test_record_new_refuses_a_log_with_a_setting_twice_in_one_line(tmp_path, capsys):
    twice = tmp_path / "b.txt"
    twice.write_text(fake_log(seed=2).replace("hparam SEED=2\n", "hparam SEED=2\nhparam SEED=3\n"))
    ok = tmp_path / "a.txt"
    ok.write_text(fake_log(seed=1))
    rc = C.run_cli(record.main, ["new", "--name", "X", "--author", "a", "--github-id", "g", "--root", str(tmp_path / "r"),
                                 str(ok), str(twice)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "the setting 'hparam SEED' is given 2 times (2, 3)" in err[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("submission.json"))


def test_record_new_refuses_a_folder_its_own_audit_fails(tmp_path):
    log = tmp_path / "one.txt"  # one eligible 8xH100 seed: the record track, where one run shows no significance
    log.write_text(fake_log(seed=1, hardware="NVIDIA H100 80GB HBM3 x8", val_tokens=62_021_846,
                            tokenizer="fineweb_1024_bpe.model", step_ms=25.0, eval_ms=90_000.0))
    with pytest.raises(C.ToolError, match=r"would fail `record audit`: 1 seed log\(s\) with a score"):
        record.new_record([log], name="X", author="a", github_id="g", date="2026-01-02", root=tmp_path / "r")
    assert not any((tmp_path / "r").rglob("*.log"))  # nothing left behind, not even the temporary folder
    d = record.new_record([log], name="X", author="a", github_id="g", date="2026-01-02", root=tmp_path / "r",
                          track="track_non_record_16mb")
    assert run_audit(d, sota=None).ok


def test_a_log_that_counts_the_self_extracting_form_it_ships(tmp_path):
    """golf's train_gpt.py is to log `Code size:` as the bytes of its self-extracting form (what `record wrap` writes
    and the record ships): such logs are consistent, `record new` files them, and their folder audits clean."""
    source = ('"""a longer script"""\nimport os\n' + "".join(f"def f{i}(x):\n    return x * {i} + os.getpid()\n\n"
                                                             for i in range(300))).encode()
    counted = len(record.wrap(source))
    assert counted < len(source)
    logs = []
    for s in (1, 2):
        text = fake_log(seed=s, source=source, bytes_model=15_000_000)
        total = 15_000_000 + len(source)
        text = text.replace(f"Code size: {len(source)} bytes", f"Code size: {counted} bytes").replace(
            f"{total} bytes (margin to 16000000: {16_000_000 - total} bytes)",
            f"{15_000_000 + counted} bytes (margin to 16000000: {1_000_000 - counted} bytes)")
        assert logparse.consistency_problems(logparse.parse_text(text)) == []
        logs.append(tmp_path / f"s{s}.txt")
        logs[-1].write_text(text)
    d = record.new_record(logs, name="X", author="a", github_id="g", date="2026-01-02", root=tmp_path / "r")
    assert record.check_record(d) == ([], []) and run_audit(d, sota=None).ok
    bigger = fake_log(seed=3, source=source).replace(f"Code size: {len(source)} bytes", f"Code size: {len(source) + 1} bytes")
    assert has(logparse.consistency_problems(logparse.parse_text(bigger)), "more than the", "embedded source")
