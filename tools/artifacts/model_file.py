"""Reading any model file for the artifact commands: an artifact (models/<RUN_ID>.ptz), a run's raw weights
(models/<RUN_ID>.safetensors) or a training checkpoint (checkpoints/<RUN_ID>/step_NNNNNN.ckpt).

Safetensors is recognised by its structure, pickles and torch.save files are refused by name without unpickling
anything, non-finite weights are refused, and the stored model config is checked (types, bounds, names and shapes, on
PyTorch's meta device, by train_gpt.model_from_state) before any model is built.

    load_model_file(path) -> (float state dict, config dict, kind)   artifact | training .ckpt | raw .safetensors
    load_model(path)      -> (GPT in eval mode, config dict, state)
    runtime(device, bf16, cpu_threads) -> train_gpt's Runtime, chosen by train_gpt's own rules
    counted_code_bytes(path)          -> the code's bytes as a record ships them (train_gpt.shipped_code)
"""
from __future__ import annotations

import math
import struct
import tokenize
from pathlib import Path

import torch

import train_gpt as tg
from tools import common as C
from tools.common import ToolError

PICKLE_HINT = "pickle files are never loaded (they can run code); convert the weights to safetensors"


def sniff(path) -> str:
    """'artifact', 'safetensors', 'pickle' or 'unknown', from the first bytes. Safetensors is recognised by its
    structure (a u64 header length that fits the file, then a JSON object), before any pickle test, so a valid
    safetensors file whose length prefix happens to read "PK" is not mistaken for a zip/pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = f.seek(0, 2)
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror}") from None
    if head[:4] == tg.ARTIFACT_MAGIC:
        return "artifact"
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] in (b"{", b"["):  # a JSON header (load_tensors then checks all of it)
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        return "pickle"  # torch.save zip archive, or a raw pickle stream
    return "unknown"


def _load(path, need_config: bool) -> tuple[dict, dict | None, str, torch.nn.Module | None, dict]:
    kind = sniff(path)
    if kind == "pickle":
        raise ToolError(f"{path} is a pickle/torch.save file: {PICKLE_HINT}")
    if kind == "unknown":
        raise ToolError(f"{path} is neither a golf artifact nor a safetensors file")
    if kind == "artifact":
        state, metadata = tg.read_artifact(path)
    else:
        tensors, metadata = tg.load_tensors(path)
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")} or tensors  # a checkpoint's model
        for name, t in state.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ToolError(f"{path}: tensor {name!r} holds non-finite weights")
    if not state:
        raise ToolError(f"{path} holds no tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    config, model = metadata.get("config"), None
    if isinstance(config, dict) and "looping" in metadata:  # a training checkpoint: depth recurrence's state then
        config = {**config, "looping": metadata["looping"]}
    if need_config:
        if config is None:
            raise ToolError(f"{path} has no model config in its metadata")
        model = tg.model_from_state(state, config, str(path))  # types, bounds, names and shapes before allocating
    return state, config, kind, model, metadata


def load_model_file(path, need_config: bool = True) -> tuple[dict, dict | None, str]:
    """(float state dict, model config dict, kind) of an artifact, a training .ckpt or a raw-weights .safetensors.
    Refused: pickles (never unpickled), non-finite weights, and unless need_config is False, a missing model config
    or one that train_gpt.model_from_state rejects (bad types or bounds, tensors that do not match it)."""
    state, config, kind, _, _ = _load(path, need_config)
    return state, config, kind


def load_model(path) -> tuple[torch.nn.Module, dict, dict]:
    """(GPT in eval mode, config dict, state dict) of any model file; the config is checked before the model is built."""
    state, config, _, model, _ = _load(path, True)
    return model.eval(), config, state


def load_scored_model(path) -> tuple[torch.nn.Module, dict, dict]:
    """(GPT in eval mode, config dict, the scoring settings the file records: empty where it records none)."""
    _, config, _, model, metadata = _load(path, True)
    return model.eval(), config, tg.recorded_scoring(metadata, str(path))


def relative_error(reference: dict, other: dict) -> float:
    """||ref - other|| / ||ref|| over every float tensor of the reference (Frobenius, all tensors together)."""
    num = den = 0.0
    for name, ref in reference.items():
        if ref.is_floating_point():
            ref = ref.double()
            num += float(((ref - other[name].double()) ** 2).sum())
            den += float((ref ** 2).sum())
    return math.sqrt(num / den) if den else 0.0


def runtime(device: str = "auto", bf16: str = "auto", cpu_threads: int = 0, compile: str = "0") -> "tg.Runtime":
    """train_gpt's own device, precision, compile and thread choices (and process group under torchrun), so a tool
    computes with exactly what a run with the same DEVICE, BF16, COMPILE and CPU_THREADS used."""
    return tg.setup_runtime(tg.Hyperparameters(device=device, bf16=bf16, compile=compile, cpu_threads=cpu_threads))


def counted_code_bytes(path=None) -> int:
    """Bytes of the counted code as a record ships it: train_gpt.shipped_code of the file (default: this repository's
    train_gpt.py), the same number a run logs as its Code size; a file already in that form, or one that is not
    Python source (it can only ship as it is), counts as it is."""
    path = C.TRAIN_GPT if path is None else path
    try:
        code = Path(path).read_bytes()
    except OSError as e:
        raise ToolError(f"cannot read code file {path}: {e.strerror}") from None
    try:
        return len(tg.shipped_code(code))
    except (SyntaxError, ValueError, UnicodeDecodeError, tokenize.TokenError):
        return len(code)
