"""The leaderboard techniques as switches (issue 13): each does what its description says, and with every switch
off the model is the seed recipe's."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import train_gpt as tg
from tests.helpers import final_exact, run_train, subprocess_env, tiny_env

BASE = tg.ModelConfig(vocab_size=260, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                      bigram_dim=8)


def model(seed: int = 0, perturb: bool = True, **switches) -> tg.GPT:
    """A tiny model; the zero-initialised parts get small random values so every path carries signal."""
    torch.manual_seed(seed)
    m = tg.GPT(replace(BASE, **switches))
    if perturb:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


def ids_with_documents(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (2, 40), generator=g)
    ids[:, 0], ids[0, 17], ids[1, 25] = 1, 1, 1  # BOS starts each document
    return ids


def test_switches_off_leave_the_model_as_it_was():
    """Every switch at its neutral value gives exactly the seed recipe's outputs: full RoPE, no XSA, no gates,
    no recurrence, no LN scale, relu^2, sequential residuals, no document mask, no smear gate."""
    ids = ids_with_documents()
    base = model()(ids[:, :-1], ids[:, 1:], reduction="none")
    same = [dict(rope_dims=BASE.model_dim // BASE.num_heads), dict(loop_start=1, loop_end=2, loop_repeats=0),
            dict(xsa_last_n=0, parallel_last_n=0, ln_scale=False, mlp_act="relu2", doc_mask=False, smear_gate=False)]
    for switches in same:
        assert torch.equal(model(**switches)(ids[:, :-1], ids[:, 1:], reduction="none"), base), switches


def test_gates_start_as_the_identity():
    """Attention output gate (2*sigmoid(0) = 1) and smear gate (lambda = 0) change nothing at initialisation."""
    ids = ids_with_documents()
    plain = model(perturb=False)
    with torch.no_grad():
        for block in plain.blocks:  # output projections start at zero; give them weight so attention matters
            block.attn.proj.weight.normal_(std=0.05)
        state = plain.state_dict()
    for switch in ("attn_gate", "smear_gate"):
        gated = model(perturb=False, **{switch: True})
        gated.load_state_dict({**gated.state_dict(), **state})
        assert torch.equal(gated(ids[:, :-1], ids[:, 1:], reduction="none"), plain(ids[:, :-1], ids[:, 1:], reduction="none"))


def test_partial_rope_leaves_the_unrotated_dims_unchanged():
    x = torch.randn(2, 4, 10, 16)
    cos, sin = tg.rotary_tables(10, 8, 10000.0, "cpu")
    y = tg.apply_rotary(x, cos, sin)
    assert torch.equal(y[..., 8:], x[..., 8:])
    assert not torch.allclose(y[..., 1:, :8], x[..., 1:, :8])  # position 0 has angle 0
    full_cos, full_sin = tg.rotary_tables(10, 16, 10000.0, "cpu")
    assert torch.allclose(tg.apply_rotary(x, full_cos, full_sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_xsa_output_is_orthogonal_to_each_tokens_own_value():
    torch.manual_seed(0)
    cfg = replace(BASE, xsa_last_n=4)
    attn = tg.Attention(cfg, xsa=True)
    attn.proj = nn.Identity()
    x = torch.randn(2, 12, cfg.model_dim)
    y = attn(x).view(2, 12, cfg.num_heads, -1)
    v = attn.v(x).view(2, 12, cfg.num_kv_heads, -1)
    v_of_head = v.repeat_interleave(cfg.num_heads // cfg.num_kv_heads, dim=2)
    along_own_value = (y * F.normalize(v_of_head, dim=-1)).sum(-1)
    assert along_own_value.abs().max() < 1e-5 and y.norm(dim=-1).min() < 1e-5  # token 0 attends only to itself
    assert y[:, 1:].norm(dim=-1).min() > 1e-3
    plain = tg.Attention(cfg, xsa=False)
    plain.load_state_dict(attn.state_dict(), strict=False)
    plain.proj = nn.Identity()
    assert F.cosine_similarity(plain(x).view(2, 12, cfg.num_heads, -1), v_of_head, dim=-1).abs().max() > 0.1


def test_no_attention_smear_or_bigram_crosses_a_bos():
    """With DOC_MASK and SMEAR_GATE, what a document sees does not depend on the document before it."""
    m = model(doc_mask=True, smear_gate=True, attn_gate=True, xsa_last_n=2)
    with torch.no_grad():
        m.smear.lam.fill_(0.5)
    ids = ids_with_documents()
    changed = ids.clone()
    changed[0, 1:17] = torch.randint(4, 260, (16,), generator=torch.Generator().manual_seed(9))  # first document only
    a, b = m.hidden(ids), m.hidden(changed)
    assert torch.equal(a[0, 17:], b[0, 17:]) and not torch.allclose(a[0, :17], b[0, :17])
    # the second document alone, as its own sequence, gives the same states (RoPE is relative; float rounding aside)
    alone = m.hidden(ids[:1, 17:])
    assert torch.allclose(alone[0], a[0, 17:], atol=1e-4)
    # without the mask, the first document leaks into the second
    leaky = model(doc_mask=False, smear_gate=True)
    assert not torch.allclose(leaky.hidden(ids)[0, 17:], leaky.hidden(changed)[0, 17:])


def test_document_mask_is_causal_and_within_documents():
    ids = torch.tensor([[1, 5, 6, 1, 7, 8, 9]])
    mask = tg.document_mask(ids, 1)[0, 0]
    expected = torch.tensor([[1, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0],
                             [0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_depth_recurrence_reuses_the_same_blocks():
    looped = model(loop_start=1, loop_end=2, loop_repeats=2)
    plain = model()
    assert looped.layer_order() == [0, 1, 2, 3]
    looped.looping = True
    assert looped.layer_order() == [0, 1, 2, 1, 2, 1, 2, 3]
    own = {k: v for k, v in looped.state_dict().items() if k != "skip_weights"}
    assert own.keys() == {k for k in plain.state_dict() if k != "skip_weights"}  # no new block parameters
    calls = []
    for i, block in enumerate(looped.blocks):
        block.register_forward_hook(lambda mod, inp, out, i=i: calls.append(i))
    looped.hidden(ids_with_documents())
    assert calls == [0, 1, 2, 1, 2, 1, 2, 3]
    assert looped.skip_weights.shape[0] == 4  # U-Net pairs for the 8 steps of the looped order


def test_ln_scale_shrinks_each_blocks_inputs_by_depth():
    m = model(ln_scale=True)
    seen = {}
    for i, block in enumerate(m.blocks):
        block.attn.register_forward_hook(lambda mod, inp, out, i=i: seen.update({i: inp[0].pow(2).mean(-1).sqrt()}))
    m.hidden(ids_with_documents())
    for i in range(4):
        assert torch.allclose(seen[i], torch.full_like(seen[i], 1 / math.sqrt(i + 1)), atol=1e-3)


def test_leaky_relu_squared_mlp():
    torch.manual_seed(0)
    mlp = tg.MLP(replace(BASE, mlp_act="leaky_relu2"))
    x = torch.randn(3, 64)
    assert torch.allclose(mlp(x), mlp.proj(F.leaky_relu(mlp.fc(x), 0.5) ** 2))
    assert not torch.allclose(mlp(x), mlp.proj(F.relu(mlp.fc(x)) ** 2))


def test_parallel_residuals_read_one_input():
    m = model(parallel_last_n=2)
    inputs = {}
    for i, block in enumerate(m.blocks):
        block.attn.register_forward_hook(lambda mod, inp, out, i=i: inputs.update({("attn", i): inp[0]}))
        block.mlp.register_forward_hook(lambda mod, inp, out, i=i: inputs.update({("mlp", i): inp[0]}))
    m.hidden(ids_with_documents())
    assert [m.blocks[i].parallel for i in range(4)] == [False, False, True, True]
    for i in (2, 3):
        assert torch.equal(inputs[("attn", i)], inputs[("mlp", i)])
    assert not torch.equal(inputs[("attn", 0)], inputs[("mlp", 0)])


def test_ema_equals_its_closed_form():
    """The trainer's EMA (one foreach lerp per step over the live weights) against its closed form."""
    decay, weights = 0.9, [torch.tensor([float(t), 2.0 * t]) for t in range(1, 8)]
    live = weights[0].clone()
    trainer = SimpleNamespace(h=tg.Hyperparameters(ema_decay=decay), step=0, average=None, weights=[live])
    for w in weights:
        live.copy_(w)
        tg.Trainer.update_average(trainer)
    n = len(weights) - 1
    closed = decay ** n * weights[0] + sum((1 - decay) * decay ** (n - t) * weights[t] for t in range(1, n + 1))
    assert torch.allclose(trainer.average[0], closed, atol=1e-6)


