"""Evaluation the records use (issue 14): score-first test-time training is legal (a token's score never depends on
later tokens), TTT with zero steps is the plain sliding evaluation, doc-aware evaluation counts the same bytes,
and the evaluation budget is reported and enforced."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers import final_exact, run_concurrently, run_train, tiny_trained_env
import train_gpt as tg

LUTS = tg.build_byte_luts(tg.ByteTokenizer({}))
CPU = tg.Runtime(rank=0, world_size=1, device=torch.device("cpu"), bf16=False, compile=False)


def tiny_model() -> tg.GPT:
    torch.manual_seed(0)
    m = tg.GPT(tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=8))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def val_tokens(seed: int = 0, n: int = 700) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, 260, n).astype(np.uint16)
    tokens[[0, 90, 300, 310, 520]] = 1  # documents of several lengths, one shorter than a chunk
    return tokens


def settings(**kw) -> tg.Hyperparameters:
    base = dict(EVAL_SEQ_LEN="64", EVAL_STRIDE="16", EVAL_BATCH_SEQS="4", TTT_CHUNK_TOKENS="128", TTT_BATCH_SEQS="2",
                TTT_LR="0.05", TTT_LORA_LR="0.01", TTT_LORA_TARGETS="q,v,fc")
    return tg.Hyperparameters.from_env({**base, **{k: str(v) for k, v in kw.items()}})


@contextmanager
def scored_targets(tokens):
    """Each scored target's loss by its index, read where the losses are summed (train_gpt.window_sums, watched,
    so no hook in the shipped code is needed). A window's place in the stream is found from its tokens (unique here)."""
    per_target, real_sums = {}, tg.window_sums
    windows = {n: np.lib.stride_tricks.sliding_window_view(tokens, n) for n in range(1, 65)}

    def watched(losses, x, y, first, luts):
        for row, offset, row_losses in zip(x.cpu().numpy(), first.tolist(), losses.tolist()):
            if offset < len(row):  # (the padding rows of a last batch score nothing)
                start = np.nonzero((windows[len(row)] == row).all(1))[0]
                assert len(start) == 1, "a window whose tokens occur twice in the stream"
                per_target.update({int(start[0]) + j: row_losses[j] for j in range(offset, len(row))})
        return real_sums(losses, x, y, first, luts)
    tg.window_sums = watched
    try:
        yield per_target
    finally:
        tg.window_sums = real_sums


def run_ttt(tokens, **kw):
    """(val_loss, val_bpb, facts, each scored target's loss by its index)."""
    with scored_targets(tokens) as per_target:
        loss, bpb, facts = tg.evaluate_ttt(tiny_model(), tokens, LUTS, settings(**kw), CPU, log=lambda m: None)
    return loss, bpb, facts, per_target


@pytest.mark.parametrize("variant", [dict(TTT="sgd", TTT_STEPS=2), dict(TTT="sgd", TTT_PARAMS="matrices"),
                                     dict(TTT="lora", TTT_STEPS=2, TTT_CHUNK_TOKENS=40), dict(TTT="lora", TTT_RESET=0)])
@pytest.mark.slow
def test_a_tokens_score_never_depends_on_later_tokens(variant):
    tokens = val_tokens()
    p = 333
    changed = tokens.copy()
    changed[p + 1:] = val_tokens(seed=1)[p + 1:]  # every token after position p (target index p predicts token p+1)
    _, _, facts, before = run_ttt(tokens, **variant)
    _, _, _, after = run_ttt(changed, **variant)
    assert facts["adapted"] > 0 and sorted(before) == list(range(len(tokens) - 1))  # every target scored once
    assert [before[j] for j in range(p)] == [after[j] for j in range(p)]  # bit-identical
    assert any(before[j] != after[j] for j in range(p + 1, len(tokens) - 1))


