"""CUDA-only checks, run by tools/gpu_check.sh on a GPU machine (skipped, and reported as skipped, without CUDA):
the compiled model matches the eager one, flash attention matches the math kernel, and the fused Triton
cross-entropy matches the PyTorch expression on the GPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import train_gpt as tg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run tools/gpu_check.sh there)")


def _model(**overrides) -> tg.GPT:
    torch.manual_seed(0)
    cfg = tg.ModelConfig(**{"vocab_size": 1024, "num_layers": 2, "model_dim": 256, "num_heads": 4, "num_kv_heads": 2,
                            "bigram_buckets": 512, "bigram_dim": 32, **overrides})
    model = tg.GPT(cfg).cuda()
    with torch.no_grad():  # give the zero-initialised projections some weight so every path is exercised
        for block in model.blocks:
            block.attn.proj.weight.normal_(std=0.02)
            block.mlp.proj.weight.normal_(std=0.02)
    return model


def test_compiled_model_matches_eager_on_cuda():
    model = _model()
    ids = torch.randint(0, 1024, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(ids[:, :-1], ids[:, 1:], reduction="none").float()
        compiled = torch.compile(model)(ids[:, :-1], ids[:, 1:], reduction="none").float()
    torch.testing.assert_close(compiled, eager, rtol=2e-2, atol=2e-2)


def test_flash_attention_matches_the_math_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(2, 8, 512, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel(SDPBackend.MATH):
        math = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    torch.testing.assert_close(flash.float(), math, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not tg.triton_available(), reason="triton is not installed")
@pytest.mark.parametrize("softcap", [0.0, 30.0])
def test_fused_cross_entropy_matches_the_reference_on_cuda(softcap):
    torch.manual_seed(0)
    x = torch.randn(3000, 256, device="cuda", requires_grad=True)
    W = (0.05 * torch.randn(1024, 256, device="cuda")).requires_grad_()
    y = torch.randint(0, 1024, (3000,), device="cuda")
    loss = tg.fused_softcap_ce(x, W, y, softcap)
    gx, gW = torch.autograd.grad(loss, (x, W))
    ref = tg.reference_softcap_ce(x, W, y, softcap)
    rx, rW = torch.autograd.grad(ref, (x, W))
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gx, rx, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(gW, rW, rtol=1e-3, atol=1e-5)