def test_min_lr_floor_and_weight_decay_taper():
    h = tg.Hyperparameters.from_env({"ITERATIONS": "100", "WARMDOWN_ITERS": "50", "MAX_WALLCLOCK_SECONDS": "0", "MIN_LR": "0.1",
                                     "WD_TAPER_START": "0.5", "WD_TAPER_FINAL": "0.25"})
    assert [tg.lr_multiplier(s, 0, h) for s in (0, 50, 75, 99, 100)] == [1.0, 1.0, 0.5, 0.1, 0.1]
    assert [tg.weight_decay_multiplier(p, h) for p in (0.0, 0.5, 0.75, 1.0)] == [1.0, 1.0, 0.625, 0.25]
    assert tg.training_progress(30, 0.0, h) == 0.3
    warm = tg.Hyperparameters.from_env({"ITERATIONS": "100", "WARMDOWN_ITERS": "50", "MAX_WALLCLOCK_SECONDS": "0",
                                        "LR_WARMUP_STEPS": "10", "MIN_LR": "0.1"})
    assert [tg.lr_multiplier(s, 0, warm) for s in (0, 4, 9, 20, 75)] == [0.1, 0.5, 1.0, 1.0, 0.5]


def test_muon_variants():
    torch.manual_seed(0)
    g = torch.randn(32, 48) @ torch.diag(torch.logspace(-1, 0, 48))
    for kind in ("standard", "polar"):
        s = torch.linalg.svdvals(tg.newton_schulz(g, 5, torch.float32, kind))
        assert s.min() > 0.5 and s.max() < 1.3, kind
    assert not torch.allclose(tg.newton_schulz(g, 5, torch.float32, "polar"), tg.newton_schulz(g, 5, torch.float32))
    m = model()
    h = tg.Hyperparameters.from_env({"MUON_ROW_NORM": "1", "MUON_NS": "polar"})
    muon = tg.build_optimizers(m, h, tg.Runtime(0, 1, torch.device("cpu"), bf16=False, compile=False))[1]
    assert muon.row_norm and muon.ns_kind == "polar"
    names = {id(p): n for n, p in m.named_parameters()}
    in_muon = {names[id(p)] for group in muon.param_groups for p in group["params"]}
    assert all(tg.tensor_role(n, p) == "matrix" for n, p in m.named_parameters() if n in in_muon)
    assert not any("resid_mix" in n or "skip_weights" in n for n in in_muon)  # control tensors go to Adam


