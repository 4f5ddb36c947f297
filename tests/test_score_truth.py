"""The final line is the artifact's score (issue 23): everything the forward pass needs is in the artifact, training-only
transforms (QAT's fake quantization) are off when scoring, and the run's own final line, EVAL_ARTIFACT on its
artifact and `python -m tools score` on it agree to the last digit."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import pytest
import torch

import train_gpt as tg
from tests.helpers import TRAIN_GPT, final_exact, run_concurrently, run_train, tiny_env, tiny_trained_env, trained_like_state
from tools import common as C
from tools.artifacts import score

BASE = tg.ModelConfig(vocab_size=260, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=8)
# Every switch RECIPE=record turns on that changes the forward pass, one at a time (and depth recurrence while looping).
SWITCHES = {
    "leaky_relu2": dict(mlp_act="leaky_relu2"), "no_bigram": dict(bigram_buckets=0), "xsa": dict(xsa_last_n=2),
    "partial_rope": dict(rope_dims=4), "ln_scale": dict(ln_scale=True), "qk_gain": dict(qk_gain_init=5.0),
    "attn_gate": dict(attn_gate=True), "smear_gate": dict(smear_gate=True), "doc_mask": dict(doc_mask=True),
    "parallel": dict(parallel_last_n=2), "loop_off": dict(loop_start=1, loop_end=1, loop_repeats=2),
    "loop_on": dict(loop_start=1, loop_end=1, loop_repeats=2, looping=True),
}
# The record's stack and late QAT at a tiny size, with EMA: the run these settings start is scored three ways.
RECORD_TINY = dict(MLP_ACT="leaky_relu2", XSA_LAST_N=2, ROPE_DIMS=8, LN_SCALE=1, QK_GAIN_INIT=5.0, ATTN_GATE=1,
                   SMEAR_GATE=1, DOC_MASK=1, PARALLEL_LAST_N=1, LOOP_START=0, LOOP_END=0, LOOP_REPEATS=1, LOOP_AT=0.3,
                   EMA_DECAY=0.9, MUON_ROW_NORM=1, MUON_NS="polar", MIN_LR=0.1, QAT_BITS=4, QAT_LR_SCALE=1)


@pytest.mark.parametrize("switch", SWITCHES)
def test_the_artifact_builds_the_model_the_run_scores(switch):
    """The model a run scores (its own weights replaced by the artifact's) and the model the artifact alone builds
    give the same losses, bit for bit, for every switch."""
    cfg = replace(BASE, **SWITCHES[switch])
    live = tg.GPT(cfg)
    live.load_state_dict(trained_like_state(cfg, 3))
    blob = tg.pack_artifact({k: v.float() for k, v in live.state_dict().items()}, asdict(cfg), tg.Scheme.parse("int6+zlib"))
    state, meta = tg.unpack_artifact(blob)
    live.load_state_dict(state)
    rebuilt = tg.model_from_state(state, meta["config"])
    ids = torch.randint(4, 260, (2, 48))
    ids[0, 20] = ids[1, 5] = 1  # documents start inside the windows
    with torch.no_grad():
        want, got = live(ids[:, :-1], ids[:, 1:], reduction="none"), rebuilt(ids[:, :-1], ids[:, 1:], reduction="none")
    assert rebuilt.looping == live.looping == cfg.looping
    assert torch.equal(want, got)


def test_depth_recurrence_changes_the_score_so_the_artifact_must_record_it():
    cfg = replace(BASE, **SWITCHES["loop_on"])
    state = trained_like_state(cfg, 3)
    on, off = tg.model_from_state(state, asdict(cfg)), tg.model_from_state(state, asdict(replace(cfg, looping=False)))
    ids = torch.randint(4, 260, (1, 33))
    with torch.no_grad():
        assert not torch.equal(on(ids[:, :-1], ids[:, 1:]), off(ids[:, :-1], ids[:, 1:]))


def score_lines(tiny_data, run_dir, run_id: str, capsys) -> tuple[str, str]:
    """(EVAL_ARTIFACT's final line, `python -m tools score`'s) for the artifact of run `run_id`, both with no
    evaluation settings given: the artifact's recorded ones must be used. The EVAL_ARTIFACT process runs while the
    tool scores in this one."""
    artifact = run_dir / "models" / f"{run_id}.ptz"
    env = tiny_env(tiny_data, run_dir, RUN_ID=f"{run_id}_rescore", EVAL_ARTIFACT=artifact)
    del env["EVAL_STRIDE"], env["EVAL_SEQ_LEN"]
    with ThreadPoolExecutor(1) as pool:
        rescoring = pool.submit(run_train, env)
        code = C.run_cli(score.main, [str(artifact), "--data", str(tiny_data), "--cpu-threads", "1"])
        rescored = rescoring.result()
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    assert code == 0
    tool = [line for line in capsys.readouterr().out.splitlines() if line.startswith("score_exact")][0]
    return final_exact(rescored.stdout), tool.replace("score_exact", "final_int8_zlib_roundtrip_exact")


# The two QAT runs below, by the test that reads each: both start (each its own process) when the first is needed.
QAT_RUNS = {"test_a_record_stack_run_with_qat_is_scored_the_same_three_ways":
            ("record", dict(ITERATIONS=10, VAL_LOSS_EVERY=0, ARTIFACT="int6+brotli", EVAL_SEQ_LEN=48, EVAL_STRIDE=16,
                            DOC_EVAL=1, **RECORD_TINY)),
            "test_a_qat_run_as_the_issue_found_it":
            ("qat", dict(ITERATIONS=10, VAL_LOSS_EVERY=0, QAT_BITS=4, QAT_LR_SCALE=1, ARTIFACT="int6+brotli"))}


@pytest.fixture(scope="module")
def qat_runs(tiny_data, tmp_path_factory, request) -> dict:
    """{run id: (OUT_DIR, result)} of the QAT_RUNS this session's tests read, run at the same time."""
    selected = {getattr(item, "originalname", None) for item in request.session.items}
    wanted = [QAT_RUNS[test] for test in QAT_RUNS if test in selected]
    outs = {run_id: tmp_path_factory.mktemp(run_id) for run_id, _ in wanted}
    results = run_concurrently(*(lambda run_id=run_id, settings=settings:
                                 run_train(tiny_env(tiny_data, outs[run_id], RUN_ID=run_id, **settings))
                                 for run_id, settings in wanted))
    return {run_id: (outs[run_id], result) for (run_id, _), result in zip(wanted, results)}


@pytest.mark.slow
def test_a_record_stack_run_with_qat_is_scored_the_same_three_ways(tiny_data, qat_runs, capsys):
    out, run = qat_runs["record"]  # the record's stack and late QAT at a tiny size, 10 steps
    assert run.returncode == 0, run.stderr[-3000:]
    assert "qat: int4 fake quantization" in run.stdout and "depth recurrence: on from step" in run.stdout
    assert score_lines(tiny_data, out, "record", capsys) == (final_exact(run.stdout),) * 2


@pytest.mark.slow
def test_a_qat_run_as_the_issue_found_it(tiny_data, qat_runs, capsys):
    """QAT_BITS=4 QAT_LR_SCALE=1 ARTIFACT=int6+brotli, 10 steps: the log's number was not the artifact's."""
    out, run = qat_runs["qat"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert score_lines(tiny_data, out, "qat", capsys) == (final_exact(run.stdout),) * 2


@pytest.mark.slow
def test_the_shipped_script_counts_itself_and_ends_on_the_same_line_as_the_readable_one(tiny_trained, tmp_path):
    """The run counts its code as it ships (train_gpt.shipped_code, what `record wrap` writes), and the shipped
    script, run instead of the readable one, gives the same final line to the last digit (the readable one's run is
    conftest's tiny_trained; the shipped one runs with its settings)."""
    data, _, readable = tiny_trained
    shipped = tg.shipped_code(TRAIN_GPT.read_bytes())
    assert len(shipped) <= 0.25 * len(TRAIN_GPT.read_bytes()) and tg.unwrap_code(shipped) == tg.strip_source(TRAIN_GPT.read_bytes())
    script = tmp_path / "shipped" / "train_gpt.py"
    script.parent.mkdir()
    script.write_bytes(shipped)
    run = run_train(tiny_trained_env(data, tmp_path, RUN_ID="shipped"), script=script)
    assert run.returncode == 0, run.stderr[-3000:]
    for stdout in (readable, run.stdout):
        assert f"Code size: {len(shipped)} bytes" in stdout
    assert final_exact(readable) == final_exact(run.stdout)
    logged = (tmp_path / "logs" / "shipped.txt").read_text()
    assert logged.startswith(f"===== train_gpt.py source begin ({len(tg.strip_source(TRAIN_GPT.read_bytes()))} bytes) =====")


def test_stripping_keeps_every_string_and_annotation_that_runs():
    """strip_source cuts comments, docstrings and plain functions' annotations, and nothing inside a string (a
    multi-line f-string included, which Python 3.12 tokenizes in pieces); stripping twice changes nothing."""
    source = (b'x = 1\ny = f"""a\n   b {x}\n  c"""  # comment\nclass A:\n    """doc"""\n'
              b'def f(a: int, *b: str, c: "A" = None) -> int:\n    """doc"""\n    return a  # the end\n'
              b'@torch.library.custom_op("golf::x", mutates_args=())\ndef g(t: "Tensor") -> "Tensor":\n    return t\n')
    stripped = tg.strip_source(source)
    assert stripped == (b'x=1\ny=f"""a\n   b {x}\n  c"""  \nclass A:\n pass\ndef f(a,*b,c=None):\n return a\n'
                        b'@torch.library.custom_op("golf::x",mutates_args=())\ndef g(t:"Tensor")->"Tensor":\n return t\n')
    assert tg.strip_source(stripped) == stripped


TRICKY = '''
import math
def f(a, *args, k=-1, **kw):
    return-a if a else not-k
values = [f(2), f(0), 1 if math.pi>3 else-1, 2 ** -2, 1e-3*2, 0x1f, 1_000, "a" "b", (n := 5), n]
w = 3
text = f"{w = } {w:>4} {'q'!r} {{w}} {w!s:^6}" + f"""ᵀ {w}
ᵀ {w + 1}""" + "é"  # a multi-line string ending on the line of an operator, after non-ASCII text
lam = lambda *a, **k: (a, k)
values += [text, lam(1, x=2), [i for i in range(3) if i not in (1,)], -w, +w, ~w, w@1 if False else w//2, w%2, w<<1]
class C:
    z: int = 4
    def m(self) -> int: return self.z*2
values += [C().m(), C.__annotations__, ...]
'''


def test_stripping_changes_no_behaviour_of_tricky_code():
    """Spaces next to operators are cut, never between two words (names, numbers, strings), nor inside an f-string
    (where `{w = }` prints them): the stripped code computes exactly what the original does."""
    stripped = tg.strip_source(TRICKY.encode()).decode()
    assert len(stripped) < len(TRICKY) and "{w = }" in stripped and "return-a if a else not-k" in stripped
    results = []
    for code in (TRICKY, stripped):
        namespace = {}
        exec(compile(code, "tricky", "exec"), namespace)
        results.append(repr(namespace["values"]))
    assert results[0] == results[1]
