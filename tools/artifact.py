"""Artifact schemes beyond train_gpt.py's int8+zlib: more codecs, packed low-bit layouts, clip search.

Importing this module registers, in train_gpt's tables (so `train_gpt.read_artifact` reads every scheme):
  codecs        2 = zstd (levels 1..22), 3 = lzma (xz, presets 0..9), 4 = brotli (qualities 0..11),
                each with a bounded decompressor (refuses output past the limit, truncated or trailing data);
  dequantizers  "int_row_packed" (per-row intN, codes bit-packed: int6 costs 6 bits), "bf16", "fp32".
The compressor level is a per-call choice and is not stored: decoders do not need it.

Library only (no command line): tools/pack.py, fit.py, score.py, inspect_artifact.py, sample.py and bench_pack.py
build on it. No pickle anywhere: tensors travel in the safetensors layout of train_gpt.tensors_to_bytes.
"""
from __future__ import annotations

import lzma
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import train_gpt as tg  # noqa: E402
from train_gpt import GolfError  # noqa: E402

CAP = tg.CODE_BYTES_CAP
TRAIN_GPT = REPO / "train_gpt.py"

# ----------------------------------------------------------------------------- codecs

DEFAULT_LEVELS = {"zlib": 9, "zstd": 22, "lzma": 9, "brotli": 11}
LEVEL_RANGES = {"zlib": (0, 9), "zstd": (1, 22), "lzma": (0, 9), "brotli": (0, 11)}
ZSTD_INPUT_CHUNK = 512  # bytes of compressed input per step: a zstd block expands at most ~32768x, so <= 16 MiB per step


def _bomb(limit: int) -> GolfError:
    return GolfError(f"inflates to more than {limit} bytes: refused as a decompression bomb")


def zstd_compress(data: bytes, level: int = 22) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(level=level).compress(data)


def zstd_decompress_bounded(data: bytes, limit: int) -> bytes:
    import zstandard
    d = zstandard.ZstdDecompressor().decompressobj()
    out, view = bytearray(), memoryview(data)
    for i in range(0, len(data), ZSTD_INPUT_CHUNK):
        out += d.decompress(view[i:i + ZSTD_INPUT_CHUNK])
        if len(out) > limit:
            raise _bomb(limit)
        if d.eof:
            break
    if not d.eof:
        raise GolfError("compressed stream is truncated")
    if d.unused_data or i + ZSTD_INPUT_CHUNK < len(data):
        raise GolfError("trailing bytes after the compressed stream")
    return bytes(out)


def lzma_compress(data: bytes, level: int = 9) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)


def lzma_decompress_bounded(data: bytes, limit: int) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = d.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise _bomb(limit)
    if not d.eof:
        raise GolfError("compressed stream is truncated")
    if d.unused_data:
        raise GolfError("trailing bytes after the compressed stream")
    return out


def brotli_compress(data: bytes, level: int = 11) -> bytes:
    import brotli
    return brotli.compress(data, quality=level)


def brotli_decompress_bounded(data: bytes, limit: int) -> bytes:
    import brotli
    d = brotli.Decompressor()
    step = 1 << 24
    try:  # brotli >= 1.2: the output of each call can be capped
        out = bytearray(d.process(data, output_buffer_limit=step))
        while not d.is_finished() and not d.can_accept_more_data():
            if len(out) > limit:
                raise _bomb(limit)
            out += d.process(b"", output_buffer_limit=step)
    except TypeError:  # older brotli without output_buffer_limit: feed small input pieces and check as we go
        d, out = brotli.Decompressor(), bytearray()
        for i in range(0, len(data), 64):
            out += d.process(data[i:i + 64])
            if len(out) > limit:
                raise _bomb(limit)
    if len(out) > limit:
        raise _bomb(limit)
    if not d.is_finished():
        raise GolfError("compressed stream is truncated or has trailing bytes")
    return bytes(out)


CODEC_IDS = {"zlib": 1, "zstd": 2, "lzma": 3, "brotli": 4}
_COMPRESSORS = {"zlib": lambda data, level: __import__("zlib").compress(data, level), "zstd": zstd_compress,
                "lzma": lzma_compress, "brotli": brotli_compress}
