# ----- fused soft-capped cross-entropy over the tied output projection (Triton; see kernels/README.md) -----
import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def triton_available() -> bool:
    return triton is not None


def reference_softcap_ce(x, W, targets, softcap=0.0, reduction="mean"):
    logits = F.linear(x, W).float()
    if softcap > 0:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, targets, reduction=reduction)


if triton is not None:
    @triton.jit
    def _softcap(z, cap, HAS_CAP: tl.constexpr):
        if HAS_CAP:  # cap * tanh(z / cap), tanh via exp so it works in every Triton version
            e = tl.exp(-2.0 * tl.abs(z / cap))
            t = (1.0 - e) / (1.0 + e)
            z = cap * tl.where(z >= 0, t, -t)
        return z

    @triton.jit
    def _ce_fwd(L, stride, Y, LOSS, LSE, V, cap, HAS_CAP: tl.constexpr, BLOCK_V: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        L += row * stride
        m = float("-inf")
        s = 0.0
        for off in range(0, V, BLOCK_V):
            cols = off + tl.arange(0, BLOCK_V)
            z = tl.load(L + cols, mask=cols < V, other=0.0).to(tl.float32)
            z = _softcap(z, cap, HAS_CAP)
            z = tl.where(cols < V, z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, 0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), 0)
            m = m_new
        lse = m + tl.log(s)
        zy = _softcap(tl.load(L + tl.load(Y + row)).to(tl.float32), cap, HAS_CAP)
        tl.store(LSE + row, lse)
        tl.store(LOSS + row, lse - zy)

    @triton.jit
    def _ce_bwd(L, stride, Y, LSE, G, g_stride, V, cap, HAS_CAP: tl.constexpr, BLOCK_V: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        L += row * stride
        y = tl.load(Y + row)
        lse = tl.load(LSE + row)
        g = tl.load(G + row * g_stride).to(tl.float32)
        for off in range(0, V, BLOCK_V):
            cols = off + tl.arange(0, BLOCK_V)
            raw = tl.load(L + cols, mask=cols < V, other=0.0).to(tl.float32)
            z = _softcap(raw, cap, HAS_CAP)
            d = (tl.exp(z - lse) - tl.where(cols == y, 1.0, 0.0)) * g
            if HAS_CAP:
                t = z / cap
                d = d * (1.0 - t * t)
            tl.store(L + cols, d.to(L.dtype.element_ty), mask=cols < V)

    def _logits_chunks(x, W, chunk):
        for i in range(0, x.shape[0], chunk):
            yield i, x[i:i + chunk] @ W.T

    class _SoftcapCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, W, targets, cap, reduction, chunk, block_v, dt):
            N, V = x.shape[0], W.shape[0]
            loss = torch.empty(N, device=x.device, dtype=torch.float32)
            lse = torch.empty_like(loss)
            bv = min(block_v, triton.next_power_of_2(V))
            with torch.autocast(x.device.type, enabled=False):
                for i, L in _logits_chunks(x.to(dt), W.to(dt), chunk):
                    _ce_fwd[(L.shape[0],)](L, L.stride(0), targets[i:], loss[i:], lse[i:], V, cap,
                                           HAS_CAP=cap > 0, BLOCK_V=bv)
            ctx.save_for_backward(x, W, targets, lse)
            ctx.args = (cap, reduction, chunk, bv, dt)
            return loss.mean() if reduction == "mean" else loss

        @staticmethod
        def backward(ctx, grad):
            x, W, targets, lse = ctx.saved_tensors
            cap, reduction, chunk, bv, dt = ctx.args
            N, V = x.shape[0], W.shape[0]
            g = (grad.float() / N).reshape(1) if reduction == "mean" else grad.float().contiguous()
            gs = 0 if reduction == "mean" else 1
            xc, Wc = x.to(dt), W.to(dt)
            gx = torch.empty_like(xc)
            gW = torch.zeros(W.shape, device=W.device, dtype=torch.float32)
            with torch.autocast(x.device.type, enabled=False):
                for i, L in _logits_chunks(xc, Wc, chunk):
                    _ce_bwd[(L.shape[0],)](L, L.stride(0), targets[i:], lse[i:], g[i * gs:], gs, V, cap,
                                           HAS_CAP=cap > 0, BLOCK_V=bv)
                    gx[i:i + chunk] = L @ Wc
                    gW += (L.T @ xc[i:i + chunk]).float()
            return gx.to(x.dtype), gW.to(W.dtype), None, None, None, None, None, None

    @torch.compiler.disable  # runs eagerly (a graph break) inside a torch.compile'd model
    def fused_softcap_ce(x, W, targets, softcap=0.0, reduction="mean", chunk=8192, block_v=1024):
        dev = x.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.promote_types(x.dtype, W.dtype)
        return _SoftcapCE.apply(x, W, targets.contiguous(), float(softcap), reduction, chunk, block_v, dt)