def test_recipes_set_values_the_environment_can_override():
    record = tg.Hyperparameters.from_env({"RECIPE": "record"})
    assert (record.num_layers, record.model_dim, record.mlp_act, record.xsa_last_n, record.rope_dims) == (11, 512, "leaky_relu2", 11, 16)
    assert (record.ema_decay, record.loop_repeats, record.train_batch_tokens, record.eval_stride) == (0.9965, 2, 786432, 64)
    overridden = tg.Hyperparameters.from_env({"RECIPE": "record", "NUM_LAYERS": "9", "EMA_DECAY": "0"})
    assert overridden.num_layers == 9 and overridden.ema_decay == 0.0 and overridden.xsa_last_n == 11
    small = tg.Hyperparameters.from_env({"RECIPE": "cpu_small"})
    assert (small.num_layers, small.model_dim, small.train_batch_tokens, small.mlp_act) == (4, 256, 16384, "leaky_relu2")
    assert (small.tie_embeddings, small.muon_row_norm, small.muon_ns) == (False, True, "polar")
    assert (small.embed_lr, small.bigram_buckets, small.iterations, small.warmdown_iters) == (0.3, 65536, 100, 33)
    assert tg.Hyperparameters.from_env({"RECIPE": "cpu_small", "TIE_EMBEDDINGS": "1"}).tie_embeddings is True
    assert tg.Hyperparameters.from_env({}) == tg.Hyperparameters()
    with pytest.raises(tg.GolfError, match="RECIPE='fast' must be one of seed, record, cpu_small"):
        tg.Hyperparameters.from_env({"RECIPE": "fast"})