tg.CODECS.setdefault(2, ("zstd", lambda data: zstd_compress(data, DEFAULT_LEVELS["zstd"]), zstd_decompress_bounded))
tg.CODECS.setdefault(3, ("lzma", lambda data: lzma_compress(data, DEFAULT_LEVELS["lzma"]), lzma_decompress_bounded))
tg.CODECS.setdefault(4, ("brotli", lambda data: brotli_compress(data, DEFAULT_LEVELS["brotli"]), brotli_decompress_bounded))


def check_codec(name: str, level: int | None = None) -> int:
    if name not in CODEC_IDS:
        raise GolfError(f"unknown codec {name!r}: choose from {', '.join(CODEC_IDS)}")
    lo, hi = LEVEL_RANGES[name]
    if level is not None and not lo <= level <= hi:
        raise GolfError(f"level {level} is out of range for {name} ({lo}..{hi})")
    return level if level is not None else DEFAULT_LEVELS[name]


def compress(data: bytes, codec: str, level: int | None = None) -> bytes:
    return _COMPRESSORS[codec](data, check_codec(codec, level))


def codec_name(codec_id: int) -> str:
    return tg.CODECS[codec_id][0] if codec_id in tg.CODECS else f"unknown({codec_id})"


def frame(inner_compressed: bytes, codec: str) -> bytes:
    """The artifact container around already-compressed inner bytes (magic, version, codec id)."""
    return tg.ARTIFACT_MAGIC + bytes([tg.ARTIFACT_VERSION, CODEC_IDS[codec]]) + inner_compressed


def inflate(blob: bytes, what: str = "artifact", limit: int = tg.MAX_INFLATED_BYTES) -> tuple[dict, dict, int]:
    """(stored tensors, metadata, codec id) of an artifact without dequantizing: what inspect shows."""
    if len(blob) < 6 or blob[:4] != tg.ARTIFACT_MAGIC:
        raise GolfError(f"{what}: not a golf artifact (bad magic)")
    if blob[4] != tg.ARTIFACT_VERSION:
        raise GolfError(f"{what}: artifact version {blob[4]} is not supported (expected {tg.ARTIFACT_VERSION})")
    if blob[5] not in tg.CODECS:
        raise GolfError(f"{what}: unknown compression codec id {blob[5]}")
    try:
        inner = tg.CODECS[blob[5]][2](blob[6:], limit)
    except GolfError as e:
        raise GolfError(f"{what}: {e}") from None
    except Exception as e:  # a codec library's own error on corrupt data
        raise GolfError(f"{what}: corrupt {codec_name(blob[5])} stream ({e})") from None
    tensors, metadata = tg.tensors_from_bytes(inner, what)
    return tensors, metadata, blob[5]


# ----------------------------------------------------------------------------- quantization kinds

def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes (each < 2**bits) -> little-endian bitstream of `bits` bits per code."""
    if bits == 8:
        return codes.astype(np.uint8).ravel()
    planes = np.unpackbits(codes.astype(np.uint8).reshape(-1, 1), axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits == 8:
        return packed[:count]
    if packed.size * 8 < count * bits:
        raise ValueError(f"packed data holds {packed.size} bytes, fewer than {count} codes of {bits} bits need")
    planes = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits)
    return np.packbits(np.pad(planes, ((0, 0), (0, 8 - bits))), axis=1, bitorder="little").ravel()


def dequantize_packed(tensors: dict, name: str, info: dict) -> torch.Tensor:
    bits, shape = int(info["bits"]), [int(s) for s in info["shape"]]
    if not 2 <= bits <= 8 or len(shape) != 2:
        raise ValueError(f"bad packed layout bits={bits} shape={shape}")
    codes = unpack_codes(tensors[name].numpy(), bits, math.prod(shape))
    q = torch.from_numpy(codes.astype(np.int16) - (1 << (bits - 1))).reshape(shape)
    return q.float() * tensors[name + ".scale"].float()[:, None]


tg.DEQUANTIZERS.setdefault("int_row_packed", dequantize_packed)
tg.DEQUANTIZERS.setdefault("bf16", lambda t, n, i: t[n].float())
tg.DEQUANTIZERS.setdefault("fp32", lambda t, n, i: t[n].float())

CLIP_FRACTIONS = (1.0, 0.995, 0.985, 0.97, 0.95, 0.93, 0.9, 0.87, 0.84, 0.8)


def quantize_rows_search(w: torch.Tensor, bits: int, fractions=CLIP_FRACTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric intN; each row's clip is the fraction of its max |w| (among `fractions`) whose
    reconstruction has the lowest squared error, judged with the fp16 scale that is actually stored."""
    w = w.float()
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().amax(dim=1)
    best_err = torch.full_like(amax, float("inf"))
    best_scale = torch.zeros(w.size(0), dtype=torch.float16)
    for frac in fractions:
        scale = (amax * frac / qmax).clamp_min(2 ** -24).half()
        s = scale.float()[:, None]
        err = ((torch.clamp(torch.round(w / s), -qmax, qmax) * s - w) ** 2).sum(dim=1)
        better = err < best_err
        best_err, best_scale = torch.where(better, err, best_err), torch.where(better, scale, best_scale)
    q = torch.clamp(torch.round(w / best_scale.float()[:, None]), -qmax, qmax).to(torch.int8)
    return q, best_scale


