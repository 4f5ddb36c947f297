"""tools/artifact.py: every scheme's round trip, determinism, codecs, and refusals (bombs, truncation, pickle, unknown kinds)."""
from __future__ import annotations

import pickle
import zlib

import numpy as np
import pytest
import torch

from tools_test_support import TOOLS  # noqa: F401  (puts tools/ and the repo on sys.path)
import artifact as A  # noqa: E402
import train_gpt as tg  # noqa: E402

CONFIG = tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                        bigram_dim=16)


def trained_like_state(seed: int = 0) -> dict:
    """A GPT state dict with non-zero, heavy-tailed matrices (a fresh model has zero output projections)."""
    torch.manual_seed(seed)
    state = tg.GPT(CONFIG).state_dict()
    return {k: (torch.distributions.StudentT(4.0).sample(v.shape) * 0.02 if v.ndim == 2 and "skip" not in k else v.clone())
            for k, v in state.items()}


ALL_SCHEMES = [A.Scheme(bits=b, clip_search=c, layout=l, embed_bits=e)
               for b in (8, 6, 5, 4) for c in (False, True) for l in ("bytes", "packed") for e in (16, 8)]


@pytest.mark.parametrize("scheme", ALL_SCHEMES, ids=lambda s: s.spec)
def test_every_scheme_round_trips_within_half_a_step_per_unclipped_value(scheme):
    state = trained_like_state()
    blob = A.pack(state, CONFIG, scheme, "zlib", 1)
    back, meta = tg.unpack_artifact(blob)
    assert set(back) == set(state) and meta["scheme"] == f"{scheme.spec}+zlib"
    stored, _, _ = A.inflate(blob)
    for name, w in state.items():
        info = meta["tensors"][name]
        deq = back[name]
        assert deq.shape == w.shape and deq.dtype == torch.float32
        if info["q"] in ("fp16", "bf16", "fp32"):
            assert torch.equal(deq, w.to(A.FLOAT_KINDS[info["q"]]).float())
            continue
        bits = info["bits"]
        assert bits == (8 if name == "tok_emb.weight" else scheme.bits)
        assert info["q"] == ("int_row" if scheme.layout == "bytes" else "int_row_packed")
        scale = stored[name + ".scale"].float()[:, None]
        qmax = 2 ** (bits - 1) - 1
        unclipped = w.abs() <= qmax * scale
        err = (w - deq).abs()
        assert torch.all(err[unclipped] <= scale.expand_as(w)[unclipped] / 2 * (1 + 1e-5) + 1e-12)
        levels = (deq / scale).round()
        assert levels.abs().max() <= qmax and torch.allclose(deq, levels * scale)
        assert torch.all(deq[~unclipped].abs() <= qmax * scale.expand_as(w)[~unclipped] * (1 + 1e-6))