@pytest.mark.slow
def test_adaptation_changes_the_scores():
    tokens = val_tokens()
    _, _, _, frozen = run_ttt(tokens, TTT="sgd", TTT_STEPS=0)
    _, _, _, adapted = run_ttt(tokens, TTT="sgd", TTT_STEPS=2)
    assert frozen[5] == adapted[5] and frozen[600] != adapted[600]  # the first chunk is scored before any update


@pytest.mark.slow
def test_ttt_with_zero_steps_is_the_plain_sliding_evaluation_exactly():
    tokens = val_tokens()
    loss, bpb, facts, _ = run_ttt(tokens, TTT="sgd", TTT_STEPS=0)
    plain = tg.evaluate(tiny_model(), tokens, LUTS, 64, 16, 4, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    assert (loss, bpb) == plain and facts["adapted"] == 0


@pytest.mark.slow
def test_doc_aware_evaluation_counts_the_same_bytes_and_scores_each_document_from_its_start():
    tokens = val_tokens()
    model = tiny_model()
    sums_plain, sums_doc = [], []
    starts, first = tg.window_starts(len(tokens) - 1, 64, 16)
    luts = tg.device_luts(LUTS, "cpu")
    off = torch.autocast("cpu", enabled=False)
    with torch.no_grad():
        with scored_targets(tokens) as plain:
            tg.score_windows(model, tokens, luts, starts, first, 64, 4, "cpu", off, sums_plain)
        model.eval_doc_mask = True
        with scored_targets(tokens) as doc:
            tg.score_windows(model, tokens, luts, starts, first, 64, 4, "cpu", off, sums_doc)
        assert [s[1:] for s in sums_plain] == [s[1:] for s in sums_doc]  # same targets, same bytes, window by window
        # the document starting at 310 (ten tokens after the previous BOS), scored on its own from its start
        alone = model(torch.from_numpy(tokens[310:374].astype(np.int64))[None], torch.from_numpy(tokens[311:375].astype(np.int64))[None],
                      reduction="none")[0]
    assert plain[320] != doc[320]  # plain windows let it see the previous document
    assert doc[320] == pytest.approx(alone[10].item(), abs=1e-5)


def test_time_cap_stops_adaptation_and_says_so():
    messages = []
    loss, bpb, facts = tg.evaluate_ttt(tiny_model(), val_tokens(), LUTS, settings(TTT="sgd", EVAL_TIME_CAP_SECONDS=1e-9), CPU,
                                       log=messages.append)
    assert facts["cut_short"] and facts["adapted"] == 0 and np.isfinite(loss)
    assert messages and messages[0].startswith("ttt: EVAL_TIME_CAP_SECONDS=1e-09 reached: adaptation stopped after 0 of")


@pytest.mark.slow
def test_ttt_in_a_run_starts_from_the_artifact_and_reports_the_budget(tiny_trained, tmp_path):
    data, run_dir, run_stdout = tiny_trained  # a finished run and its artifact
    artifact = run_dir / "models" / "tiny.ptz"
    zero, adapted = run_concurrently(  # two processes at once
        lambda: run_train(tiny_trained_env(data, tmp_path, RUN_ID="zero", EVAL_ARTIFACT=artifact, TTT="sgd", TTT_STEPS=0)),
        lambda: run_train(tiny_trained_env(data, tmp_path, RUN_ID="sgd", EVAL_ARTIFACT=artifact, TTT="sgd",
                                           TTT_CHUNK_TOKENS=512)))
    assert zero.returncode == 0, zero.stderr
    assert final_exact(zero.stdout) == final_exact(run_stdout)  # TTT with no steps: the run's own score
    assert adapted.returncode == 0, adapted.stderr
    assert final_exact(adapted.stdout) != final_exact(run_stdout)
    budget = [l for l in adapted.stdout.splitlines() if l.startswith("eval budget: ")]
    assert len(budget) == 1 and "estimated" in budget[0] and "on 8xH100" in budget[0] and "ttt adapted" in budget[0]
