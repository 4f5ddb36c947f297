"""The compiled training step has no graph breaks (issue 24): dynamo captures the whole forward at the default
settings and with every switch RECIPE=record turns on (depth recurrence looping included), and the backward
compiles with fullgraph=True. On CPU, with the CPU's kernels; the fused Triton cross-entropy's own check runs under
the Triton interpreter in tests/test_fused_ce.py."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import train_gpt as tg

BASE = tg.ModelConfig(vocab_size=260, num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=16)
RECORD = replace(BASE, mlp_act="leaky_relu2", bigram_buckets=0, xsa_last_n=3, rope_dims=8, ln_scale=True, qk_gain_init=5.0,
                 attn_gate=True, smear_gate=True, doc_mask=True, parallel_last_n=1, loop_start=1, loop_end=1, loop_repeats=2)
CASES = {"default": (BASE, False), "record": (RECORD, False), "record_looping": (RECORD, True)}


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(4, 260, (2, 65), generator=torch.Generator().manual_seed(0))
    ids[0, 10] = ids[1, 40] = 1  # document starts inside the windows
    return ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize("case", CASES)
def test_the_forward_is_one_graph(case):
    cfg, looping = CASES[case]
    model = tg.GPT(cfg)
    model.looping = looping
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(*batch())
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_compile_whole_and_match_eager(case):
    cfg, looping = CASES[case]
    model = tg.GPT(cfg)
    model.looping = looping
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x, y = batch()
    eager = model(x, y)
    eager.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # any break would raise here
    loss = compiled(x, y)
    loss.backward()
    assert torch.allclose(loss, eager, atol=1e-5)
    assert all(torch.allclose(p.grad, grads[n], atol=1e-5) for n, p in model.named_parameters())