def test_clip_search_never_reconstructs_worse_than_the_plain_max_clip():
    torch.manual_seed(0)
    w = torch.distributions.StudentT(3.0).sample((64, 256))
    for bits in (8, 6, 4):
        q, s = A.quantize_rows_search(w, bits)
        q1, s1 = A.quantize_rows_search(w, bits, fractions=(1.0,))
        err = ((q.float() * s.float()[:, None] - w) ** 2).sum(1)
        err1 = ((q1.float() * s1.float()[:, None] - w) ** 2).sum(1)
        assert torch.all(err <= err1)
        if bits == 4:  # at low bit widths clipping the tail pays on most rows
            assert (err < err1).float().mean() > 0.5


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_bit_packing_round_trips_and_costs_bits_per_value(bits):
    codes = np.random.default_rng(bits).integers(0, 2 ** bits, size=1001).astype(np.uint8)
    packed = A.pack_codes(codes, bits)
    assert packed.size == -(-1001 * bits // 8)
    assert np.array_equal(A.unpack_codes(packed, bits, 1001), codes)


def test_pack_is_byte_identical_on_repeat_for_every_codec():
    state = trained_like_state(1)
    for codec in A.CODEC_IDS:
        level = {"zlib": 6, "zstd": 3, "lzma": 1, "brotli": 5}[codec]
        a = A.pack(state, CONFIG, A.Scheme.parse("int6-clip"), codec, level)
        b = A.pack({k: v.clone() for k, v in state.items()}, CONFIG, A.Scheme.parse("int6-clip"), codec, level)
        assert a == b and a[5] == A.CODEC_IDS[codec]


def test_train_gpt_artifacts_are_read_by_the_same_loader():
    state = trained_like_state(2)
    blob = tg.pack_artifact(*_tg_quantized(state))
    back, meta = tg.unpack_artifact(blob)
    mine, _ = tg.unpack_artifact(A.pack(state, CONFIG, A.Scheme(bits=8), "zlib"))
    for k in state:
        assert torch.equal(back[k], mine[k])


def _tg_quantized(state):
    tensors, scheme = tg.quantize_state_dict(state)
    from dataclasses import asdict
    return tensors, {"scheme": "int8_row+zlib", "config": asdict(CONFIG), "tensors": scheme}


@pytest.mark.parametrize("codec", list(A.CODEC_IDS))
def test_each_codec_refuses_truncated_and_trailing_data(codec):
    data = bytes(range(256)) * 400
    comp = A.compress(data, codec)
    decode = tg.CODECS[A.CODEC_IDS[codec]][2]
    assert decode(comp, len(data)) == data
    for bad in (comp[: len(comp) // 2], comp[:-3]):
        with pytest.raises(Exception):
            decode(bad, 1 << 20)
    blob = A.frame(comp[:-3], codec)
    with pytest.raises(tg.GolfError, match="truncated|corrupt"):
        tg.unpack_artifact(blob, "art")


def _bomb(codec: str, nbytes: int) -> bytes:
    """An artifact whose inner stream inflates to nbytes of zeros, built in pieces (never holding it all)."""
    chunk, parts = bytes(1 << 24), []
    if codec == "zlib":
        c = zlib.compressobj(9)
    else:
        import zstandard
        c = zstandard.ZstdCompressor(level=3).compressobj()
    for _ in range(nbytes // len(chunk)):
        parts.append(c.compress(chunk))
    parts.append(c.flush())
    return A.frame(b"".join(parts), codec)


@pytest.mark.parametrize("codec", ["zlib", "zstd", "lzma", "brotli"])
def test_a_small_file_inflating_past_the_limit_is_refused(codec, tmp_path):
    if codec in ("zlib", "zstd"):
        blob = _bomb(codec, 64 << 20)
    else:
        blob = A.frame(A.compress(bytes(64 << 20), codec, 1), codec)
    assert len(blob) < (1 << 20)
    path = tmp_path / f"bomb.{codec}"
    path.write_bytes(blob)
    with pytest.raises(tg.GolfError, match="decompression bomb"):
        tg.read_artifact(path, limit=16 << 20)


def test_zstd_bomb_past_the_default_limit_is_refused_by_a_tool(tmp_path, capsys):
    import score
    blob = _bomb("zstd", tg.MAX_INFLATED_BYTES + (16 << 20))
    assert len(blob) < 200_000
    path = tmp_path / "bomb.ptz"
    path.write_bytes(blob)
    assert A.run_cli(lambda: score.main([str(path), "--data", str(tmp_path)])) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "decompression bomb" in err and "\n" not in err


def test_pickle_files_are_refused_without_being_unpickled(tmp_path):
    zipped, raw = tmp_path / "model.pt", tmp_path / "model.pkl"
    torch.save({"w": torch.zeros(2)}, zipped)
    raw.write_bytes(pickle.dumps({"w": [0.0, 1.0]}, protocol=4))
    for path in (zipped, raw):
        with pytest.raises(tg.GolfError, match="pickle"):
            A.load_model_file(path)
    with pytest.raises(tg.GolfError):  # train_gpt's own loaders refuse it too (not a safetensors header)
        tg.load_tensors(zipped)


def test_unknown_quantization_kind_and_codec_are_refused():
    state = trained_like_state(3)
    tensors, info = A.quantize(state, A.Scheme(bits=6))
    info["blocks.0.attn.q.weight"]["q"] = "int3_magic"
    inner = tg.tensors_to_bytes(tensors, A.metadata_for(A.Scheme(bits=6), "zstd", CONFIG, info))
    with pytest.raises(tg.GolfError, match="unknown quantization 'int3_magic'"):
        tg.unpack_artifact(A.frame(A.compress(inner, "zstd", 3), "zstd"))
    good = A.pack(state, CONFIG, A.Scheme(bits=6), "zstd", 3)
    with pytest.raises(tg.GolfError, match="unknown compression codec id 99"):
        tg.unpack_artifact(good[:5] + bytes([99]) + good[6:])
    with pytest.raises(tg.GolfError, match="bad magic"):
        tg.unpack_artifact(b"NOPE" + good[4:])


def test_scheme_specs_parse_and_reject_nonsense():
    s = A.Scheme.parse("int5-clip-emb8-packed-bf16")
    assert (s.bits, s.clip_search, s.embed_bits, s.layout, s.float_kind) == (5, True, 8, "packed", "bf16")
    assert A.Scheme.parse(s.spec) == s and A.Scheme.parse("int8").spec == "int8"
    for bad in ("int3", "fp8", "int6-fast", "int6-emb4"):
        with pytest.raises(tg.GolfError):
            A.Scheme.parse(bad)
    with pytest.raises(tg.GolfError, match="out of range"):
        A.check_codec("zstd", 23)
    with pytest.raises(tg.GolfError, match="unknown codec"):
        A.check_codec("gzip")