# ----------------------------------------------------------------------------- schemes

FLOAT_KINDS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Scheme:
    """How a state dict becomes stored tensors. Spec strings: int6, int6-clip, int6-clip-emb8, int4-packed, int8-bf16."""
    bits: int = 8
    clip_search: bool = False
    embed_bits: int = 16  # 16: the tied embedding stays float (train_gpt's choice); 8: per-row int8 like the blocks
    layout: str = "bytes"  # bytes: one value per int8 (train_gpt's int_row); packed: bit-packed codes
    float_kind: str = "fp16"  # storage of the tensors kept float (vectors, control tensors)

    def __post_init__(self):
        if self.bits not in (4, 5, 6, 8):
            raise GolfError(f"bits={self.bits}: choose 8, 6, 5 or 4")
        if self.embed_bits not in (8, 16):
            raise GolfError(f"embed bits={self.embed_bits}: choose 16 or 8")
        if self.layout not in ("bytes", "packed"):
            raise GolfError(f"layout {self.layout!r}: choose bytes or packed")
        if self.float_kind not in FLOAT_KINDS:
            raise GolfError(f"float storage {self.float_kind!r}: choose fp16, bf16 or fp32")

    @property
    def spec(self) -> str:
        parts = [f"int{self.bits}"]
        if self.clip_search:
            parts.append("clip")
        if self.embed_bits != 16:
            parts.append(f"emb{self.embed_bits}")
        if self.layout != "bytes":
            parts.append(self.layout)
        if self.float_kind != "fp16":
            parts.append(self.float_kind)
        return "-".join(parts)

    @classmethod
    def parse(cls, spec: str) -> "Scheme":
        parts = spec.strip().lower().split("-")
        if not parts[0].startswith("int") or not parts[0][3:].isdigit():
            raise GolfError(f"scheme {spec!r}: must start with int8, int6, int5 or int4 (e.g. int6-clip-emb8)")
        kw: dict = {"bits": int(parts[0][3:])}
        for p in parts[1:]:
            if p == "clip":
                kw["clip_search"] = True
            elif p.startswith("emb") and p[3:].isdigit():
                kw["embed_bits"] = int(p[3:])
            elif p in ("bytes", "packed"):
                kw["layout"] = p
            elif p in FLOAT_KINDS:
                kw["float_kind"] = p
            else:
                raise GolfError(f"scheme {spec!r}: unknown part {p!r} (known: clip, emb8, emb16, bytes, packed, fp16, bf16, fp32)")
        try:
            return cls(**kw)
        except GolfError as e:
            raise GolfError(f"scheme {spec!r}: {e}") from None


def _quantize_matrix(t: torch.Tensor, bits: int, clip_search: bool, layout: str) -> tuple[dict, dict]:
    q, scale = quantize_rows_search(t, bits) if clip_search else tg.quantize_rows(t, bits)
    if layout == "bytes":
        return {"": q, ".scale": scale}, {"q": "int_row", "bits": bits}
    codes = (q.to(torch.int16) + (1 << (bits - 1))).numpy().astype(np.uint8)
    return ({"": torch.from_numpy(pack_codes(codes, bits)), ".scale": scale},
            {"q": "int_row_packed", "bits": bits, "shape": list(t.shape)})