@pytest.mark.slow
def test_cpu_small_preset_runs_as_a_user_types_it(tiny_data, tmp_path):
    """RECIPE=cpu_small with nothing of the preset changed but the number of steps (one instead of 100), on the tiny
    byte corpus, with a smaller calibration and a fixed artifact scheme to save time: its shape, its untied head, and
    a final score from its own artifact. The scheme is the one ARTIFACT=auto ships here (int8 GPTQ) with zlib for
    brotli: brotli on this 9.7 MB model took 27 s of the run's 49 s, and the codec does not change the weights
    (the final line was the same to the last digit); the automatic choice has its own tests (test_artifact_choice)."""
    env = subprocess_env(RECIPE="cpu_small", DATA_PATH=tiny_data, VOCAB_SIZE=260, ITERATIONS=1, GPTQ_BATCHES=2,
                         ARTIFACT="int8-gptq+zlib", OUT_DIR=tmp_path, RUN_ID="small")
    result = run_train(env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("hparam RECIPE=cpu_small", "hparam NUM_LAYERS=4", "hparam MODEL_DIM=256", "hparam TIE_EMBEDDINGS=False",
                 "hparam MLP_ACT=leaky_relu2", "hparam MUON_NS=polar", "hparam BIGRAM_BUCKETS=65536",
                 "hparam TRAIN_BATCH_TOKENS=16384", "step:1/1 "):
        assert line in result.stdout, line
    # the untied head starts at zero, so the untrained model predicts the uniform distribution
    assert f"untrained train_loss:{math.log(260):.4f} ln(vocab):{math.log(260):.4f}" in result.stdout
    final_exact(result.stdout)


@pytest.mark.slow
def test_every_switch_trains_end_to_end(tiny_data, tmp_path):
    """All switches at once on a tiny run: it learns, loops from LOOP_AT, averages, and ships an artifact."""
    env = tiny_env(tiny_data, tmp_path, NUM_LAYERS=4, ITERATIONS=12, WARMUP_STEPS=2, VAL_LOSS_EVERY=0, ROPE_DIMS=8, XSA_LAST_N=4,
                   ATTN_GATE=1, DOC_MASK=1, LN_SCALE=1, MLP_ACT="leaky_relu2", PARALLEL_LAST_N=2, LOOP_START=1, LOOP_END=2,
                   LOOP_REPEATS=1, LOOP_AT=0.5, SMEAR_GATE=1, EMA_DECAY=0.9, MIN_LR=0.1, WD_TAPER_START=0.5,
                   WD_TAPER_FINAL=0.5, MUON_ROW_NORM=1, MUON_NS="polar", QK_GAIN_INIT=5.0)
    result = run_train(env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "depth recurrence: on from step 6, order [0, 1, 2, 1, 2, 3]" in result.stdout
    assert "ema: the model now holds its averaged weights" in result.stdout
    final_exact(result.stdout)