def quantize(state_dict: dict, scheme: Scheme) -> tuple[dict, dict]:
    """(stored tensors, per-tensor info) for a float state dict. Role-based like train_gpt: keeps_float tensors
    stay float, except the tied embedding when embed_bits is 8; integer tensors are stored raw."""
    tensors, info = {}, {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if not t.is_floating_point():
            tensors[name], info[name] = t, {"q": "raw"}
            continue
        is_embed = name == "tok_emb.weight" and t.ndim == 2
        if tg.keeps_float(name, t) and not (is_embed and scheme.embed_bits == 8):
            tensors[name], info[name] = t.to(FLOAT_KINDS[scheme.float_kind]), {"q": scheme.float_kind}
            continue
        bits = 8 if is_embed else scheme.bits
        parts, info[name] = _quantize_matrix(t, bits, scheme.clip_search, scheme.layout)
        for suffix, value in parts.items():
            tensors[name + suffix] = value
    return tensors, info


def metadata_for(scheme: Scheme, codec: str, config, info: dict) -> dict:
    config = asdict(config) if not isinstance(config, dict) else config
    return {"scheme": f"{scheme.spec}+{codec}", "config": config, "tensors": info}


def inner_bytes(state_dict: dict, config, scheme: Scheme, codec: str) -> bytes:
    tensors, info = quantize(state_dict, scheme)
    return tg.tensors_to_bytes(tensors, metadata_for(scheme, codec, config, info))


def pack(state_dict: dict, config, scheme: Scheme, codec: str = "zstd", level: int | None = None) -> bytes:
    """The artifact bytes for a float state dict (deterministic: same input, same bytes)."""
    check_codec(codec, level)
    return frame(compress(inner_bytes(state_dict, config, scheme, codec), codec, level), codec)


# ----------------------------------------------------------------------------- loading any model file

PICKLE_HINT = "pickle files are never loaded; convert with safetensors"


def sniff(path) -> str:
    """'artifact', 'safetensors', 'pickle' or 'unknown' from the first bytes of a file."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise GolfError(f"cannot read {path}: {e.strerror}") from None
    if head[:4] == tg.ARTIFACT_MAGIC:
        return "artifact"
    if head[:2] == b"PK" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        return "pickle"  # torch.save zip archive or a raw pickle stream
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def load_model_file(path) -> tuple[dict, dict, str]:
    """(float state dict, model config dict, kind) of an artifact, a training .ckpt or final_model.safetensors."""
    kind = sniff(path)
    if kind == "pickle":
        raise GolfError(f"{path} is a pickle/torch.save file: {PICKLE_HINT}")
    if kind == "artifact":
        state, metadata = tg.read_artifact(path)
    elif kind == "safetensors":
        tensors, metadata = tg.load_tensors(path)
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    else:
        raise GolfError(f"{path} is neither a golf artifact nor a safetensors checkpoint")
    config = metadata.get("config")
    if not isinstance(config, dict):
        raise GolfError(f"{path} has no model config in its metadata")
    known = {f for f in tg.ModelConfig.__dataclass_fields__}
    if set(config) - known:
        raise GolfError(f"{path}: model config has unknown keys {sorted(set(config) - known)}")
    if not state:
        raise GolfError(f"{path} holds no tensors")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}, config, kind


def load_model(path, what: str | None = None) -> tuple[torch.nn.Module, dict, dict]:
    """(GPT in eval mode, config dict, state dict) from any model file; GolfError on shape mismatch."""
    state, config, _ = load_model_file(path)
    model = tg.model_from_state(state, config, what or str(path))
    return model.eval(), config, state


def relative_error(reference: dict, other: dict) -> float:
    """||ref - other|| / ||ref|| over every float tensor of the reference (Frobenius, all tensors together)."""
    num = den = 0.0
    for name, ref in reference.items():
        if not ref.is_floating_point():
            continue
        ref = ref.double()
        num += float(((ref - other[name].double()) ** 2).sum())
        den += float((ref ** 2).sum())
    return math.sqrt(num / den) if den else 0.0


def code_bytes(path=None) -> int:
    path = Path(path) if path else TRAIN_GPT
    try:
        return path.stat().st_size
    except OSError as e:
        raise GolfError(f"cannot read code file {path}: {e.strerror}") from None


def run_cli(main) -> int:
    """Run a tool's main(); GolfError and bad-input errors become one `error:` line and exit 1."""
    try:
        return main() or 0
    except GolfError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
