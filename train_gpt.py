"""golf train_gpt.py: train, quantize, pack and score a language model for the 16 MB challenge.

Run:  torchrun --standalone --nproc_per_node=1 train_gpt.py   (or plain `python train_gpt.py`)
Every setting is an environment variable; see Hyperparameters below for names and defaults.
Importing this file has no side effects: tools/ import it for the model, data reader, metric and artifact code.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import lzma
import math
import os
import platform
import re
import resource
import struct
import sys
import time
import tokenize
import zlib
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class GolfError(Exception):
    """A problem the user can fix; reported as one line and a non-zero exit."""


# ----------------------------------------------------------------------------- settings

def S(default, bound: str = "", part: str = ""):
    """A setting's default and bound: an interval '[lo,hi)' (either end may be left open: '[0,)'), or 'a|b|c' (the
    values allowed). part: "model" (in the model's config, saved with every checkpoint and artifact) or "eval" (how
    the artifact is scored, recorded with it so that EVAL_ARTIFACT and `python -m tools score` score it the same)."""
    return field(default=default, metadata={"bound": bound, "part": part})


@dataclass
class Hyperparameters:
    """Every setting, once: its environment variable is the name in upper case; a line's comment says what it means."""
    recipe: str = S("seed", "seed|record|cpu_small")  # a preset under the other settings (RECIPES): seed = these defaults
    # data and run
    data_path: str = S("./data/datasets/fineweb10B_sp1024")
    tokenizer_path: str = S("")  # empty: the dataset's manifest.json, else the published sp1024 model
    run_id: str = S("")  # names the run's files under OUT_DIR; empty: a timestamp and random bits
    out_dir: str = S(".")
    seed: int = S(1337, "[0,9223372036854775808)")
    # schedule
    iterations: int = S(20000, "[1,)")
    warmup_steps: int = S(20, "[0,)")  # compile warm-up steps, undone before training starts
    lr_warmup_steps: int = S(0, "[0,)")  # linear learning-rate warm-up over the first N steps (the seed recipe has none)
    warmdown_iters: int = S(3500, "[0,)")
    train_batch_tokens: int = S(131072, "[1,)")  # per optimizer step, over all processes
    train_seq_len: int = S(2048, "[1,)")
    max_wallclock_seconds: float = S(600.0, "[0,)")  # 0 = no cap
    val_loss_every: int = S(1000, "[0,)")
    train_log_every: int = S(200, "[0,)")
    # model
    vocab_size: int = S(1024, "[1,65536]", "model")  # shards hold uint16 token ids
    num_layers: int = S(7, "[1,1024]", "model")
    model_dim: int = S(512, "[1,65536]", "model")
    num_heads: int = S(8, "[1,)", "model")
    num_kv_heads: int = S(4, "[1,)", "model")
    mlp_mult: int = S(4, "[1,64]", "model")
    rope_base: float = S(50000.0, "(0,)", "model")
    logit_softcap: float = S(30.0, "[0,)", "model")  # 0 = off
    tie_embeddings: bool = S(True, "", "model")
    tied_embed_init_std: float = S(0.005, "(0,100]", "model")
    qk_gain_init: float = S(1.5, "[0,)", "model")
    bigram_buckets: int = S(8192, "[0,16777216]", "model")  # 0 = no BigramHash, else at least 2
    bigram_dim: int = S(128, "[0,65536]", "model")  # 0 = full model width, no projection
    # leaderboard techniques (off unless set; RECIPE=record turns on the record stack)
    rope_dims: int = S(0, "[0,)", "model")  # rotate only the first ROPE_DIMS dims of each head (0 = all)
    xsa_last_n: int = S(0, "[0,)", "model")  # exclusive self-attention in the last N blocks
    attn_gate: bool = S(False, "", "model")  # per-head attention output gate, identity at init
    doc_mask: bool = S(False, "", "model")  # attention never crosses a BOS (flash-attn varlen on CUDA when installed, else a mask)
    ln_scale: bool = S(False, "", "model")  # scale block l's normalized inputs by 1/sqrt(l+1)
    mlp_act: str = S("relu2", "relu2|leaky_relu2", "model")  # leaky_relu2: LeakyReLU(0.5)^2
    parallel_last_n: int = S(0, "[0,)", "model")  # the last N blocks read attention and MLP from the same input
    loop_start: int = S(0, "[0,)", "model")  # depth recurrence: blocks LOOP_START..LOOP_END run 1 + LOOP_REPEATS times
    loop_end: int = S(0, "[0,)", "model")
    loop_repeats: int = S(0, "[0,64]", "model")
    loop_at: float = S(0.0, "[0,1]")  # the fraction of training after which the loop is on
    smear_gate: bool = S(False, "", "model")  # mix each token's embedding with the previous one's through a learned gate
    ema_decay: float = S(0.0, "[0,1)")  # EMA of the weights, evaluated and shipped (0 = off)
    ema_start: int = S(0, "[0,)")  # the step from which the EMA follows the weights
    swa_every: int = S(0, "[0,)")  # SWA instead: average the weights every N steps once the LR multiplier is below SWA_BELOW
    swa_below: float = S(0.5, "[0,1]")
    min_lr: float = S(0.0, "[0,1]")  # floor of the warmdown, as a fraction of the peak learning rate
    wd_taper_start: float = S(1.0, "[0,1]")  # weight-decay taper: from this fraction of training...
    wd_taper_final: float = S(1.0, "[0,)")  # ...linearly to this multiple of WEIGHT_DECAY at the end
    muon_row_norm: bool = S(False)  # normalize each row of Muon's update before Newton-Schulz (MuonEq-R)
    muon_ns: str = S("standard", "standard|polar")  # polar: Polar Express, one coefficient triple per iteration
    # optimizer
    matrix_lr: float = S(0.035, "[0,1000]")
    scalar_lr: float = S(0.035, "[0,1000]")
    tied_embed_lr: float = S(0.09, "[0,1000]")
    embed_lr: float = S(0.6, "[0,1000]")
    head_lr: float = S(0.008, "[0,1000]")
    muon_momentum: float = S(0.95, "[0,1)")
    muon_momentum_warmup_start: float = S(0.85, "[0,1)")
    muon_momentum_warmup_steps: int = S(500, "[0,)")
    muon_backend_steps: int = S(5, "[0,100]")
    weight_decay: float = S(0.025, "[0,)")  # decoupled, on the Muon matrices
    beta1: float = S(0.9, "[0,1)")
    beta2: float = S(0.95, "[0,1)")
    adam_eps: float = S(1e-8, "(0,)")
    grad_clip_norm: float = S(0.3, "[0,)")  # 0 = off
    # evaluation
    eval_seq_len: int = S(2048, "[1,)", "eval")
    eval_stride: int = S(512, "[1,)", "eval")
    eval_batch_seqs: int = S(32, "[1,)", "eval")  # windows per forward pass, per process
    doc_eval: bool = S(False, "", "eval")  # evaluate with attention (and smear) kept within documents: each scored from its own start
    eval_time_cap_seconds: float = S(0.0, "[0,)", "eval")  # TTT stops adapting (scoring goes on) once the final evaluation takes this long
    ttt: str = S("0", "0|sgd|lora", "eval")  # score-first test-time training (see evaluate_ttt)
    ttt_chunk_tokens: int = S(32768, "[1,)", "eval")  # sgd: validation-stream chunk; lora: chunk within a document (at most EVAL_SEQ_LEN)
    ttt_steps: int = S(1, "[0,)", "eval")  # sgd: epochs over each chunk; lora: Adam steps per chunk (0 = score only)
    ttt_lr: float = S(0.005, "[0,1000]", "eval")  # sgd learning rate (cosine to 0 over the chunks)
    ttt_momentum: float = S(0.9, "[0,1)", "eval")
    ttt_params: str = S("all", "all|matrices", "eval")  # sgd: which weights adapt
    ttt_batch_seqs: int = S(32, "[1,)", "eval")  # sgd: sequences per step, over all processes
    ttt_lora_rank: int = S(8, "[1,)", "eval")  # at most MODEL_DIM
    ttt_lora_targets: str = S("q,v", "", "eval")  # comma list of q, k, v, o, fc, down
    ttt_lora_lr: float = S(0.001, "[0,1000]", "eval")
    ttt_reset: bool = S(True, "", "eval")  # lora: fresh adapters for every document
    # artifact
    size_cap_bytes: int = S(16_000_000, "[1,)")  # the challenge's cap on code + compressed model
    artifact: str = S("auto")  # auto: the best-scoring scheme that fits SIZE_CAP_BYTES; or a scheme, e.g. int6-gptq+brotli
    gptq_batches: int = S(16, "[0,)")  # training micro-batches per process whose layer inputs feed GPTQ (counted in train time)
    artifact_eval_tokens: int = S(32768, "[1,)")  # held-out training tokens that score the ARTIFACT=auto candidates
    qat_bits: str = S("0", "0|auto|2|3|4|5|6|7|8")  # late QAT: auto = the width the artifact would use
    qat_lr_scale: float = S(0.15, "[0,)")  # QAT starts once the learning-rate multiplier falls to this
    eval_artifact: str = S("")  # score this artifact instead of training (what a record's script does in `record check`)
    replace_run: bool = S(False)  # let a run replace the files of an earlier, finished run with the same RUN_ID
    # checkpoints and devices
    checkpoint_every: int = S(0, "[0,)")  # 0 = no training-state checkpoints
    checkpoint_keep: int = S(0, "[0,)")  # 0 = keep all
    resume: str = S("")  # path of a .ckpt to continue from
    device: str = S("auto", "auto|cuda|cpu")
    compile: str = S("auto", "auto|0|1")  # auto: on for CUDA, off on CPU
    bf16: str = S("auto", "auto|0|1")  # auto: CUDA, or a CPU with native bf16 matmul; bf16 autocast and Newton-Schulz
    cpu_threads: int = S(0, "[0,)")  # 0 = the cores this process may use, shared among the processes on this node
    fused_ce: bool = S(True)  # the fused Triton cross-entropy, used only on CUDA with triton installed

    @classmethod
    def from_env(cls, environ=os.environ, recorded: dict | None = None) -> "Hyperparameters":
        """Settings from the environment, over `recorded` (an artifact's scoring settings), over the values of RECIPE's
        preset, over the defaults above."""
        check_setting_names(environ)
        preset = RECIPES.get(environ.get("RECIPE", "seed").strip(), {})  # an unknown RECIPE fails its bound
        merged = {**preset, **(recorded or {}), **environ}
        values = {}
        for f in fields(cls):
            name = f.name.upper()
            if name not in merged:
                continue
            raw = merged[name].strip()
            kind = type(f.default)
            try:
                if kind is bool:
                    if raw.lower() not in ("0", "1", "true", "false"):
                        raise ValueError
                    values[f.name] = raw.lower() in ("1", "true")
                else:
                    values[f.name] = kind(raw)
            except ValueError:
                raise GolfError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        h = cls(**values)
        h.check()
        return h

    def check(self) -> None:
        """Each setting against its bound, then the rules that join several settings (and the formats that need code)."""
        problem = bound_problem(self, fields(self)) or model_problem(self)
        if problem:
            raise GolfError(problem)
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise GolfError(msg)
        need(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.run_id or "x") is not None,
             f"RUN_ID={self.run_id!r} must be letters, digits, '.', '_' or '-' (it names files under OUT_DIR)")
        if self.artifact != "auto":
            scheme = Scheme.parse(self.artifact)  # a malformed scheme stops the run before training, not after
            need(not scheme.gptq or self.gptq_batches > 0,
                 f"ARTIFACT={self.artifact} asks for GPTQ but GPTQ_BATCHES=0 gives it no statistics: set GPTQ_BATCHES or drop -gptq")
        targets = self.ttt_lora_targets.split(",")
        need(set(targets) <= set(LORA_TARGETS) and len(set(targets)) == len(targets),
             f"TTT_LORA_TARGETS={self.ttt_lora_targets!r} must be a comma list of {', '.join(LORA_TARGETS)}")
        need(self.ttt_lora_rank <= self.model_dim, f"TTT_LORA_RANK={self.ttt_lora_rank} must be at most MODEL_DIM={self.model_dim}")
        need(self.train_batch_tokens % (8 * self.train_seq_len) == 0,
             f"TRAIN_BATCH_TOKENS={self.train_batch_tokens} must be a multiple of 8*TRAIN_SEQ_LEN={8 * self.train_seq_len}")
        need(self.eval_stride <= self.eval_seq_len, f"EVAL_STRIDE={self.eval_stride} exceeds EVAL_SEQ_LEN={self.eval_seq_len}")
        need(not (self.ema_decay and self.swa_every), "EMA_DECAY and SWA_EVERY are alternatives: set one of them")
        need(not (self.eval_artifact and self.resume), "EVAL_ARTIFACT scores an artifact and RESUME trains: set one of them")
        # switches that would silently never act: the warmdown's multiplier never falls to their threshold
        floor = 1.0 if self.warmdown_iters == 0 else self.min_lr
        why = f"the LR multiplier never falls below {floor} (WARMDOWN_ITERS={self.warmdown_iters}, MIN_LR={self.min_lr})"
        need(self.qat_bits == "0" or floor <= self.qat_lr_scale, f"QAT_BITS={self.qat_bits} would never start at QAT_LR_SCALE={self.qat_lr_scale}: {why}")
        need(not self.swa_every or floor < self.swa_below, f"SWA_EVERY={self.swa_every} would never average below SWA_BELOW={self.swa_below}: {why}")
        need(not self.ema_decay or self.ema_start < self.iterations, f"EMA_START={self.ema_start} is past ITERATIONS={self.iterations}: the EMA would never start")
        need(not self.loop_repeats or self.loop_at < 1, "LOOP_AT=1 would never turn depth recurrence on: set it below 1")


def bound_problem(obj, settings) -> str | None:
    """The first value of `obj` outside its setting's bound (and any float that is not finite), as a message."""
    for f in settings:
        value, bound = getattr(obj, f.name), f.metadata.get("bound", "")
        name = f.name.upper()
        if isinstance(value, float) and not abs(value) < 3.4e38:  # float32's range: weights and step sizes are float32
            return f"{name}={value} must be a finite number (below 3.4e38)"
        if "|" in bound and str(value) not in bound.split("|"):
            return f"{name}={value!r} must be one of {', '.join(bound.split('|'))}"
        if bound[:1] in "[(" and bound:
            lo, hi = bound[1:-1].split(",")
            if (lo and (value < float(lo) if bound[0] == "[" else value <= float(lo))) or \
                    (hi and (value > float(hi) if bound[-1] == "]" else value >= float(hi))):
                if bound in ("[1,)", "(0,)"):
                    return f"{name}={value} must be positive"
                return f"{name}={value} must not be negative" if bound == "[0,)" else \
                    f"{name}={value} must be in {bound[0]}{lo}, {hi or 'inf'}{bound[-1]}"
    return None


def model_problem(c) -> str | None:
    """The rules that join the model's settings (for the settings of a run, or a config read from a file)."""
    head_dim = c.model_dim // c.num_heads if c.num_heads else 0
    rules = [
        (c.model_dim % c.num_heads == 0, f"MODEL_DIM={c.model_dim} is not divisible by NUM_HEADS={c.num_heads}"),
        (head_dim % 2 == 0, f"MODEL_DIM/NUM_HEADS={head_dim} must be even for rotary embeddings"),
        (c.num_heads % c.num_kv_heads == 0, f"NUM_HEADS={c.num_heads} is not divisible by NUM_KV_HEADS={c.num_kv_heads}"),
        (c.rope_dims % 2 == 0 and c.rope_dims <= head_dim, f"ROPE_DIMS={c.rope_dims} must be even and at most the head width {head_dim}"),
        (c.bigram_buckets != 1, "BIGRAM_BUCKETS=1 must be 0 (off) or at least 2"),
        (not c.loop_repeats or c.loop_start <= c.loop_end < c.num_layers,
         f"LOOP_START={c.loop_start}..LOOP_END={c.loop_end} must be blocks of the {c.num_layers}"),
    ]
    return next((msg for ok, msg in rules if not ok), None)


# Presets: each sets some settings; the environment still overrides any of them, and the log prints what resolved.
RECIPES = {
    "seed": {},  # the challenge's 1xH100 seed recipe: the defaults above
    # The top records' stack at its published shape (late April 2026, see docs/techniques.md), on SP8192 FineWeb
    # (python -m data.download_fineweb --variant sp8192).
    "record": dict(
        DATA_PATH="./data/datasets/fineweb10B_sp8192", VOCAB_SIZE="8192", NUM_LAYERS="11", MODEL_DIM="512", NUM_HEADS="8",
        NUM_KV_HEADS="4", MLP_MULT="4", MLP_ACT="leaky_relu2", BIGRAM_BUCKETS="0", XSA_LAST_N="11", ROPE_DIMS="16",
        ROPE_BASE="10000", LN_SCALE="1", QK_GAIN_INIT="5.0", ATTN_GATE="1", SMEAR_GATE="1", DOC_MASK="1",
        PARALLEL_LAST_N="3", LOOP_START="3", LOOP_END="5", LOOP_REPEATS="2", LOOP_AT="0.35", EMA_DECAY="0.9965",
        TRAIN_BATCH_TOKENS="786432", WARMDOWN_ITERS="3700", MIN_LR="0.1", MATRIX_LR="0.026", TIED_EMBED_LR="0.03",
        SCALAR_LR="0.02", MUON_MOMENTUM="0.97", MUON_MOMENTUM_WARMUP_START="0.92", MUON_MOMENTUM_WARMUP_STEPS="1500",
        WEIGHT_DECAY="0.095", BETA2="0.99", MUON_ROW_NORM="1", MUON_NS="polar", VAL_LOSS_EVERY="0", EVAL_STRIDE="64"),
    # The CPU-small shape and 100-step schedule of docs/techniques.md with what helped there: LeakyReLU^2, an untied
    # zero-initialised head (a tied table's LR must stay low for the logits' sake), Muon's row norm + Polar Express,
    # and 8x the bigram table (11.7 MB of artifact at this shape).
    "cpu_small": dict(
        NUM_LAYERS="4", MODEL_DIM="256", NUM_HEADS="4", NUM_KV_HEADS="2", TRAIN_SEQ_LEN="256", TRAIN_BATCH_TOKENS="16384",
        MLP_ACT="leaky_relu2", TIE_EMBEDDINGS="0", EMBED_LR="0.3", MUON_ROW_NORM="1", MUON_NS="polar", BIGRAM_BUCKETS="65536",
        ITERATIONS="100", WARMDOWN_ITERS="33", WARMUP_STEPS="0", MAX_WALLCLOCK_SECONDS="0", VAL_LOSS_EVERY="0",
        EVAL_SEQ_LEN="256", EVAL_STRIDE="256"),
}


# Settings that the challenge's record scripts read and golf does not have: copying a record's command must not
# silently run something else. (Collected from the train_gpt.py files of openai/parameter-golf's record track.)
RECORD_ONLY_SETTINGS = frozenset((  # (the names of SETTING_ALIASES are not repeated here)
    "ADAM_WD ADAM_WEIGHT_DECAY ATTN_CLIP_SIGMAS ATTN_OUT_GATE_ENABLED ATTN_OUT_GATE_SRC BLOCK_LARS_MIN_SCALE "
    "BLOCK_LARS_TRUST CASEOPS_ENABLED COMPRESSOR DTG_ENABLED EMA_ENABLED EMBEDDING_DIM EMBED_BITS EMBED_CLIP_SIGMAS "
    "EMBED_WD ENABLE_LOOPING_AT EVAL_BATCH_SIZE EVAL_NTK_ALPHA EVAL_ONLY_PATH EVAL_ONLY_QUANTIZED_PATH "
    "FP16_EMBED_EXPORT FP16_KEEP_NAME_PATTERNS FP16_PASSTHROUGH_PATTERNS FP_STORAGE FUSED_CE_ENABLED GATED_ATTENTION "
    "GATED_ATTN_ENABLED GATED_ATTN_INIT_STD GATED_ATTN_QUANT_GATE GATE_ATTN_OUT GATE_ATTN_SRC GATE_MLP_OUT "
    "GATE_WIDTH GATE_WINDOW GLOBAL_TTT_BATCH_SEQS GLOBAL_TTT_CHUNK_TOKENS GLOBAL_TTT_DOC_LIMIT GLOBAL_TTT_EPOCHS "
    "GLOBAL_TTT_GRAD_CLIP GLOBAL_TTT_LR GLOBAL_TTT_MOMENTUM GLOBAL_TTT_RESPECT_DOC_BOUNDARIES "
    "GLOBAL_TTT_WARMUP_CHUNKS GLOBAL_TTT_WARMUP_START_LR GPTQ_BLOCK_SIZE GPTQ_CALIBRATION_BATCHES GPTQ_CALIB_BATCHES "
    "GPTQ_CALIB_SAMPLES GPTQ_RESERVE_MS GPTQ_RESERVE_SECONDS INT4_LAYERS INT4_STEP INT6_LAYER_END INT6_LAYER_START "
    "LATE_QAT LATE_QAT_THRESHOLD LAWA_ENABLED LAWA_FREQ LAWA_K LORA_LR LORA_RANK LQER_ASYM_ENABLED LQER_ASYM_GROUP "
    "LQER_ENABLED LQER_FACTOR_BITS LQER_RANK LQER_TOP_K MATRIX_BITS MATRIX_CLIP_SIGMAS MLP_CLIP_SIGMAS MLP_HIDDEN "
    "MTP_LOSS_WEIGHT MTP_NUM_HEADS MUON_BETA2 MUON_ROW_NORMALIZE NEGATIVE_SLOPE NUM_LOOPS PARALLEL_FINAL_LANE "
    "PARALLEL_START_LAYER PHASED_TTT_ENABLED PHASED_TTT_NUM_PHASES PHASED_TTT_PREFIX_DOCS PREQUANT_ONLY PRUNE_RATIO "
    "QAT QAT_ENABLED QAT_INT6 QAT_THRESHOLD QUANT_CLIP_RANGE ROPE_TRAIN_SEQ_LEN ROPE_YARN SKIP_GATES_ENABLED "
    "SKIP_POST_TRAIN_EVAL SLIDING_WINDOW_ENABLED SMEAR_GATE_ENABLED SMEAR_GATE_WIDTH SPARSE_ATTN_GATE_ENABLED "
    "SPARSE_ATTN_GATE_INIT_STD SPARSE_ATTN_GATE_SCALE SWA_ENABLED SWA_START_FRAC TARGET_MB TRAIN_FILES TRIGRAM "
    "TTT_BATCH_SIZE TTT_BETA1 TTT_BETA2 TTT_CHUNK_SIZE TTT_DEBUG_BYPASS TTT_DOC_LIMIT TTT_ENABLED TTT_EPOCHS "
    "TTT_EVAL_BATCHES TTT_EVAL_ONLY TTT_EVAL_SEQ_LEN TTT_FREEZE_BLOCKS TTT_GRAD_CLIP TTT_GRAD_STEPS "
    "TTT_HEARTBEAT_SECONDS TTT_K_LORA TTT_LORA_ALPHA TTT_MLP_LORA TTT_ONLY TTT_ONLY_EVAL TTT_OPTIMIZER "
    "TTT_OUTPUT_DIR TTT_O_LORA TTT_WARM_START_A TTT_WEIGHT_DECAY USE_GPTQ USE_INT6 USE_SMEARGATE USE_ZSTD "
    "VALUE_RESIDUAL VAL_BATCH_TOKENS VAL_DOC_FRACTION VAL_FILES VAL_MAX_TOKENS VE_DIM VE_ENABLED VE_LAYERS "
    "WARMDOWN_FRAC WD_TAPER_FINAL_MULT WD_TAPER_START_FRAC ZSTD_LEVEL "
).split())
SETTING_ALIASES = {"MUON_WD": "WEIGHT_DECAY", "MUON_WEIGHT_DECAY": "WEIGHT_DECAY", "VAL_BATCH_SIZE": "EVAL_BATCH_SEQS",
                   "BIGRAM_VOCAB_SIZE": "BIGRAM_BUCKETS", "BIGRAM_HASH_BUCKETS": "BIGRAM_BUCKETS", "BIGRAM_HASH_DIM": "BIGRAM_DIM",
                   "COMPILE_MODEL": "COMPILE", "USE_COMPILE": "COMPILE", "STRIDE": "EVAL_STRIDE", "SW_EVAL_BATCH": "EVAL_BATCH_SEQS"}


def setting_name_problem(name: str, settings) -> str | None:
    """Why an environment variable looks like a mistyped or unsupported setting (None when it does not)."""
    if name in settings:
        return None
    guess = SETTING_ALIASES.get(name)
    if guess is None and name.upper() in settings:
        guess = name.upper()
    if guess is None:
        guess = next(iter(difflib.get_close_matches(name, settings, n=1, cutoff=0.88)), None)
    if guess:
        return f"{name} is not a setting of train_gpt.py (did you mean {guess}?)"
    if name in RECORD_ONLY_SETTINGS:
        return f"{name} is a setting of the challenge's record scripts that golf does not have"
    return None


def check_setting_names(environ) -> None:
    settings = {f.name.upper() for f in fields(Hyperparameters)}
    for name in sorted(environ):
        problem = setting_name_problem(name, settings)
        if problem:
            raise GolfError(problem)


# ----------------------------------------------------------------------------- runtime: device, precision, threads

@dataclass
class Runtime:
    rank: int
    world_size: int
    device: torch.device
    bf16: bool  # bf16 autocast and bf16 Newton-Schulz
    compile: bool
    choices: str = ""  # what was chosen for precision, compile and threads, and why (logged)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


def cpu_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU multiplies bf16 matrices in hardware (x86 AVX-512 BF16 or AMX, Arm BF16), from the flags the
    kernel reports; None where they cannot be read (not Linux)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    flags = {f for line in lines if line.split(":")[0].strip() in ("flags", "Features") for f in line.split(":", 1)[1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) if flags else None


def matmul_gflops(dtype: torch.dtype, n: int = 256, seconds: float = 0.1, device="cpu") -> float:
    """Measured GFLOP/s of an n x n x n matrix product in dtype on this device (at least 3 repetitions)."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def choose_bf16(setting: str, device_type: str, native: bool | None, measure=matmul_gflops) -> tuple[bool, str]:
    """BF16=auto: on for CUDA; on a CPU only where bf16 matmul is native (from the CPU flags, or measured against fp32
    where the flags are unknown). Returns (use bf16, the reason for the log; a 'warning:' prefix when forced on slowly)."""
    if device_type == "cuda":
        return setting != "0", f"BF16={setting} on CUDA"
    if setting == "0":
        return False, "BF16=0"
    if setting == "1" and native:
        return True, "BF16=1, CPU has native bf16 matmul"
    if native is None or setting == "1":
        fp32, bf16 = measure(torch.float32), measure(torch.bfloat16)
        speed = f"bf16 matmul {bf16:.1f} GFLOP/s vs fp32 {fp32:.1f} ({fp32 / bf16:.1f}x slower)" if bf16 < fp32 else \
            f"bf16 matmul {bf16:.1f} GFLOP/s vs fp32 {fp32:.1f}"
        if setting == "1":
            return True, f"warning: BF16=1 on a CPU without native bf16 matmul, {speed}; BF16=auto would use fp32"
        return bf16 >= fp32, f"BF16=auto, CPU flags unknown, measured {speed}"
    return native, f"BF16=auto, CPU {'has' if native else 'has no'} native bf16 matmul (avx512_bf16/amx_bf16/bf16 flags)"


def cpu_thread_count(setting: int, environ, local_world_size: int, cores: int) -> tuple[int, str]:
    """CPU_THREADS, else an explicit OMP_NUM_THREADS (not the 1 that torchrun puts there for several processes),
    else this process's share of the cores it may run on."""
    omp = environ.get("OMP_NUM_THREADS", "")
    torchrun_default = local_world_size > 1 and omp == "1" and "TORCHELASTIC_RUN_ID" in environ
    if setting > 0:
        count, why = setting, f"CPU_THREADS={setting}"
    elif omp.isdecimal() and int(omp) > 0 and not torchrun_default:
        count, why = int(omp), f"OMP_NUM_THREADS={omp}"
    else:
        return max(1, cores // local_world_size), f"{cores} cores / {local_world_size} processes on this node"
    if count > 4 * cores:  # far past any speed-up, and PyTorch crashes on some huge counts
        raise GolfError(f"{why.split('=')[0]}={count} threads on {cores} cores: at most {4 * cores} (4 per core)")
    return count, why


def process_number(name: str, default: int) -> int:
    """RANK, WORLD_SIZE or LOCAL_RANK (torchrun sets them): a non-negative integer."""
    raw = os.environ.get(name, str(default)).strip()
    if not raw.isdecimal():
        raise GolfError(f"{name}={raw!r} must be a non-negative integer (torchrun sets it)")
    return int(raw)


def setup_runtime(h: Hyperparameters) -> Runtime:
    """The one place with device-specific choices: CUDA gets NCCL, TF32, bf16 and compile by default; CPU gets gloo,
    its share of the cores, and bf16 only where the CPU multiplies bf16 natively."""
    rank, world_size, local_rank = (process_number(name, default) for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    if world_size not in (1, 2, 4, 8) or rank >= world_size:
        raise GolfError(f"WORLD_SIZE={world_size} must divide 8 (the global batch is 8 micro-batches), with RANK={rank} below it")
    use_cuda = h.device == "cuda" or (h.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise GolfError("DEVICE=cuda but no CUDA device is available")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise GolfError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} CUDA devices")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        threads = ""
    else:
        device = torch.device("cpu")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        count, why = cpu_thread_count(h.cpu_threads, os.environ, max(1, process_number("LOCAL_WORLD_SIZE", world_size)), cores)
        torch.set_num_threads(count)
        threads = f" threads:{count} ({why})"
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    bf16, why_bf16 = choose_bf16(h.bf16, device.type, None if use_cuda else cpu_native_bf16())
    # On CPU the first compiled step costs minutes and pays back only on long runs; see the README's measurements.
    compile_model = use_cuda if h.compile == "auto" else h.compile == "1"
    why_compile = f"COMPILE={h.compile}" + (" (on for CUDA, off on CPU)" if h.compile == "auto" else "")
    choices = f"precision:{'bf16' if bf16 else 'fp32'} ({why_bf16}) compile:{int(compile_model)} ({why_compile}){threads}"
    return Runtime(rank, world_size, device, bf16, compile_model, choices)


def runnable(model: nn.Module, h: Hyperparameters, rt: Runtime) -> nn.Module:
    """The model as it runs on this device: the fused cross-entropy where it can run, compiled where COMPILE says
    (the run and `python -m tools score` both run it so, and so give the same digits)."""
    model.fused_ce = h.fused_ce and rt.device.type == "cuda" and triton_available()
    return torch.compile(model) if rt.compile else model


def hardware_line(rt: Runtime) -> str:
    if rt.device.type == "cuda":
        name = f"{torch.cuda.get_device_name(rt.device)} x{rt.world_size}"
    else:
        name = f"cpu {platform.processor() or platform.machine()} threads:{torch.get_num_threads()} x{rt.world_size} processes"
    return f"hardware: {name} torch:{torch.__version__} python:{platform.python_version()}"


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- data

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_WORDS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_WORDS * 4
PUBLISHED_TOKENIZER = "./data/tokenizers/fineweb_{vocab}_bpe.model"  # where data/download_fineweb.py puts it


def read_shard_header(path) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(SHARD_HEADER_BYTES), dtype="<i4")
    except OSError as e:
        raise GolfError(f"cannot read shard {path}: {e.strerror}") from None
    if header.size < SHARD_HEADER_WORDS:
        raise GolfError(f"shard {path} is truncated: {size} bytes, shorter than its {SHARD_HEADER_BYTES}-byte header")
    if header[0] != SHARD_MAGIC:
        raise GolfError(f"shard {path} has magic {header[0]}, expected {SHARD_MAGIC}: not a token shard")
    if header[1] != SHARD_VERSION:
        raise GolfError(f"shard {path} has version {header[1]}, expected {SHARD_VERSION}")
    count = int(header[2])
    if count < 0 or size != SHARD_HEADER_BYTES + 2 * count:
        raise GolfError(f"shard {path} is {size} bytes but its header promises {count} tokens "
                        f"({SHARD_HEADER_BYTES + 2 * count} bytes): truncated or corrupt")
    return count


def load_shard(path, vocab_size: int = 0) -> np.ndarray:
    count = read_shard_header(path)
    tokens = np.fromfile(path, dtype="<u2", count=count, offset=SHARD_HEADER_BYTES)
    if vocab_size and count and int(tokens.max()) >= vocab_size:
        raise GolfError(f"shard {path} holds token id {int(tokens.max())}, not below VOCAB_SIZE={vocab_size}")
    return tokens


def list_shards(data_path, split: str) -> list[Path]:
    root = Path(data_path)
    if not root.is_dir():
        raise GolfError(f"DATA_PATH={data_path} is not a directory")
    files = sorted(root.glob(f"*{split}_*.bin"))
    if not files:
        raise GolfError(f"DATA_PATH={data_path} holds no {split} shards (*{split}_*.bin)")
    return files


class ByteTokenizer:
    """The published pure-byte vocabulary: a few special ids, then one id per byte value."""
    kind = "pure_byte"

    def __init__(self, config: dict):
        defaults = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, "byte_offset": 4, "byte_count": 256}
        values = {k: config.get(k, v) if isinstance(config, dict) else None for k, v in defaults.items()}
        if not all(type(v) is int and 0 <= v <= 65536 for v in values.values()):
            raise GolfError(f"pure-byte tokenizer config {config!r}: ids must be integers in 0..65536")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (values[k] for k in ("pad_id", "bos_id", "eos_id", "unk_id"))
        self.byte_offset, self.byte_count = values["byte_offset"], values["byte_count"]
        self.vocab_size = self.byte_offset + self.byte_count

    def encode(self, text: str) -> list[int]:
        return [self.byte_offset + b for b in text.encode("utf-8")]

    def decode(self, ids) -> str:
        data = bytes(i - self.byte_offset for i in ids if self.byte_offset <= i < self.vocab_size)
        return data.decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    kind = "sentencepiece"

    def __init__(self, path: Path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise GolfError(f"tokenizer {path} is not a SentencePiece model: {str(e).splitlines()[0]}") from None
        self.vocab_size, self.bos_id = self.sp.vocab_size(), self.sp.bos_id()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])


def read_json_file(path: Path, what: str):
    """A small JSON file (a manifest, a tokenizer spec): refused in one line if unreadable, over 64 MiB or nested too deep."""
    try:
        if path.stat().st_size > 1 << 26:
            raise GolfError(f"{what} {path} is over 64 MiB: not a {what}")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise GolfError(f"{what} {path} is not readable JSON: {type(e).__name__}: {str(e)[:200]}") from None


def load_tokenizer(path):
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"tokenizer {path} does not exist (set TOKENIZER_PATH)")
    if path.suffix == ".json":
        spec = read_json_file(path, "tokenizer")
        if not isinstance(spec, dict) or spec.get("tokenizer_type") != "pure_byte":
            raise GolfError(f"tokenizer {path}: unsupported tokenizer_type {spec.get('tokenizer_type') if isinstance(spec, dict) else None!r}")
        return ByteTokenizer(spec.get("config", {}))
    return SentencePieceTokenizer(path)


def resolve_tokenizer_path(data_path, tokenizer_path: str = "", vocab_size: int = 1024) -> Path:
    if tokenizer_path:
        return Path(tokenizer_path)
    manifest = Path(data_path) / "manifest.json"
    if manifest.is_file():
        spec = read_json_file(manifest, "manifest")
        if not isinstance(spec, dict):
            raise GolfError(f"{manifest} is not a JSON object")
        rel = spec.get("tokenizer_path")
        if rel and not isinstance(rel, str):
            raise GolfError(f"{manifest}: tokenizer_path {rel!r} is not a path")
        if rel:
            return Path(data_path) / rel
    return Path(PUBLISHED_TOKENIZER.format(vocab=vocab_size))


def build_byte_luts(tokenizer):
    """Per-token tables for val_bpb: bytes of the piece, whether it starts with a space marker, and whether it
    is a boundary (control/unknown/unused: zero bytes, and the next token's leading space is not printed)."""
    vocab = tokenizer.vocab_size
    base_bytes = np.zeros(vocab, dtype=np.int16)
    has_leading_space = np.zeros(vocab, dtype=bool)
    is_boundary = np.ones(vocab, dtype=bool)
    if tokenizer.kind == "pure_byte":
        base_bytes[tokenizer.byte_offset:] = 1
        is_boundary[tokenizer.byte_offset:] = False
        return base_bytes, has_leading_space, is_boundary
    sp = tokenizer.sp
    for i in range(vocab):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        is_boundary[i] = False
        if sp.is_byte(i):
            base_bytes[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            has_leading_space[i], piece = True, piece[1:]
        base_bytes[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
    return base_bytes, has_leading_space, is_boundary


def validate_dataset(data_path, tokenizer_path, vocab_size: int, full: bool = False) -> dict:
    """Check shards and tokenizer before training. Headers and sizes always; every token's range for the
    validation split (and, with full=True, the training split); and that the validation targets stand for some bytes
    (val_bpb divides by them)."""
    shards = {split: list_shards(data_path, split) for split in ("train", "val")}
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.vocab_size != vocab_size:
        raise GolfError(f"tokenizer {tokenizer_path} has {tokenizer.vocab_size} tokens but VOCAB_SIZE={vocab_size}")
    summary = {"tokenizer": str(tokenizer_path), "vocab_size": vocab_size, "bos_id": tokenizer.bos_id}
    for split, files in shards.items():
        if full or split == "val":
            tokens = np.concatenate([load_shard(f, vocab_size) for f in files])
            count = len(tokens)
        else:
            count = sum(read_shard_header(f) for f in files)
        if count == 0:
            raise GolfError(f"DATA_PATH={data_path}: the {split} shards hold no tokens")
        summary[split] = {"shards": len(files), "tokens": count}
    summary["val"]["bytes"] = target_bytes(tokens, build_byte_luts(tokenizer))  # tokens: the val split's, read last
    if summary["val"]["bytes"] == 0:
        raise GolfError(f"DATA_PATH={data_path}: the validation targets stand for no bytes (only control or unknown "
                        "tokens, such as BOS): val_bpb would divide by zero")
    return summary


def target_bytes(tokens: np.ndarray, luts) -> int:
    """The UTF-8 bytes the targets tokens[1:] stand for (the denominator of val_bpb)."""
    base_bytes, has_space, is_boundary = luts
    x, y = tokens[:-1].astype(np.int64), tokens[1:].astype(np.int64)
    return int(base_bytes[y].sum(dtype=np.int64) + (has_space[y] & ~is_boundary[x]).sum())


def load_val_tokens(data_path, seq_len: int, vocab_size: int) -> np.ndarray:
    tokens = np.concatenate([load_shard(f, vocab_size) for f in list_shards(data_path, "val")])
    if tokens.size < seq_len + 1:
        raise GolfError(f"the validation split of {data_path} has {tokens.size} tokens, "
                        f"shorter than one sequence (EVAL_SEQ_LEN/TRAIN_SEQ_LEN={seq_len}, plus 1)")
    return tokens


class TokenStream:
    """Reads the training shards in order, wrapping around; its position can be saved and restored."""

    def __init__(self, files: list[Path], vocab_size: int):
        self.files, self.vocab_size = files, vocab_size
        self.restore({"file_idx": 0, "pos": 0})

    def restore(self, state: dict) -> None:
        self.file_idx, self.pos = int(state["file_idx"]), int(state["pos"])
        self.tokens = load_shard(self.files[self.file_idx], self.vocab_size)

    def state(self) -> dict:
        return {"file_idx": self.file_idx, "pos": self.pos}

    def take(self, n: int) -> np.ndarray:
        chunks = []
        while n > 0:
            if self.pos >= len(self.tokens):
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.pos, self.tokens = 0, load_shard(self.files[self.file_idx], self.vocab_size)
                continue
            k = min(n, len(self.tokens) - self.pos)
            chunks.append(self.tokens[self.pos:self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(chunks)


class DistributedTokenLoader:
    """Every micro-step takes one contiguous span per process from the shared stream, so the global batch and
    its order are the same for any number of processes. A step's micro-batches go to the device in one copy: on CUDA
    from pinned memory, on a side stream, so the copy runs beside the compute still queued from the last step and
    the host never waits for it."""

    def __init__(self, files, vocab_size: int, rank: int, world_size: int, device: torch.device):
        self.stream = TokenStream(files, vocab_size)
        self.rank, self.world_size, self.device = rank, world_size, device
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def next_batches(self, count: int, tokens_per_process: int, seq_len: int) -> list:
        """`count` micro-batches (x, y) of this process's tokens, as (tokens_per_process/seq_len, seq_len) int64."""
        span = tokens_per_process + 1
        spans = [self.stream.take(span * self.world_size)[self.rank * span:(self.rank + 1) * span] for _ in range(count)]
        host = torch.from_numpy(np.stack(spans).astype(np.int32))
        if self.copy_stream is None:
            local = host.to(self.device)
        else:
            with torch.cuda.stream(self.copy_stream):
                local = host.pin_memory().to(self.device, non_blocking=True)
            torch.cuda.current_stream(self.device).wait_stream(self.copy_stream)
            local.record_stream(torch.cuda.current_stream(self.device))
        local = local.long()
        return [(row[:-1].reshape(-1, seq_len), row[1:].reshape(-1, seq_len)) for row in local]

    def next_batch(self, tokens_per_process: int, seq_len: int):
        return self.next_batches(1, tokens_per_process, seq_len)[0]


# ----------------------------------------------------------------------------- model

# The model's config, saved with every checkpoint and artifact: the settings marked model=True, plus the data's BOS id
# and whether depth recurrence is on (the trainer turns it on at LOOP_AT; an artifact records the state it was saved in).
ModelConfig = make_dataclass("ModelConfig", [(f.name, f.type, field(default=f.default)) for f in fields(Hyperparameters)
                                             if f.metadata["part"] == "model"] + [("bos_id", "int", field(default=1)),
                                                                         ("looping", "bool", field(default=False))])


def model_config(h: Hyperparameters, bos_id: int) -> ModelConfig:
    return ModelConfig(**{f.name: getattr(h, f.name) for f in fields(h) if f.metadata["part"] == "model"}, bos_id=bos_id)


def scoring_settings(h: Hyperparameters) -> dict:
    """How the run scores its artifact, as environment strings: recorded in the artifact, so that EVAL_ARTIFACT and
    `python -m tools score` score it the same way unless told otherwise."""
    return {f.name.upper(): str(getattr(h, f.name)) for f in fields(h) if f.metadata["part"] == "eval"}


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, rot_dims: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    # Computed per call (cheap, folded by compile): no cache that an inference-mode pass could poison.
    inv_freq = base ** (-torch.arange(0, rot_dims, 2, device=device, dtype=torch.float32) / rot_dims)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2*cos.size(-1) dims of each head (all of them unless ROPE_DIMS asks for fewer)."""
    rot = 2 * cos.size(-1)
    x1, x2 = x[..., :rot].chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rotated = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
    return rotated if rot == x.size(-1) else torch.cat((rotated, x[..., rot:]), dim=-1)


def document_mask(ids: torch.Tensor, bos_id: int) -> torch.Tensor:
    """(B, 1, T, T) attention mask: causal, and within one document (a BOS starts a new one)."""
    doc = torch.cumsum(ids == bos_id, dim=1)
    causal = torch.ones(ids.size(1), ids.size(1), dtype=torch.bool, device=ids.device).tril()
    return (doc[:, :, None] == doc[:, None, :])[:, None] & causal


try:
    from flash_attn import flash_attn_varlen_func  # CUDA: attention within documents without a (T, T) mask
except ImportError:
    flash_attn_varlen_func = None


def varlen_attention(q, k, v, ids: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Document-masked causal attention with flash-attn's variable-length kernel: every document (and every window
    start) is its own sequence. Same result as the mask, without building it."""
    B, H, T, D = q.shape
    starts = ids == bos_id
    starts[:, 0] = True
    cu = torch.cat([starts.flatten().nonzero().flatten(), torch.tensor([B * T], device=ids.device)]).int()
    longest = int((cu[1:] - cu[:-1]).max())
    flat = lambda t: t.transpose(1, 2).reshape(B * T, t.size(1), D)
    y = flash_attn_varlen_func(flat(q), flat(k), flat(v), cu, cu, longest, longest, causal=True)
    return y.view(B, T, H, D).transpose(1, 2)


class Linear(nn.Linear):
    """nn.Linear whose weight can be fake-quantized (late QAT): rounded per row to qat_bits in the forward pass,
    with the gradient passed straight through to the float weight; and that can carry a low-rank adapter (A, B)
    for test-time training: y = W x + B A x."""
    qat_bits = 0
    lora = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.qat_bits:
            qmax = 2 ** (self.qat_bits - 1) - 1
            scale = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / qmax
            w = w + (torch.clamp(torch.round(w / scale), -qmax, qmax) * scale - w).detach()
        y = F.linear(x, w)
        return y if self.lora is None else y + F.linear(F.linear(x, self.lora[0]), self.lora[1])


GATE_INPUTS = 12  # attention and smear gates read the first 12 channels of their input


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, xsa: bool):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim, self.rope_base, self.xsa = cfg.model_dim // cfg.num_heads, cfg.rope_base, xsa
        self.rot_dims = cfg.rope_dims or self.head_dim
        kv_dim = cfg.num_kv_heads * self.head_dim
        self.q = Linear(cfg.model_dim, cfg.model_dim, bias=False)
        self.k = Linear(cfg.model_dim, kv_dim, bias=False)
        self.v = Linear(cfg.model_dim, kv_dim, bias=False)
        self.proj = Linear(cfg.model_dim, cfg.model_dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        # output gate per head, 2*sigmoid(0) = 1 at init: the gate starts as the identity
        self.gate = nn.Parameter(torch.zeros(cfg.num_heads, GATE_INPUTS)) if cfg.attn_gate else None

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary_tables(T, self.rot_dims, self.rope_base, x.device)
        q = apply_rotary(rms_norm(q), cos, sin) * self.q_gain.to(q.dtype)[None, :, None, None]
        k = apply_rotary(rms_norm(k), cos, sin)
        if ids is not None:  # document masking with flash-attn's varlen kernel (CUDA)
            y = varlen_attention(q, k, v, ids, self.bos_id)
        elif mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.num_heads != self.num_kv_heads)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_heads != self.num_kv_heads)
        if self.xsa:  # exclusive self-attention: drop each head's component along its own token's value
            group = self.num_heads // self.num_kv_heads
            y = y.view(B, self.num_kv_heads, group, T, self.head_dim)
            v_hat = F.normalize(v, dim=-1)[:, :, None]
            y = (y - (y * v_hat).sum(-1, keepdim=True) * v_hat).view(B, self.num_heads, T, self.head_dim)
        if self.gate is not None:
            g = 2 * torch.sigmoid(x[..., :GATE_INPUTS] @ self.gate.to(x.dtype).T)  # (B, T, H)
            y = y * g.transpose(1, 2)[..., None]
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = Linear(cfg.model_dim, cfg.mlp_mult * cfg.model_dim, bias=False)
        self.proj = Linear(cfg.mlp_mult * cfg.model_dim, cfg.model_dim, bias=False)
        self.leaky = cfg.mlp_act == "leaky_relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.proj((F.leaky_relu(h, 0.5) if self.leaky else F.relu(h)).square())


def phase_transition_mix(layer: int, num_layers: int) -> float:
    """Initial weight of the running residual in resid_mix (the rest goes to the first-layer input x0): a sigmoid
    over depth, so early blocks lean on x0 and late blocks on the residual stream."""
    depth = layer / max(num_layers - 1, 1)
    return 1.0 / (1.0 + math.exp(-6.0 * (depth - 0.3)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn, self.mlp = Attention(cfg, xsa=layer >= cfg.num_layers - cfg.xsa_last_n), MLP(cfg)
        self.attn.bos_id = cfg.bos_id
        self.attn_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.model_dim))
        mix = phase_transition_mix(layer, cfg.num_layers)
        self.resid_mix = nn.Parameter(torch.stack([torch.full((cfg.model_dim,), mix), torch.full((cfg.model_dim,), 1 - mix)]))
        self.ln_scale = 1 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0  # LN scale: deeper blocks read smaller inputs
        self.parallel = layer >= cfg.num_layers - cfg.parallel_last_n  # attention and MLP read the same input

    def forward(self, x: torch.Tensor, x0: torch.Tensor, ids=None, mask=None) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        normed = rms_norm(x) * self.ln_scale if self.ln_scale != 1.0 else rms_norm(x)
        attn = self.attn_scale.to(x.dtype) * self.attn(normed, ids, mask)
        if self.parallel:
            return x + attn + self.mlp_scale.to(x.dtype) * self.mlp(normed)
        x = x + attn
        normed = rms_norm(x) * self.ln_scale if self.ln_scale != 1.0 else rms_norm(x)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(normed)


class BigramHash(nn.Module):
    """Hashed embedding of the (previous token, current token) pair. The last bucket is reserved for "no previous
    token": position 0 of a sequence and every BOS (whose previous token belongs to another document)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.buckets, self.bos_id = cfg.bigram_buckets, cfg.bos_id
        dim = cfg.bigram_dim or cfg.model_dim
        self.embed = nn.Embedding(self.buckets, dim)
        self.proj = Linear(dim, cfg.model_dim, bias=False) if cfg.bigram_dim else None

    def bucket_ids(self, ids: torch.Tensor) -> torch.Tensor:
        prev = F.pad(ids[:, :-1], (1, 0))
        hashed = torch.bitwise_xor(prev * 36313, ids * 27191) % (self.buckets - 1)
        no_prev = ids == self.bos_id
        no_prev[:, 0] = True
        return torch.where(no_prev, self.buckets - 1, hashed)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embed(self.bucket_ids(ids))
        return self.proj(e) if self.proj is not None else e


class SmearGate(nn.Module):
    """Mix each token's embedding with the previous token's through a learned gate read from its first channels:
    x_t += lam * sigmoid(w . x_t[:12]) * x_{t-1}. Never across a BOS (the previous token is another document's).
    Zero-initialised, so it starts as the identity."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.bos_id = cfg.bos_id
        self.w = nn.Parameter(torch.zeros(GATE_INPUTS))
        self.lam = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        prev = F.pad(x[:, :-1], (0, 0, 1, 0))  # position 0 has no previous token
        gate = torch.sigmoid(x[..., :GATE_INPUTS] @ self.w.to(x.dtype))[..., None]
        return x + self.lam.to(x.dtype) * gate * prev * (ids != self.bos_id)[..., None].to(x.dtype)


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.bigram = BigramHash(cfg) if cfg.bigram_buckets else None
        self.smear = SmearGate(cfg) if cfg.smear_gate else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.looping = cfg.looping  # depth recurrence: the trainer turns it on at LOOP_AT of training
        self.eval_doc_mask = False  # DOC_EVAL: keep attention within documents even if training did not
        most = len(self.layer_order(looping=True))  # U-Net skips pair virtual layers: enough weights for the longest order
        self.skip_weights = nn.Parameter(torch.ones(min(most // 2, most - most // 2), cfg.model_dim))
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        self.fused_ce = False  # the Triton cross-entropy; the trainer turns it on for CUDA
        if init:  # off only to learn the parameter shapes on the meta device
            self.reset_parameters()

    def layer_order(self, looping: bool | None = None) -> list[int]:
        """The blocks in the order they run: with depth recurrence on, LOOP_START..LOOP_END run 1 + LOOP_REPEATS times
        (the same parameters each time)."""
        cfg, order = self.cfg, list(range(self.cfg.num_layers))
        if (self.looping if looping is None else looping) and cfg.loop_repeats:
            loop = order[cfg.loop_start:cfg.loop_end + 1]
            order = order[:cfg.loop_end + 1] + loop * cfg.loop_repeats + order[cfg.loop_end + 1:]
        return order

    @torch.no_grad()
    def reset_parameters(self) -> None:
        overtone_init_(self.tok_emb.weight, self.cfg.tied_embed_init_std)
        for block in self.blocks:  # zero-init output projections: every block starts as the identity
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)
        if self.bigram is not None:
            if self.bigram.proj is not None:
                nn.init.normal_(self.bigram.embed.weight, std=0.02)
                nn.init.zeros_(self.bigram.proj.weight)
            else:
                nn.init.zeros_(self.bigram.embed.weight)
        if self.lm_head is not None:
            nn.init.zeros_(self.lm_head.weight)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(ids)
        if self.bigram is not None:
            x = x + self.bigram(ids)
        if self.smear is not None:
            x = self.smear(x, ids)
        x = x0 = rms_norm(x)
        doc_mask = self.cfg.doc_mask or self.eval_doc_mask
        varlen = ids if doc_mask and ids.is_cuda and flash_attn_varlen_func is not None else None
        mask = document_mask(ids, self.cfg.bos_id) if doc_mask and varlen is None else None
        order = self.layer_order()
        num_encoder, skips = len(order) // 2, []
        for i, layer in enumerate(order):
            if i >= num_encoder and skips:  # U-Net: decoder step j reads encoder step (n-1-j)'s output
                x = x + self.skip_weights[i - num_encoder].to(x.dtype) * skips.pop()
            x = self.blocks[layer](x, x0, varlen, mask)
            if i < num_encoder:
                skips.append(x)
        return rms_norm(x)

    def output_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.lm_head is None else self.lm_head.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return softcapped_logits(h, self.output_weight(), self.cfg.logit_softcap)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        h = self.hidden(ids)
        ce = fused_softcap_ce if self.fused_ce else reference_softcap_ce
        loss = ce(h.reshape(-1, h.size(-1)), self.output_weight(), targets.reshape(-1), self.cfg.logit_softcap, reduction)
        return loss if reduction == "mean" else loss.view_as(targets)


def overtone_init_(weight: torch.Tensor, std: float) -> None:
    """Normal init, then reshape the singular-value spectrum to a power law S_k ~ k^-0.5 with the same Frobenius norm."""
    nn.init.normal_(weight, std=std)
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    target = torch.arange(1, s.numel() + 1, dtype=torch.float32) ** -0.5
    target *= s.norm() / target.norm()
    weight.copy_((u * target) @ vh)


# ----------------------------------------------------------------------------- fused cross-entropy (Triton, CUDA)

# Fused soft-capped cross-entropy (Triton, CUDA only; proven against the reference under TRITON_INTERPRET=1).
# Logits are computed chunk by chunk and overwritten in place by their gradient: the (N, V) fp32 logits, their
# soft-capped copy and the softmax are never all materialised.
try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def triton_available() -> bool:
    return triton is not None


def softcapped_logits(x, W, softcap=0.0):
    logits = F.linear(x, W).float()
    return softcap * torch.tanh(logits / softcap) if softcap > 0 else logits


def reference_softcap_ce(x, W, targets, softcap=0.0, reduction="mean"):
    return F.cross_entropy(softcapped_logits(x, W, softcap), targets, reduction=reduction)


if triton is not None:
    @triton.jit
    def _softcap(z, cap, HAS_CAP: tl.constexpr):
        if HAS_CAP:  # cap * tanh(z / cap), tanh via exp so it works in every Triton version
            e = tl.exp(-2.0 * tl.abs(z / cap))
            t = (1.0 - e) / (1.0 + e)
            z = cap * tl.where(z >= 0, t, -t)
        return z

    @triton.jit
    def _ce_fwd(L, stride, Y, LOSS, LSE, V: tl.constexpr, cap, HAS_CAP: tl.constexpr, BLOCK_V: tl.constexpr):
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
    def _ce_bwd(L, stride, Y, LSE, G, g_stride, V: tl.constexpr, cap, HAS_CAP: tl.constexpr, BLOCK_V: tl.constexpr):
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

    # Registered as custom operators: torch.compile keeps each one as a single opaque node (no graph break), and
    # their fake versions give it the output shapes without running Triton.
    @torch.library.custom_op("golf::softcap_ce", mutates_args=())
    def softcap_ce(x: torch.Tensor, W: torch.Tensor, targets: torch.Tensor, cap: float, chunk: int, block_v: int,
                   dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row losses and log-sum-exps (fp32) of softcap(x W^T), the products in dtype dt."""
        N, V = x.shape[0], W.shape[0]
        loss = torch.empty(N, device=x.device, dtype=torch.float32)
        lse = torch.empty_like(loss)
        with torch.autocast(x.device.type, enabled=False):
            for i, L in _logits_chunks(x.to(dt), W.to(dt), chunk):
                _ce_fwd[(L.shape[0],)](L, L.stride(0), targets[i:], loss[i:], lse[i:], V, cap, HAS_CAP=cap > 0,
                                       BLOCK_V=min(block_v, triton.next_power_of_2(V)))
        return loss, lse

    @softcap_ce.register_fake
    def _(x, W, targets, cap, chunk, block_v, dt):
        return x.new_empty(x.shape[0], dtype=torch.float32), x.new_empty(x.shape[0], dtype=torch.float32)

    @torch.library.custom_op("golf::softcap_ce_backward", mutates_args=())
    def softcap_ce_backward(x: torch.Tensor, W: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, g: torch.Tensor,
                            cap: float, chunk: int, block_v: int, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of sum(g * loss) for x and W (in their dtypes; W's accumulated in fp32)."""
        V = W.shape[0]
        xc, Wc = x.to(dt), W.to(dt)
        gx = torch.empty_like(xc)
        gW = torch.zeros(W.shape, device=W.device, dtype=torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            for i, L in _logits_chunks(xc, Wc, chunk):
                _ce_bwd[(L.shape[0],)](L, L.stride(0), targets[i:], lse[i:], g[i:], 1, V, cap, HAS_CAP=cap > 0,
                                       BLOCK_V=min(block_v, triton.next_power_of_2(V)))
                gx[i:i + chunk] = L @ Wc
                gW += (L.T @ xc[i:i + chunk]).float()
        return gx.to(x.dtype), gW.to(W.dtype)

    @softcap_ce_backward.register_fake
    def _(x, W, targets, lse, g, cap, chunk, block_v, dt):
        return torch.empty_like(x), torch.empty_like(W)

    def _save_for_backward(ctx, inputs, output):
        x, W, targets, cap, chunk, block_v, dt = inputs
        ctx.save_for_backward(x, W, targets, output[1])
        ctx.args = (cap, chunk, block_v, dt)

    def _backward(ctx, grad_loss, grad_lse):
        x, W, targets, lse = ctx.saved_tensors
        gx, gW = softcap_ce_backward(x, W, targets, lse, grad_loss.float().contiguous(), *ctx.args)
        return gx, gW, None, None, None, None, None

    softcap_ce.register_autograd(_backward, setup_context=_save_for_backward)

    def fused_softcap_ce(x, W, targets, softcap=0.0, reduction="mean", chunk=8192, block_v=1024):
        dev = x.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.promote_types(x.dtype, W.dtype)
        loss = softcap_ce(x, W, targets.contiguous(), float(softcap), chunk, block_v, dt)[0]
        return loss.mean() if reduction == "mean" else loss


# ----------------------------------------------------------------------------- optimizers and schedules

# Newton-Schulz coefficients (a, b, c) per iteration; the last triple repeats for more iterations. "standard" is the
# classic quintic; "polar" is the Polar Express schedule the top records use.
NS_COEFFICIENTS = {
    "standard": [(3.4445, -4.7750, 2.0315)],
    "polar": [(8.156554524902461, -22.48329292557795, 15.878769915207462),
              (4.042929935166739, -2.808917465908714, 0.5000178451051316),
              (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
              (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
              (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)],
}


def newton_schulz(g: torch.Tensor, steps: int, dtype: torch.dtype = torch.bfloat16, kind: str = "standard") -> torch.Tensor:
    """Approximately orthogonalize each matrix of g (..., m, n): push its singular values towards 1 with a quintic
    Newton-Schulz iteration, in dtype (bf16 where the device multiplies it natively, else fp32). One batched product
    per term: x <- a x + (b s + c s s) x with s = x x^T, as two fused multiply-adds (baddbmm)."""
    coefficients = NS_COEFFICIENTS[kind]
    x = g.to(dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    batched = x.reshape(-1, x.size(-2), x.size(-1))
    for i in range(steps):
        a, b, c = coefficients[min(i, len(coefficients) - 1)]
        s = torch.bmm(batched, batched.mT)
        batched = torch.baddbmm(batched, torch.baddbmm(s, s, s, beta=b, alpha=c), batched, beta=a)
    x = batched.view(x.shape)
    return x.mT if tall else x


def orthogonalized_update(g: torch.Tensor, steps: int, dtype: torch.dtype, kind: str, row_norm: bool) -> torch.Tensor:
    """Muon's update for a stack of same-shape momentum matrices (k, m, n), in fp32: rows normalized first with
    row_norm (MuonEq-R), orthogonalized, scaled by sqrt(max(1, m/n)) so tall matrices take steps of the same RMS."""
    if row_norm:
        g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-7)
    return newton_schulz(g, steps, dtype, kind).float() * max(1.0, g.size(-2) / g.size(-1)) ** 0.5


class Muon(torch.optim.Optimizer):
    """Momentum, then orthogonalized updates for 2-D matrices, batched by shape: the matrices of one shape are stacked
    and orthogonalized together (compiled on CUDA), and momentum, weight decay and the update are foreach operations.
    Under torchrun each process orthogonalizes its share of every shape's stack and one all-gather per shape gives
    everyone every update. Momentum is kept on every process so the state is the same everywhere."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, weight_decay: float,
                 ns_dtype: torch.dtype = torch.bfloat16, ns_kind: str = "standard", row_norm: bool = False,
                 compiled: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, weight_decay=weight_decay))
        self.ns_dtype, self.ns_kind, self.row_norm = ns_dtype, ns_kind, row_norm
        self.update_of = torch.compile(orthogonalized_update, dynamic=False) if compiled else orthogonalized_update

    @torch.no_grad()
    def step(self):
        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            nesterov = torch._foreach_add(grads, bufs, alpha=group["momentum"])
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            shapes = {}
            for p, g in zip(params, nesterov):
                shapes.setdefault(tuple(p.shape), ([], []))
                shapes[tuple(p.shape)][0].append(p)
                shapes[tuple(p.shape)][1].append(g)
            for same_shape, moments in shapes.values():
                share = -(-len(moments) // world)  # matrices per process; the last process's share is padded with zeros
                stack = torch.stack(moments + [torch.zeros_like(moments[0])] * (share * world - len(moments)))
                update = self.update_of(stack[rank * share:(rank + 1) * share], group["backend_steps"], self.ns_dtype,
                                        self.ns_kind, self.row_norm)
                if world > 1:
                    gathered = torch.empty((share * world, *update.shape[1:]), device=update.device, dtype=update.dtype)
                    dist.all_gather_into_tensor(gathered, update.contiguous())
                    update = gathered
                torch._foreach_add_(same_shape, list(update[:len(same_shape)].to(same_shape[0].dtype).unbind(0)), alpha=-group["lr"])


def build_optimizers(model: GPT, h: Hyperparameters, rt: "Runtime") -> list[torch.optim.Optimizer]:
    """Muon for the block matrices and the bigram projection; Adam (fused) for the embeddings, an untied head, and the
    vectors and control tensors (gains, mixes, gates, skip weights): the roles the artifact uses."""
    groups = {"matrix": [], "embed": [], "head": [], "scalar": []}
    for name, p in model.named_parameters():
        role = tensor_role(name, p)
        key = "head" if name == "lm_head.weight" else "embed" if role in ("embed", "bigram") else \
            "matrix" if role == "matrix" else "scalar"
        groups[key].append(p)
    embed_lr = h.tied_embed_lr if h.tie_embeddings else h.embed_lr
    adam_groups = [dict(params=groups["embed"], lr=embed_lr, base_lr=embed_lr),
                   dict(params=groups["scalar"], lr=h.scalar_lr, base_lr=h.scalar_lr)]
    if groups["head"]:
        adam_groups.append(dict(params=groups["head"], lr=h.head_lr, base_lr=h.head_lr))
    adam = torch.optim.Adam(adam_groups, betas=(h.beta1, h.beta2), eps=h.adam_eps, fused=True)
    muon = Muon(groups["matrix"], lr=h.matrix_lr, momentum=h.muon_momentum, backend_steps=h.muon_backend_steps,
                weight_decay=h.weight_decay, ns_dtype=torch.bfloat16 if rt.bf16 else torch.float32, ns_kind=h.muon_ns,
                row_norm=h.muon_row_norm, compiled=rt.compile and rt.device.type == "cuda")
    for group in muon.param_groups:
        group["base_lr"], group["base_weight_decay"] = h.matrix_lr, h.weight_decay
    return [adam, muon]


def lr_multiplier(step: int, elapsed_ms: float, h: Hyperparameters, reserve_ms: float = 0.0) -> float:
    """Linear warmdown over the last WARMDOWN_ITERS steps: of ITERATIONS, and of the wallclock cap when one is set
    (WARMDOWN_ITERS steps at the average step time so far, elapsed_ms/step, before the cap less the time reserved
    for the calibration after training); the earlier wins, and MIN_LR is the floor. LR_WARMUP_STEPS ramps the
    start. elapsed_ms is the training time when `step` begins (0 before any step has been timed: no warmdown yet)."""
    warmup = min(1.0, (step + 1) / h.lr_warmup_steps) if h.lr_warmup_steps else 1.0
    if h.warmdown_iters == 0:
        return warmup
    mult = min(warmup, max(h.iterations - step, 0) / h.warmdown_iters)
    if h.max_wallclock_seconds > 0 and step > 0 and elapsed_ms > 0:
        remaining_ms = max(h.max_wallclock_seconds * 1000 - reserve_ms - elapsed_ms, 0.0)
        mult = min(mult, remaining_ms / (h.warmdown_iters * elapsed_ms / step))
    return max(mult, min(h.min_lr, warmup))


def training_progress(step: int, elapsed_ms: float, h: Hyperparameters, reserve_ms: float = 0.0) -> float:
    """How far training is, 0..1: by steps, or by the wallclock cap when one is set (whichever is further)."""
    progress = step / h.iterations
    if h.max_wallclock_seconds > 0:
        progress = max(progress, elapsed_ms / max(h.max_wallclock_seconds * 1000 - reserve_ms, 1.0))
    return min(progress, 1.0)


def weight_decay_multiplier(progress: float, h: Hyperparameters) -> float:
    """WD taper: 1 until WD_TAPER_START of training, then linearly to WD_TAPER_FINAL at the end."""
    if progress <= h.wd_taper_start or h.wd_taper_start >= 1:
        return 1.0
    return 1 + (h.wd_taper_final - 1) * (progress - h.wd_taper_start) / (1 - h.wd_taper_start)


def muon_momentum_at(step: int, h: Hyperparameters) -> float:
    frac = min(step / h.muon_momentum_warmup_steps, 1.0) if h.muon_momentum_warmup_steps else 1.0
    return (1 - frac) * h.muon_momentum_warmup_start + frac * h.muon_momentum


# ----------------------------------------------------------------------------- training

# Tensor files use the safetensors layout: u64 header length, JSON header (dtype, shape, byte range per tensor,
# and "__metadata__"), raw little-endian bytes. Nothing is ever unpickled.
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL"}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}
MAX_INFLATED_BYTES = 1 << 30  # an artifact that inflates past 1 GiB is refused (decompression bomb)


def tensors_to_bytes(tensors: dict, metadata: dict) -> bytes:
    header, blobs, offset = {"__metadata__": {"golf": json.dumps(metadata, sort_keys=True, allow_nan=False)}}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def tensors_from_bytes(buf: bytes, what: str) -> tuple[dict, dict]:
    """(tensors, golf metadata) of a safetensors-layout buffer; every field is checked before it is used."""
    def bad(msg: str) -> GolfError:
        return GolfError(f"{what}: {msg}")
    if len(buf) < 8:
        raise bad("truncated (no header)")
    (head_len,) = struct.unpack("<Q", buf[:8])
    if head_len > len(buf) - 8 or head_len > 1 << 26:
        raise bad("truncated or corrupt header length")
    try:
        header = json.loads(buf[8:8 + head_len])
        meta = header.pop("__metadata__", {}) if isinstance(header, dict) else None
        metadata = json.loads(meta.get("golf", "{}")) if isinstance(meta, dict) and isinstance(meta.get("golf", ""), str) else None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise bad(f"corrupt header: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(header, dict) or not isinstance(metadata, dict):
        raise bad("corrupt header: not a JSON object of tensors with a metadata object")
    data, tensors, ranges = memoryview(buf)[8 + head_len:], {}, []
    for name, info in header.items():
        ok = isinstance(info, dict) and info.get("dtype") in ST_TORCH and isinstance(info.get("shape"), list) and \
            len(info["shape"]) <= 8 and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2 and \
            all(type(v) is int and 0 <= v <= 1 << 40 for v in info["shape"] + info["data_offsets"])
        if not ok:
            raise bad(f"tensor {name!r} has a malformed entry")
        dtype, shape, (start, end) = ST_TORCH[info["dtype"]], info["shape"], info["data_offsets"]
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if not start <= end <= len(data) or end - start != nbytes:
            raise bad(f"tensor {name!r} points outside the file: truncated or corrupt")
        raw = torch.frombuffer(bytearray(data[start:end]), dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(shape)
        ranges += [(start, end, name)] if nbytes else []
    ranges.sort()
    for (_, end, first), (start, _, second) in zip(ranges, ranges[1:]):
        if start < end:
            raise bad(f"tensors {first!r} and {second!r} share bytes: corrupt or crafted")
    return tensors, metadata


def atomic_write(path, data: bytes) -> None:
    """Write under a temporary name in the same folder, then rename: the final name only ever holds whole files.
    Temporaries are named as everywhere in golf: .<final name>.tmp-<host>-<pid>-<random> (common.TEMP_NAME_RE)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GolfError(f"cannot write {path}: {e.strerror}") from None


HOST = re.sub(r"[^A-Za-z0-9_.]", "_", platform.node() or "host")


def save_tensors(path, tensors: dict, metadata: dict) -> None:
    atomic_write(path, tensors_to_bytes(tensors, metadata))


def load_tensors(path) -> tuple[dict, dict]:
    try:
        buf = Path(path).read_bytes()
    except OSError as e:
        raise GolfError(f"cannot read {path}: {e.strerror}") from None
    return tensors_from_bytes(buf, str(path))


def default_run_id() -> str:
    # 32 random bits from the OS: 16 bits collided in about 2% of 50 calls within one second (a flaky test)
    return time.strftime("run_%Y%m%d_%H%M%S") + f"_{os.getpid()}_{os.urandom(4).hex()}"


def remove_stale_temp_files(folder: Path) -> None:
    """Temporary files of this host left by a process that no longer runs (killed mid-write) are removed."""
    for tmp in folder.glob(f".*.tmp-{HOST}-*-*") if folder.is_dir() else []:
        pid = tmp.name.rsplit("-", 2)[1]
        if not pid.isdecimal() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # raises if no such process
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # alive, another user's


def device_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 1 << 62


def check_memory(h: Hyperparameters, cfg: ModelConfig, rt: Runtime, val_tokens: int) -> None:
    """Refuse, before anything is built or trained, settings whose training, final evaluation or test-time training
    cannot fit in this device's memory. Rough upper bounds, calibrated on the H100 (the default shape peaked at 3.2
    GiB): weights, gradients and two optimizer states per parameter, ~(10 + 3 MLP_MULT) stored values per token,
    layer and width, and the logits (three copies) of each token scored."""
    with torch.device("meta"):
        model = GPT(cfg, init=False)
    params, depth = sum(p.numel() for p in model.parameters()), len(model.layer_order(looping=True))
    value = 2 if rt.bf16 else 4
    per_token = depth * cfg.model_dim * (10 + 3 * cfg.mlp_mult) * value + 3 * 4 * cfg.vocab_size
    micro_tokens = h.train_batch_tokens // 8
    windows = max(1, math.ceil(val_tokens / h.eval_stride) // rt.world_size)
    eval_tokens = min(h.eval_batch_seqs, windows) * max(h.eval_seq_len, h.train_seq_len)
    adapters = depth * len(h.ttt_lora_targets.split(",")) * h.ttt_lora_rank * (1 + cfg.mlp_mult) * cfg.model_dim  # at most
    needs = {"training": 20 * params + micro_tokens * per_token,
             f"evaluation (EVAL_BATCH_SEQS={h.eval_batch_seqs})": 4 * params + eval_tokens * per_token // depth,
             f"test-time training (TTT={h.ttt})": 0 if h.ttt == "0" else 16 * params + 16 * adapters +
             (h.ttt_batch_seqs if h.ttt == "sgd" else 1) * h.eval_seq_len * per_token}
    what, need = max(needs.items(), key=lambda kv: kv[1])
    if need > device_memory(rt.device):
        raise GolfError(f"{what} needs about {need / 2**30:.1f} GiB, more than the {device_memory(rt.device) / 2**30:.1f} GiB "
                        f"of this device ({params:,} parameters): make the model, batch or evaluation smaller")


def lock_run_id(path: Path, run_id: str):
    """An exclusive lock on RUN_ID's lock file, held until this process exits (the OS drops it even on kill -9); the
    file holds the owner's pid. Refused while another live process holds it."""
    import fcntl
    try:
        f = open(path, "a+")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise GolfError(f"RUN_ID={run_id} belongs to a run that is still running (pid {f.read().strip() or '?'}): wait for "
                        "it, or choose another RUN_ID") from None
    except OSError as e:
        raise GolfError(f"cannot lock {path}: {e.strerror}") from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


CLOCK_EVERY = 8  # steps between exact readings of the training clock (see Trainer.clock)


def set_schedule(optimizers: list, lr_scale: float, momentum: float, weight_decay_scale: float) -> None:
    """This step's learning rates (every group's base_lr times lr_scale), Muon's momentum and weight decay."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
    for group in optimizers[1].param_groups:
        group["momentum"] = momentum
        group["weight_decay"] = group["base_weight_decay"] * weight_decay_scale


def train_step(train_model: nn.Module, model: GPT, optimizers: list, batches: list, h: Hyperparameters, rt: Runtime) -> torch.Tensor:
    """One optimizer step over the micro-batches (gradients accumulated; under DDP synchronized on the last one
    only): the mean loss, left on the device. Nothing in it makes the host wait for the device."""
    total = torch.zeros((), device=rt.device)
    for micro, (x, y) in enumerate(batches):
        if rt.world_size > 1:
            train_model.require_backward_grad_sync = micro == len(batches) - 1
        with rt.autocast:
            loss = train_model(x, y)
        (loss / len(batches)).backward()
        total += loss.detach()
    if h.grad_clip_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip_norm, foreach=True)
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    return total / len(batches)


class Trainer:
    """The run until its weights are trained: model, optimizers, data, the training clock, checkpoints and the log.
    main() drives it; finish_run() takes the weights from there to the artifact and its score."""

    def __init__(self, h: Hyperparameters, rt: Runtime):
        self.h, self.rt = h, rt
        run_id = [h.run_id or default_run_id()]
        if rt.world_size > 1:  # one name for the run's files on every process
            dist.broadcast_object_list(run_id, src=0)
        self.run_id, self.out = run_id[0], Path(h.out_dir)
        self.log_path, self.summary_path = self.out / "logs" / f"{self.run_id}.txt", self.out / "logs" / f"{self.run_id}.json"
        self.artifact_path = self.out / "models" / f"{self.run_id}.ptz"
        self.raw_path = self.out / "models" / f"{self.run_id}.safetensors"
        source = Path(__file__).read_bytes()
        # what a record ships (its bytes are the run's Code size), and the source that runs (the log embeds it)
        self.code, self.source = shipped_code(source), unwrap_code(source) or source
        tokenizer_path = resolve_tokenizer_path(h.data_path, h.tokenizer_path, h.vocab_size)
        self.data_summary = validate_dataset(h.data_path, tokenizer_path, h.vocab_size)
        self.luts = build_byte_luts(load_tokenizer(tokenizer_path))
        self.val_tokens = load_val_tokens(h.data_path, max(h.train_seq_len, h.eval_seq_len), h.vocab_size)
        self.train_files = list_shards(h.data_path, "train")
        torch.manual_seed(h.seed)
        self.config = model_config(h, self.data_summary["bos_id"])
        if h.eval_artifact:  # the model is the artifact's, whatever the shape settings say
            state, meta = read_artifact(h.eval_artifact)
            model = model_from_state(state, meta.get("config"), h.eval_artifact)
            self.config, self.eval_scheme = model.cfg, str(meta.get("scheme"))
            if self.config.vocab_size != h.vocab_size:
                raise GolfError(f"{h.eval_artifact} has vocab_size {self.config.vocab_size} but VOCAB_SIZE={h.vocab_size}")
        check_memory(h, self.config, rt, len(self.val_tokens))
        if not h.eval_artifact:
            model = GPT(self.config)  # built on the CPU from the seed: same weights on any device
        self.model = model.to(rt.device)
        self.compiled = runnable(self.model, h, rt)
        self.train_model = nn.parallel.DistributedDataParallel(self.compiled) if rt.world_size > 1 else self.compiled
        self.optimizers = build_optimizers(self.model, h, rt)
        self.loader = DistributedTokenLoader(self.train_files, h.vocab_size, rt.rank, rt.world_size, rt.device)
        self.grad_accum = 8 // rt.world_size
        self.step, self.train_time_ms, self.lr_scale, self.qat_bits = 0, 0.0, 1.0, 0
        self.clock_ms, self.clock_step, self.t0 = 0.0, 0, 0.0
        self.val_history, self.train_history = [], []
        self.average, self.average_count = None, 0  # EMA or SWA of the weights (fp32), when asked for
        self.weights = list(self.model.state_dict().values())  # views of the live weights, for the average
        self.calibrating = h.artifact == "auto" or Scheme.parse(h.artifact).gptq
        self.claim_output_files()  # last: a run stopped by a bad input leaves no files behind

    def claim_output_files(self) -> None:
        """Check OUT_DIR up front, clear temporary files of dead processes, and make this run the only owner of its
        RUN_ID: a lock held while the process lives (so REPLACE_RUN and RESUME cannot take the files of a live run),
        and a log created exclusively, so two runs with one RUN_ID cannot both start."""
        if not self.rt.is_main:
            return
        h, resuming = self.h, bool(self.h.resume)
        try:
            for folder in ("logs", "models", f"checkpoints/{self.run_id}"):
                (self.out / folder).mkdir(parents=True, exist_ok=True)
                remove_stale_temp_files(self.out / folder)
        except OSError as e:
            raise GolfError(f"OUT_DIR={h.out_dir} is not a writable folder: {e.strerror} ({e.filename})") from None
        self.lock = lock_run_id(self.out / "logs" / f".{self.run_id}.lock", self.run_id)
        taken = [p for p in (self.log_path, self.summary_path, self.artifact_path, self.raw_path) if p.exists()]
        if taken and not (resuming or h.replace_run):
            raise GolfError(f"RUN_ID={self.run_id} already has files in {h.out_dir} ({taken[0].relative_to(self.out)}): "
                            "choose another RUN_ID, or set REPLACE_RUN=1 to replace them")
        if h.replace_run and not resuming:
            for p in (self.summary_path, self.artifact_path, self.raw_path):
                p.unlink(missing_ok=True)
        append = resuming and self.log_path.exists()
        try:
            self.log_file = open(self.log_path, "a" if append else "w" if h.replace_run else "x", encoding="utf-8")
        except FileExistsError:
            raise GolfError(f"RUN_ID={self.run_id}: another run just created {self.log_path}; choose another RUN_ID") from None
        except OSError as e:
            raise GolfError(f"cannot write the log {self.log_path}: {e.strerror}") from None
        if append:
            return
        try:  # the script's own source first: it is what makes a log a record of what ran
            source = self.source.decode("utf-8")
            self.log_file.write(f"===== train_gpt.py source begin ({len(self.source)} bytes) =====\n{source}"
                                f"{'' if source.endswith(chr(10)) else chr(10)}===== train_gpt.py source end =====\n")
            self.log_file.flush()
        except OSError as e:  # a full disk: leave no partial log that would block this RUN_ID
            self.log_file.close()
            self.log_path.unlink(missing_ok=True)
            raise GolfError(f"cannot write the log {self.log_path}: {e.strerror}") from None

    def log(self, msg: str) -> None:
        if self.rt.is_main:
            print(msg, flush=True)
            self.log_file.write(msg + "\n")
            self.log_file.flush()

    def share(self, value: float) -> float:
        """Rank 0's value, on every process."""
        if self.rt.world_size == 1:
            return value
        t = torch.tensor(float(value) if self.rt.is_main else 0.0, dtype=torch.float64, device=self.rt.device)
        dist.all_reduce(t)
        return t.item()

    def global_mean(self, value: torch.Tensor) -> float:
        if self.rt.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.rt.world_size
        return value.item()

    # -- training state
    def snapshot(self) -> tuple[dict, dict]:
        tensors = {f"model.{k}": v.detach().float().cpu() for k, v in self.model.state_dict().items()}
        opt_groups = []
        for j, opt in enumerate(self.optimizers):
            sd = opt.state_dict()
            for idx, state in sd["state"].items():
                for key, value in state.items():
                    tensors[f"opt{j}.{idx}.{key}"] = value.detach().cpu()
            opt_groups.append(sd["param_groups"])
        for k, v in zip(self.model.state_dict(), self.average or []):
            tensors[f"average.{k}"] = v.detach().cpu()
        tensors["rng.cpu"] = torch.get_rng_state()
        meta = {"step": self.step, "train_time_ms": self.train_time_ms, "loader": self.loader.stream.state(),
                "opt_groups": opt_groups, "config": asdict(self.config), "run_id": self.run_id, "data": self.data_identity(),
                "lr_scale": self.lr_scale, "qat_bits": self.qat_bits, "tensors": sorted(tensors),
                "looping": self.model.looping, "average_count": self.average_count,
                "val_history": self.val_history, "train_history": self.train_history}
        return tensors, meta

    def data_identity(self) -> dict:
        return {"train_tokens": self.data_summary["train"]["tokens"], "val_tokens": self.data_summary["val"]["tokens"],
                "train_shards": [f.name for f in self.train_files]}

    def restore(self, tensors: dict, meta: dict, what: str) -> None:
        """Continue from a training checkpoint of this same configuration and dataset; anything else is refused."""
        if "opt_groups" not in meta or "loader" not in meta:
            raise GolfError(f"RESUME={what} is not a training checkpoint (a .ckpt written with CHECKPOINT_EVERY)")
        if meta.get("config") != asdict(self.config):
            raise GolfError(f"RESUME={what} was made with a different model configuration: {meta.get('config')}")
        if meta.get("data") != self.data_identity():
            raise GolfError(f"RESUME={what} was made on another dataset than DATA_PATH={self.h.data_path}")
        if meta.get("tensors") != sorted(tensors):
            raise GolfError(f"RESUME={what} is damaged or incompatible: it does not hold the tensors it lists")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            for j, opt in enumerate(self.optimizers):
                state = {}
                for name, value in tensors.items():
                    if name.startswith(f"opt{j}."):
                        _, idx, key = name.split(".", 2)
                        state.setdefault(int(idx), {})[key] = value
                opt.load_state_dict({"state": state, "param_groups": meta["opt_groups"][j]})
            torch.set_rng_state(tensors["rng.cpu"])
            self.loader.stream.restore(meta["loader"])
            self.step, self.train_time_ms = int(meta["step"]), float(meta["train_time_ms"])
            self.lr_scale, qat_bits = float(meta["lr_scale"]), int(meta["qat_bits"])
            self.model.looping, self.average_count = bool(meta["looping"]), int(meta["average_count"])
            names = [f"average.{k}" for k in self.model.state_dict()]
            self.average = [tensors[n].to(self.rt.device) for n in names] if names[0] in tensors else None
            self.val_history, self.train_history = list(meta["val_history"]), list(meta["train_history"])
        except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as e:
            raise GolfError(f"RESUME={what} is damaged or incompatible: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        if qat_bits:
            self.set_qat(qat_bits)

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoints" / self.run_id / f"step_{self.step:06d}.ckpt"
        if self.rt.is_main:
            save_tensors(path, *self.snapshot())
            if self.h.checkpoint_keep:
                for old in sorted(path.parent.glob("step_*.ckpt"))[:-self.h.checkpoint_keep]:
                    old.unlink()
        if self.rt.world_size > 1:
            dist.barrier()
        return path

    def warm_up(self) -> None:
        """Run WARMUP_STEPS steps to compile and fill caches, then undo them: weights, optimizer state, data position."""
        if self.h.warmup_steps == 0:
            return
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        opt_states = [opt.state_dict() for opt in self.optimizers]
        for step in range(self.h.warmup_steps):
            # with depth recurrence, the second half compiles the looped order too
            self.model.looping = self.config.loop_repeats > 0 and step >= self.h.warmup_steps // 2
            self.step_once(step, 0.0)
        self.model.looping = False
        self.model.load_state_dict(model_state)
        for opt, state in zip(self.optimizers, opt_states):
            opt.load_state_dict(state)
        self.loader.stream.restore({"file_idx": 0, "pos": 0})
        self.lr_scale = 1.0

    # -- one step, and the clock
    def step_once(self, step: int, elapsed_ms: float, reserve_ms: float = 0.0) -> torch.Tensor:
        """Training step `step`: its micro-batches (one copy to the device), its schedule, then train_step."""
        h = self.h
        self.lr_scale = lr_multiplier(step, elapsed_ms, h, reserve_ms)
        progress = training_progress(step, elapsed_ms, h, reserve_ms)
        set_schedule(self.optimizers, self.lr_scale, muon_momentum_at(step, h), weight_decay_multiplier(progress, h))
        batches = self.loader.next_batches(self.grad_accum, h.train_batch_tokens // (self.rt.world_size * self.grad_accum),
                                           h.train_seq_len)
        return train_step(self.train_model, self.model, self.optimizers, batches, h, self.rt)

    def clock(self, exact: bool) -> float:
        """Training time now (ms), the same on every process. An exact reading synchronizes the device and, with
        several processes, takes the largest of their clocks (one all-reduce); in between, the time is extrapolated
        from the last exact reading's average step time, identically on every process, so the host does not wait.
        The loop reads it exactly every CLOCK_EVERY steps (and at every log step): a run overshoots the wallclock
        cap by its last step, plus whatever the steps since the last exact reading ran slower than the average."""
        if not exact and self.clock_step:
            return self.clock_ms * self.step / self.clock_step
        self.sync()
        elapsed = self.train_time_ms + 1000 * (time.perf_counter() - self.t0)
        if self.rt.world_size > 1:
            shared = torch.tensor(elapsed, dtype=torch.float64, device=self.rt.device)
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
            elapsed = shared.item()
        self.clock_ms, self.clock_step = elapsed, self.step
        return elapsed

    def pause_clock(self) -> None:
        """Stop counting training time (for a validation, a checkpoint, or the end of training)."""
        self.train_time_ms = self.clock(exact=True)

    def start_clock(self) -> None:
        self.sync()
        self.t0 = time.perf_counter()

    def sync(self) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize()

    # -- the loop
    def train(self) -> None:
        """Steps until ITERATIONS or the wallclock cap (less the time the calibration after training will take);
        validation, logs and checkpoints on their steps; the averaged weights (EMA/SWA) loaded at the end."""
        h = self.h
        stop_at, last_checkpoint, elapsed_ms, reserve_ms = None, h.resume or None, self.train_time_ms, 0.0
        nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.rt.device)
        self.start_clock()
        while self.step < h.iterations and stop_at is None:
            if h.val_loss_every and self.step % h.val_loss_every == 0 and self.step > 0:
                self.pause_clock()
                self.check_finite(nonfinite_step, last_checkpoint)
                self.validate()
                self.start_clock()
            self.update_qat()
            if self.config.loop_repeats and not self.model.looping and training_progress(self.step, elapsed_ms, h, reserve_ms) >= h.loop_at:
                self.model.looping = True
                self.log(f"depth recurrence: on from step {self.step}, order {self.model.layer_order()}")
            loss = self.step_once(self.step, elapsed_ms, reserve_ms)
            nonfinite_step = torch.where((nonfinite_step < 0) & ~torch.isfinite(loss), self.step, nonfinite_step)
            self.step += 1
            self.update_average()
            logging = h.train_log_every and (self.step % h.train_log_every == 0 or self.step <= 10)
            elapsed_ms = self.clock(exact=logging or self.step % CLOCK_EVERY == 0 or self.step <= CLOCK_EVERY)
            if logging:
                self.log_train_step(loss, elapsed_ms)
            if h.checkpoint_every and self.step % h.checkpoint_every == 0:
                self.pause_clock()
                self.check_finite(nonfinite_step, last_checkpoint)
                last_checkpoint = str(self.save_checkpoint())
                self.start_clock()
            # The calibration after training reads training data, so it counts as training: keep time for it, at
            # the measured time of a training micro-batch per calibration batch (a forward pass costs less).
            reserve_ms = h.gptq_batches * elapsed_ms / self.step / self.grad_accum if self.calibrating else 0.0
            if h.max_wallclock_seconds > 0 and elapsed_ms + reserve_ms >= 1000 * h.max_wallclock_seconds:
                stop_at = self.step
                self.log(f"stopping_early: wallclock_cap train_time:{elapsed_ms:.0f}ms step:{self.step}/{h.iterations} "
                         f"reserved:{reserve_ms:.0f}ms")
        self.pause_clock()
        self.check_finite(nonfinite_step, last_checkpoint)
        self.end_averaging()

    def log_train_step(self, loss: torch.Tensor, elapsed_ms: float) -> None:
        train_loss = self.global_mean(loss)
        self.train_history.append({"step": self.step, "train_loss": train_loss})
        self.log(f"step:{self.step}/{self.h.iterations} train_loss:{train_loss:.4f} train_time:{elapsed_ms:.0f}ms "
                 f"step_avg:{elapsed_ms / self.step:.2f}ms tok/s:{self.step * self.h.train_batch_tokens / (elapsed_ms / 1000):.0f} "
                 f"lr_scale:{self.lr_scale:.4f}")

    def validate(self) -> None:
        """The non-overlapping validation pass at training's sequence length, logged (and the artifact forecast)."""
        h = self.h
        val_loss, val_bpb = evaluate(self.compiled, self.val_tokens, self.luts, h.train_seq_len, h.train_seq_len,
                                     h.eval_batch_seqs, self.rt.device, self.rt.autocast, self.rt.rank, self.rt.world_size)
        self.val_history.append({"step": self.step, "val_loss": val_loss, "val_bpb": val_bpb})
        self.log(f"step:{self.step}/{h.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                 f"train_time:{self.train_time_ms:.0f}ms step_avg:{self.train_time_ms / max(self.step, 1):.2f}ms")
        if self.rt.is_main:
            self.log(forecast_line(self.float_state(), h, len(self.code)))

    def check_finite(self, nonfinite_step: torch.Tensor, last_checkpoint) -> None:
        bad = nonfinite_step.clone()
        if self.rt.world_size > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() >= 0:
            kept = f"; last checkpoint kept: {last_checkpoint}" if last_checkpoint else "; no checkpoint was saved"
            raise GolfError(f"non-finite train loss at step {bad.item() + 1}{kept}")

    def float_state(self) -> dict:
        """A copy of the weights in fp32 on the CPU (a copy: loading other weights into the model leaves it alone)."""
        return {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in self.model.state_dict().items()}

    # -- weight averaging and late QAT
    def update_average(self) -> None:
        """EMA (every step from EMA_START) or SWA (every SWA_EVERY steps once the LR multiplier is below SWA_BELOW)
        of the weights, in fp32, with one foreach operation."""
        h = self.h
        if h.ema_decay and self.step >= h.ema_start:
            if self.average is None:
                self.average = [w.detach().float().clone() for w in self.weights]
            else:
                torch._foreach_lerp_(self.average, self.weights, 1 - h.ema_decay)
        elif h.swa_every and self.lr_scale < h.swa_below and self.step % h.swa_every == 0 and self.step > h.lr_warmup_steps:
            if self.average is None:
                self.average = [torch.zeros_like(w, dtype=torch.float32) for w in self.weights]
            torch._foreach_add_(self.average, self.weights)
            self.average_count += 1

    def end_averaging(self) -> None:
        """The averaged weights become the model's (evaluated and shipped); said either way when an average was asked for."""
        h, what = self.h, "ema" if self.h.ema_decay else "swa"
        if self.average is not None:
            scale = 1.0 if h.ema_decay else 1.0 / self.average_count
            with torch.no_grad():
                torch._foreach_copy_(self.weights, torch._foreach_mul(self.average, scale))
            self.log(f"{what}: the model now holds its averaged weights")
        elif h.ema_decay or h.swa_every:
            self.log(f"{what}: no weights were averaged (training ended before {'EMA_START' if h.ema_decay else 'SWA_BELOW'}): "
                     "the model's own weights are shipped")

    def update_qat(self) -> None:
        """Late QAT: once the learning-rate multiplier falls to QAT_LR_SCALE, fake-quantize the block matrices."""
        h = self.h
        if h.qat_bits == "0" or self.qat_bits or self.lr_scale > h.qat_lr_scale or self.step < h.lr_warmup_steps:
            return  # (the warm-up's low multipliers are not the warmdown's)
        auto = lambda: forecast_choice(self.float_state(), h, len(self.code))[0].bits if self.rt.is_main else 0
        self.set_qat(int(h.qat_bits) if h.qat_bits != "auto" else int(self.share(auto())))
        self.log(f"qat: int{self.qat_bits} fake quantization of the block matrices from step {self.step}")

    def set_qat(self, bits: int) -> None:
        self.qat_bits = bits
        for name, m in self.model.named_modules():
            if isinstance(m, Linear) and tensor_role(name + ".weight", m.weight) == "matrix":
                m.qat_bits = bits

    def shipped_config(self) -> dict:
        """The model config an artifact or raw-weights file records: the run's, with depth recurrence as it is now."""
        return asdict(replace(self.config, looping=self.model.looping))

    # -- the run
    def log_header(self) -> None:
        h, rt = self.h, self.rt
        for f in fields(h):
            self.log(f"hparam {f.name.upper()}={getattr(h, f.name)}")
        self.log(hardware_line(rt))
        self.log(f"data: train_shards:{self.data_summary['train']['shards']} train_tokens:{self.data_summary['train']['tokens']} "
                 f"val_tokens:{len(self.val_tokens)} tokenizer:{self.data_summary['tokenizer']}")
        self.log(f"model_params:{sum(p.numel() for p in self.model.parameters())}")
        self.log(f"world_size:{rt.world_size} grad_accum_steps:{self.grad_accum} compile:{int(rt.compile)} bf16:{int(rt.bf16)} "
                 f"cross_entropy:{'fused_triton' if self.model.fused_ce else 'reference'}")
        self.log(rt.choices)  # with a "warning:" where BF16=1 forces a slow precision

    def run(self) -> dict:
        """Train (or, with EVAL_ARTIFACT, only score), then finish: the artifact and the final lines."""
        h, rt = self.h, self.rt
        self.log_header()
        if h.eval_artifact:
            size = Path(h.eval_artifact).stat().st_size
            return final_lines(self, Path(h.eval_artifact), self.eval_scheme, size, {"run_id": self.run_id, "eval_artifact": h.eval_artifact})
        x, y = DistributedTokenLoader(self.train_files, h.vocab_size, rt.rank, rt.world_size, rt.device).next_batch(h.train_seq_len, h.train_seq_len)
        with torch.no_grad(), rt.autocast:
            self.log(f"untrained train_loss:{self.global_mean(self.model(x, y)):.4f} ln(vocab):{math.log(h.vocab_size):.4f}")
        self.warm_up()
        if h.resume:
            self.restore(*load_tensors(h.resume), what=h.resume)
            self.log(f"resumed from {h.resume} at step {self.step} (train_time {self.train_time_ms:.0f}ms)")
        self.train()
        return finish_run(self)


# ----------------------------------------------------------------------------- the artifact: schemes, quantizers, GPTQ, codecs, container, the automatic choice

# Codecs: the whole quantized payload is compressed as one stream. Every decompressor is bounded (output past the
# limit is a decompression bomb) and refuses truncated streams and trailing bytes. The level is not stored.
CODEC_IDS = {"zlib": 1, "zstd": 2, "lzma": 3, "brotli": 4}
CODEC_LEVELS = {"zlib": (9, 0, 9), "zstd": (22, 1, 22), "lzma": (9, 0, 9), "brotli": (11, 0, 11)}  # default, min, max


def _bomb(limit: int) -> GolfError:
    return GolfError(f"inflates to more than {limit} bytes: refused as a decompression bomb")


def compress(data: bytes, codec: str, level: int) -> bytes:
    if codec == "zlib":
        return zlib.compress(data, level)
    if codec == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=level).compress(data)
    import brotli
    return brotli.compress(data, quality=level)


def decompress_bounded(data: bytes, codec: str, limit: int) -> bytes:
    """Decompressed in steps of 1 KiB of input (no step can inflate past a few tens of MiB), refused past `limit`."""
    if codec == "zstd":
        import zstandard
        d = zstandard.ZstdDecompressor().decompressobj()
    elif codec == "brotli":
        import brotli
        d = brotli.Decompressor()
    else:
        d = zlib.decompressobj() if codec == "zlib" else lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    feed, done = (d.process, d.is_finished) if codec == "brotli" else (d.decompress, lambda: d.eof)
    out = bytearray()
    for i in range(0, len(data), 1024):
        if done():
            raise GolfError("trailing bytes after the compressed stream")
        out += feed(data[i:i + 1024])
        if len(out) > limit:
            raise _bomb(limit)
    if not done():
        raise GolfError("compressed stream is truncated")
    if getattr(d, "unused_data", b""):
        raise GolfError("trailing bytes after the compressed stream")
    return bytes(out)


# The counted code. What a record ships as its train_gpt.py is this file without comments and docstrings, compressed
# (the smaller of brotli and xz at their top levels), as raw bytes in a latin-1 string literal of a small stub that
# decompresses and runs it. The run counts those bytes as its Code size and budgets the artifact against them;
# `python -m tools record wrap` writes the same bytes. Running the shipped script gives the same final line.
SHIPPED_HEAD = b"#coding:l1\nimport %s as z,linecache as c\nn='train_gpt.py'\ns=z.decompress('''"
SHIPPED_TAIL = b"'''.encode('l1'))\nc.cache[n]=(len(s),None,s.decode().splitlines(1),n)\nexec(compile(s,n,'exec'))\n"
MAX_SOURCE_BYTES = 1 << 24
PLAIN_DECORATORS = {"classmethod", "staticmethod", "property", "torch.no_grad()"}  # their functions never read annotations


def strip_source(source: bytes) -> bytes:
    """The source without comments, docstrings (`pass` where one was a whole body), the type annotations of plain
    functions (Triton kernels and custom operators read theirs), the spaces between tokens that are not both words
    (names, numbers, strings) and the lines that leaves blank, indented one space per block level (continuation lines
    not at all); the text of every string is untouched. Cuts at the tokenizer's and the parser's own positions;
    stripping a stripped source changes nothing."""
    text = source.decode("utf-8")
    lines = text.splitlines(keepends=True)
    offset = lambda row, col: sum(map(len, lines[:row - 1])) + col  # (1-based row, character column) -> index
    cuts, keep, level, starts, depth, new_line, fstrings, prev = [], set(), {}, set(), 0, True, [], None
    words = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING,
             getattr(tokenize, "FSTRING_START", -1), getattr(tokenize, "FSTRING_END", -1)}  # (Python 3.12 on)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        depth += (tok.type == tokenize.INDENT) - (tok.type == tokenize.DEDENT)
        # the space between two tokens on one line (not after a multi-line string: 3.12.1 gives its end in bytes)
        if prev and prev.start[0] == tok.start[0] and not fstrings and not {prev.type, tok.type} <= words:
            cuts.append((offset(*prev.end), offset(*tok.start), ""))
        prev = tok
        if new_line and tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            starts.add(tok.start[0])  # the first line of a logical line: indented by its block level
            level[tok.start[0]], new_line = depth, False
        new_line = new_line or tok.type == tokenize.NEWLINE
        if tok.type == tokenize.COMMENT:
            cuts.append((offset(*tok.start), offset(*tok.end), ""))
        elif tok.type == tokenize.STRING:
            keep.update(range(tok.start[0] + 1, tok.end[0] + 1))  # inner lines of a multi-line string: left alone
        elif tok.type == getattr(tokenize, "FSTRING_START", None):  # Python 3.12 splits f-strings into tokens
            fstrings.append(tok.start[0])
        elif tok.type == getattr(tokenize, "FSTRING_END", None):
            prev = tok._replace(start=(fstrings.pop(), 0))  # an f-string is one token before 3.12: no cut after a multi-line one
            keep.update(range(prev.start[0] + 1, tok.end[0] + 1))
    position = lambda row, byte_col: offset(row, len(lines[row - 1].encode()[:byte_col].decode()))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and {ast.unparse(d) for d in node.decorator_list} <= PLAIN_DECORATORS:
            for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]:
                if arg is not None and arg.annotation is not None:  # `name: type` -> `name`
                    cuts.append((position(arg.lineno, arg.col_offset) + len(arg.arg),
                                 position(arg.annotation.end_lineno, arg.annotation.end_col_offset), ""))
            if node.returns is not None:  # `) -> type:` -> `):`
                end = position(node.returns.end_lineno, node.returns.end_col_offset)
                cuts.append((len(text[:text.rindex("->", 0, end)].rstrip()), end, ""))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc = body[0]
            start = offset(doc.lineno, len(lines[doc.lineno - 1].encode()[:doc.col_offset].decode()))
            end = offset(doc.end_lineno, len(lines[doc.end_lineno - 1].encode()[:doc.end_col_offset].decode()))
            cuts.append((start, end, ("pass" if len(body) == 1 else "") + "\n" * text.count("\n", start, end)))
            keep.difference_update(range(doc.lineno, doc.end_lineno + 1))
    made, reach = [], -1
    for cut in sorted(cuts, key=lambda c: (c[0], -c[1])):  # a cut within an earlier one is made with it
        if cut[0] >= reach:
            made, reach = made + [cut], cut[1]
    for start, end, replacement in reversed(made):
        text = text[:start] + replacement + text[end:]
    out = [line if row in keep else " " * level.get(row, 0) * (row in starts) + line.strip() + "\n"
           for row, line in enumerate(text.splitlines(keepends=True), 1)]
    return "".join(line for row, line in enumerate(out, 1) if row in keep or line.strip()).encode("utf-8")


def shipped_code(code: bytes) -> bytes:
    """The self-extracting form of a source (a shipped script is its own): what a record's train_gpt.py holds."""
    if unwrap_code(code) is not None:
        return code
    stripped = strip_source(code)
    forms = [SHIPPED_HEAD % codec.encode() + literal_of(compress(stripped, codec, CODEC_LEVELS[codec][2])) + SHIPPED_TAIL
             for codec in ("brotli", "lzma")]
    return min(forms, key=len)


def literal_of(data: bytes) -> bytes:
    """The body of a triple-quoted latin-1 string literal holding `data`: backslashes, carriage returns (which Python
    would read as newlines), NULs (which it refuses in source) and a quote that another quote or the end follows
    escaped: 1.6% longer for random bytes."""
    text = data.decode("latin-1").replace("\\", "\\\\").replace("\r", "\\r")
    text = re.sub("'(?='|\\Z)", "\\\\'", text)
    return re.sub("\0(?=[0-7])", "\\\\x00", text).replace("\0", "\\0").encode("latin-1")  # \0 unless a digit follows


def unwrap_code(code: bytes) -> bytes | None:
    """The source a shipped script runs (read, decompressed within a bound, never run); None for any other script.
    GolfError for one in the shipped form whose payload does not decode."""
    for codec in ("brotli", "lzma"):
        head = SHIPPED_HEAD % codec.encode()
        if code.startswith(head) and code.endswith(SHIPPED_TAIL):
            literal = code[len(head):-len(SHIPPED_TAIL)]
            data = re.sub(rb"\\(x00|.)", lambda m: {b"x00": b"\0", b"0": b"\0", b"r": b"\r"}.get(m[1], m[1]), literal, flags=re.S)
            if literal_of(data) != literal:
                return None  # escapes this form never writes: not one of ours
            return decompress_bounded(data, codec, MAX_SOURCE_BYTES)
    return None


@dataclass(frozen=True)
class Scheme:
    """How a float state dict becomes an artifact.
    Spec: int<B>[-emb<B>][-bigram<B>][-sd<K>][-gptq][-packed][-shuffle]+<codec>[-<level>].
    B is the signed code width of a role (16 = kept fp16): block matrices and the bigram projection (int<B>), the
    token embedding and untied head (emb, default 8), the BigramHash table (bigram, default: the matrices' width).
    Every row gets one fp16 scale: by default the clip level with the least reconstruction error; with sd<K> the
    block matrices' rows use a step of K standard deviations over the code range instead (larger K: fewer bytes,
    more error; a bare `sd` in ARTIFACT means: the smallest K whose artifact fits SIZE_CAP_BYTES). gptq:
    error-compensating rounding with input statistics from training batches; packed: codes bit-packed instead of
    one per byte; shuffle: the payload's even bytes, then its odd bytes, before compression."""
    bits: int = 8
    embed_bits: int = 8
    bigram_bits: int = 8
    gptq: bool = False
    packed: bool = False
    shuffle: bool = False
    codec: str = "zlib"
    level: int = 9
    sd: float = 0.0  # 0: clip search; > 0: step = sd * row std / code range; -1: fitted to the cap (ARTIFACT only)

    @classmethod
    def parse(cls, spec: str) -> "Scheme":
        quant, _, codec_part = spec.strip().lower().partition("+")
        codec, _, level = codec_part.partition("-")
        parts = quant.split("-")
        def width(p: str, prefix: str) -> int:
            if not p[len(prefix):].isdecimal() or int(p[len(prefix):]) not in (2, 3, 4, 5, 6, 7, 8, 16):
                raise GolfError(f"artifact scheme {spec!r}: {p!r} needs a width of 2 to 8 bits (or 16 for fp16)")
            return int(p[len(prefix):])
        if codec not in CODEC_IDS or not re.fullmatch(r"int\d+(-[a-z]+[\d.]*)*\+[a-z]+(-\d+)?", spec.strip().lower(), re.A):
            raise GolfError(f"artifact scheme {spec!r} must look like int6+brotli or int6-emb8-gptq+zstd-19 "
                            f"(codecs: {', '.join(CODEC_IDS)})")
        bits = width(parts[0], "int")
        if len({p.rstrip("0123456789.") for p in parts}) < len(parts):
            raise GolfError(f"artifact scheme {spec!r} gives a part twice")
        kw = dict(bits=bits, bigram_bits=bits, codec=codec, level=CODEC_LEVELS[codec][0])
        for p in parts[1:]:
            if p in ("gptq", "packed", "shuffle"):
                kw[p] = True
            elif p.startswith("sd"):
                try:
                    kw["sd"] = float(p[2:]) if p != "sd" else -1.0
                except ValueError:
                    kw["sd"] = 0.0
                if not (kw["sd"] == -1.0 or 0.5 <= kw["sd"] <= 256):
                    raise GolfError(f"artifact scheme {spec!r}: {p!r} needs a step of 0.5 to 256 standard deviations")
            elif p.startswith(("emb", "bigram")):
                kw["embed_bits" if p.startswith("emb") else "bigram_bits"] = width(p, "emb" if p.startswith("emb") else "bigram")
            else:
                raise GolfError(f"artifact scheme {spec!r}: unknown part {p!r} (known: emb<B>, bigram<B>, sd<K>, gptq, packed, shuffle)")
        if bits == 16:
            raise GolfError(f"artifact scheme {spec!r}: block matrices are quantized (int2..int8)")
        if kw.get("packed") and min(bits, kw.get("embed_bits", 8), kw["bigram_bits"]) >= 8:
            raise GolfError(f"artifact scheme {spec!r}: packed needs a width below 8 (it bit-packs narrower codes)")
        if level:
            lo, hi = CODEC_LEVELS[codec][1:]
            if not level.isdecimal() or not lo <= int(level) <= hi:
                raise GolfError(f"artifact scheme {spec!r}: {codec} level must be {lo}..{hi}")
            kw["level"] = int(level)
        return cls(**kw)

    @property
    def spec(self) -> str:
        parts = [f"int{self.bits}", f"emb{self.embed_bits}", f"bigram{self.bigram_bits}"]
        parts += [f"sd{self.sd:g}" if self.sd > 0 else "sd"] if self.sd else []
        parts += [p for p in ("gptq", "packed", "shuffle") if getattr(self, p)]
        level = "" if self.level == CODEC_LEVELS[self.codec][0] else f"-{self.level}"
        return "-".join(parts) + f"+{self.codec}{level}"


CONTROL_NAMES = ("resid_mix", "q_gain", "attn_scale", "mlp_scale", "skip_weights", "gate", "smear")


def tensor_role(name: str, t: torch.Tensor) -> str:
    """Which width of a scheme a tensor gets: embed, bigram or matrix; float (fp16) for vectors and control tensors;
    raw for integers."""
    if not t.is_floating_point():
        return "raw"
    if t.ndim != 2 or any(c in name for c in CONTROL_NAMES):
        return "float"
    if name in ("tok_emb.weight", "lm_head.weight"):
        return "embed"
    return "bigram" if name == "bigram.embed.weight" else "matrix"


CLIP_FRACTIONS = (1.0, 0.995, 0.985, 0.97, 0.95, 0.93, 0.9, 0.87, 0.84, 0.8, 0.75, 0.7, 0.65, 0.6)


def row_scales(w: torch.Tensor, bits: int, importance: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row fp16 scale: the clip level (a fraction of the row's max |w|) whose rounding has the least squared
    error, weighted per column by `importance` (the inputs' mean square, for GPTQ) when given."""
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().amax(dim=1)
    best_err, best = torch.full_like(amax, float("inf")), torch.zeros_like(amax, dtype=torch.float16)
    for frac in CLIP_FRACTIONS:
        scale = (amax * frac / qmax).clamp_min(2 ** -24).half()
        s = scale.float()[:, None]
        err = (torch.clamp(torch.round(w / s), -qmax, qmax) * s - w) ** 2
        err = (err * importance if importance is not None else err).sum(dim=1)
        better = err < best_err
        best_err, best = torch.where(better, err, best_err), torch.where(better, scale, best)
    return best


def scheme_scales(w: torch.Tensor, bits: int, scheme: Scheme, role: str, importance=None) -> torch.Tensor:
    """Row scales for a tensor: a step of SD row standard deviations for matrices under sd<K>, else clip search."""
    if scheme.sd > 0 and role in ("matrix", "bigram"):
        return (scheme.sd * w.std(dim=1) / (2 ** (bits - 1) - 1)).clamp_min(2 ** -24).half()
    return row_scales(w, bits, importance)


@torch.no_grad()
def input_moments(model: GPT, batches, autocast) -> tuple[dict, torch.Tensor]:
    """GPTQ's statistics: for every quantized matrix (and the output head), the sum of x x^T over the inputs x it
    sees on the given token batches, and the number of tokens. Divide the sums by the count for E[x x^T]."""
    sums, hooks = {}, []
    def hook(name):
        def accumulate(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].size(-1)).float()
            sums[name] = sums.get(name, 0) + x.T @ x
        return accumulate
    for name, m in model.named_modules():
        if isinstance(m, Linear) and tensor_role(name + ".weight", m.weight) == "matrix":
            hooks.append(m.register_forward_hook(hook(name + ".weight")))
    head = "tok_emb.weight" if model.lm_head is None else "lm_head.weight"
    tokens = torch.zeros((), dtype=torch.float64, device=model.tok_emb.weight.device)
    try:
        for x in batches:
            with autocast:
                hidden = model.hidden(x).reshape(-1, model.cfg.model_dim).float()
            sums[head] = sums.get(head, 0) + hidden.T @ hidden
            tokens += x.numel()
    finally:
        for handle in hooks:
            handle.remove()
    return sums, tokens


def gptq_factor(hessian: torch.Tensor):
    """GPTQ's use of one matrix's input statistics H = E[x x^T]: the inputs that are never active (dead), the column
    order (most active inputs first) and the upper Cholesky factor of H^-1 in that order, damped (more damping where
    a few batches leave H nearly singular). None where no damping makes it usable. It depends on H alone, so it is
    computed once per matrix and shared by every scheme tried."""
    H = hessian.double().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    order = torch.argsort(H.diagonal(), descending=True)
    H = H[order][:, order]
    for damping in (0.01, 0.1, 1.0):
        try:
            damped = H + damping * H.diagonal().mean() * torch.eye(len(H), dtype=H.dtype, device=H.device)
            return dead, order, torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(damped)), upper=True).float()
        except torch.linalg.LinAlgError:
            continue
    return None


def gptq_round(ws: list, scales: list, bits: list, factors: list, block: int = 128) -> list:
    """GPTQ for matrices of one shape at once (batched): round columns one at a time, each matrix's most active inputs
    first, and push each column's rounding error onto the columns not yet rounded, through the Cholesky factor of
    H^-1, so that each layer's output on such inputs moves as little as possible. Returns each matrix's int8 codes."""
    order = torch.stack([f[1] for f in factors])[:, None, :].expand(-1, ws[0].size(0), -1)
    U = torch.stack([f[2] for f in factors])
    W = torch.stack([w.float().masked_fill(f[0][None, :], 0.0) for w, f in zip(ws, factors)]).gather(2, order)
    S = torch.stack(scales).float()[:, :, None]
    qmax = torch.tensor([2.0 ** (b - 1) - 1 for b in bits], device=W.device)[:, None, None]
    Q = torch.zeros_like(W)
    for i1 in range(0, W.size(2), block):
        i2 = min(i1 + block, W.size(2))
        W1, U1, E1 = W[:, :, i1:i2].clone(), U[:, i1:i2, i1:i2], torch.zeros_like(W[:, :, i1:i2])
        for j in range(i2 - i1):
            q = torch.clamp(torch.round(W1[:, :, j:j + 1] / S), -qmax, qmax)
            Q[:, :, i1 + j] = q[:, :, 0]
            err = (W1[:, :, j:j + 1] - q * S) / U1[:, j:j + 1, j:j + 1]
            W1[:, :, j:] -= err * U1[:, j:j + 1, j:]
            E1[:, :, j] = err[:, :, 0]
        W[:, :, i2:] -= torch.bmm(E1, U[:, i1:i2, i2:])
    return list(torch.empty_like(Q).scatter_(2, order, Q).to(torch.int8).unbind(0))  # columns back in place


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes -> little-endian bitstream of `bits` bits per code (uint8)."""
    u = (codes.to(torch.int16) + (1 << (bits - 1))).to(torch.uint8).numpy().reshape(-1, 1)
    planes = np.unpackbits(u, axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(planes.ravel(), bitorder="little"))


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    if packed.numel() * 8 < count * bits:
        raise ValueError(f"{packed.numel()} packed bytes hold fewer than {count} codes of {bits} bits")
    planes = np.unpackbits(packed.numpy(), bitorder="little")[:count * bits].reshape(count, bits)
    u = np.packbits(np.pad(planes, ((0, 0), (0, 8 - bits))), axis=1, bitorder="little").ravel()
    return torch.from_numpy(u.astype(np.int16) - (1 << (bits - 1)))


def quantize_state_dict(state: dict, scheme: Scheme, hessians: dict | None = None, factors: dict | None = None) -> tuple[dict, dict]:
    """(stored tensors, per-tensor info for the metadata). With scheme.gptq, matrices whose input statistics are in
    `hessians` (name -> H) are rounded by GPTQ, batched by shape (`factors`: a cache of gptq_factor by name, shared
    by every scheme tried on one state); the others round to nearest, and a matrix whose statistics are unusable
    is marked "gptq": false in its info. Works on the state's device; the stored tensors are on the CPU."""
    tensors, info, jobs = {}, {}, {}
    widths = {"matrix": scheme.bits, "embed": scheme.embed_bits, "bigram": scheme.bigram_bits, "float": 16}
    factors = {} if factors is None else factors
    for name, t in state.items():
        role = tensor_role(name, t)
        bits = widths.get(role)
        if bits is None or bits == 16:
            tensors[name], info[name] = (t.cpu(), {"q": "raw"}) if bits is None else (t.half().cpu(), {"q": "fp16"})
            continue
        w = t.float()
        H = hessians.get(name) if scheme.gptq and hessians else None
        scale = scheme_scales(w, bits, scheme, role, None if H is None else H.diagonal()[None, :].float())
        tensors[name + ".scale"], tensors[name] = scale.cpu(), None  # the codes' place, filled below
        if H is not None and name not in factors:
            factors[name] = gptq_factor(H.to(w.device))
        if H is not None and factors[name] is not None:
            jobs.setdefault(tuple(w.shape), []).append((name, w, scale, bits))
            continue
        qmax = 2 ** (bits - 1) - 1
        store_codes(tensors, info, name, torch.clamp(torch.round(w / scale.float()[:, None]), -qmax, qmax).to(torch.int8), bits, scheme)
        if H is not None:
            info[name]["gptq"] = False
    for same_shape in jobs.values():
        names, ws, scales, bits = zip(*same_shape)
        for name, codes, b in zip(names, gptq_round(ws, scales, bits, [factors[n] for n in names]), bits):
            store_codes(tensors, info, name, codes, b, scheme)
    return tensors, info


def store_codes(tensors: dict, info: dict, name: str, codes: torch.Tensor, bits: int, scheme: Scheme) -> None:
    codes = codes.cpu()
    if scheme.packed and bits < 8:
        tensors[name], info[name] = pack_codes(codes, bits), {"q": "int_row_packed", "bits": bits, "shape": list(codes.shape)}
    else:
        tensors[name], info[name] = codes, {"q": "int_row", "bits": bits}


def dequantize(tensors: dict, name: str, info) -> torch.Tensor:
    """One stored tensor back to float; ValueError/KeyError on anything inconsistent."""
    kind = info.get("q") if isinstance(info, dict) else None
    if kind == "raw":
        return tensors[name]
    if kind == "fp16":
        if tensors[name].dtype != torch.float16:
            raise ValueError("an fp16 tensor is not stored as F16")
        return tensors[name].float()
    if kind not in ("int_row", "int_row_packed"):
        raise ValueError(f"unknown quantization {kind!r}")
    bits, scale = info.get("bits"), tensors[name + ".scale"]
    if type(bits) is not int or not 2 <= bits <= 8 or scale.dtype != torch.float16 or scale.ndim != 1:
        raise ValueError(f"bad width {bits!r} or scale {tuple(scale.shape)} {scale.dtype}")
    if kind == "int_row_packed":
        shape = info.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v > 0 for v in shape)):
            raise ValueError(f"bad packed shape {shape!r}")
        codes = unpack_codes(tensors[name], bits, shape[0] * shape[1]).reshape(shape)
    else:
        codes = tensors[name]
        if codes.dtype != torch.int8 or codes.ndim != 2:
            raise ValueError("codes are not a 2-D int8 tensor")
    if codes.size(0) != scale.numel():
        raise ValueError(f"{codes.size(0)} rows of codes but {scale.numel()} row scales")
    if codes.numel() and int(codes.to(torch.int16).abs().max()) > 2 ** (bits - 1) - 1:
        raise ValueError(f"codes do not fit {bits} bits")
    return codes.float() * scale.float()[:, None]


# The artifact: magic, version, codec id, flags (1 = byte-shuffled), SHA-256 of the compressed payload, payload.
# The payload is the safetensors-layout bytes of the stored tensors, with the scheme, model config and per-tensor
# quantization in the metadata. The hash is checked before anything is decompressed.
ARTIFACT_MAGIC, ARTIFACT_VERSION, ARTIFACT_HEAD = b"GOLF", 2, 39


def byte_shuffle(data: bytes, inverse: bool = False) -> bytes:
    a = np.frombuffer(data, dtype=np.uint8)
    if inverse:
        out = np.empty_like(a)
        out[0::2], out[1::2] = a[:(a.size + 1) // 2], a[(a.size + 1) // 2:]
        return out.tobytes()
    return np.concatenate([a[0::2], a[1::2]]).tobytes()


def pack_artifact(state: dict, config: dict, scheme: Scheme, hessians: dict | None = None, scoring: dict | None = None) -> bytes:
    """The artifact of a float state dict; `scoring`: the evaluation settings it is to be scored with (scoring_settings)."""
    if scheme.sd < 0:
        raise GolfError(f"artifact scheme {scheme.spec}: a bare sd is fitted to the cap by ARTIFACT, give sd<K> here")
    return encode_artifact(*quantize_state_dict(state, scheme, hessians), config, scheme, scoring)


def encode_artifact(tensors: dict, info: dict, config: dict, scheme: Scheme, scoring: dict | None = None) -> bytes:
    """The container around quantize_state_dict's output (one quantization can then be tried with several codecs)."""
    meta = {"scheme": scheme.spec, "config": config, "tensors": info, **({"scoring": scoring} if scoring else {})}
    payload = tensors_to_bytes(tensors, meta)
    payload = compress(byte_shuffle(payload) if scheme.shuffle else payload, scheme.codec, scheme.level)
    head = ARTIFACT_MAGIC + bytes([ARTIFACT_VERSION, CODEC_IDS[scheme.codec], int(scheme.shuffle)])
    return head + hashlib.sha256(payload).digest() + payload


def inflate_artifact(blob: bytes, what: str = "artifact", limit: int = MAX_INFLATED_BYTES) -> tuple[dict, dict, str]:
    """(stored tensors, metadata, codec) of an artifact, checked and decompressed but not dequantized."""
    if len(blob) < ARTIFACT_HEAD or blob[:4] != ARTIFACT_MAGIC:
        raise GolfError(f"{what}: not a golf artifact (bad magic or truncated header)")
    if blob[4] != ARTIFACT_VERSION:
        raise GolfError(f"{what}: artifact version {blob[4]} is not supported (expected {ARTIFACT_VERSION})")
    codec = {v: k for k, v in CODEC_IDS.items()}.get(blob[5])
    if codec is None or blob[6] > 1:
        raise GolfError(f"{what}: unknown compression codec id {blob[5]} or flags {blob[6]}")
    if hashlib.sha256(blob[ARTIFACT_HEAD:]).digest() != blob[7:ARTIFACT_HEAD]:
        raise GolfError(f"{what}: integrity check failed (SHA-256 mismatch): the file is corrupt or was modified")
    try:
        inner = decompress_bounded(blob[ARTIFACT_HEAD:], codec, limit)
    except GolfError as e:
        raise GolfError(f"{what}: {e}") from None
    except Exception as e:  # a codec library's own error on a corrupt stream
        raise GolfError(f"{what}: corrupt {codec} stream ({e})") from None
    tensors, metadata = tensors_from_bytes(byte_shuffle(inner, inverse=True) if blob[6] else inner, what)
    return tensors, metadata, codec


def unpack_artifact(blob: bytes, what: str = "artifact", limit: int = MAX_INFLATED_BYTES) -> tuple[dict, dict]:
    """(float state dict, metadata) of an artifact, whatever its scheme and codec; GolfError on anything wrong."""
    tensors, metadata, _ = inflate_artifact(blob, what, limit)
    infos = metadata.get("tensors")
    if not isinstance(infos, dict) or not infos:
        raise GolfError(f"{what}: the metadata lists no tensors")
    state = {}
    for name, info in infos.items():
        try:
            state[name] = dequantize(tensors, name, info)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise GolfError(f"{what}: tensor {name!r} cannot be decoded ({e})") from None
        if state[name].is_floating_point() and not torch.isfinite(state[name]).all():
            raise GolfError(f"{what}: tensor {name!r} holds non-finite weights")
    return state, metadata


def read_artifact(path, limit: int = MAX_INFLATED_BYTES) -> tuple[dict, dict]:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise GolfError(f"cannot read {path}: {e.strerror}") from None
    return unpack_artifact(blob, str(path), limit)


def model_from_state(state: dict, config, what: str = "artifact") -> "GPT":
    """Build the model a stored config describes, after checking the config (types, every setting's bound, the rules
    that join them) and that the stored tensors have exactly the model's names and shapes (on the meta device:
    nothing is allocated for a lying config)."""
    known = {f.name: f.default for f in fields(ModelConfig)}
    if not isinstance(config, dict) or set(config) - set(known):
        raise GolfError(f"{what}: the model config is not an object of ModelConfig fields "
                        f"(unknown: {sorted(set(config) - set(known)) if isinstance(config, dict) else type(config).__name__})")
    config = {**known, **config}  # a field added since the file was written keeps its default (every switch: off)
    for f in fields(ModelConfig):
        v = config[f.name]
        if type(v) is not type(f.default) and not (isinstance(f.default, float) and type(v) is int):
            raise GolfError(f"{what}: model config {f.name}={v!r} is not a {type(f.default).__name__}")
    cfg = ModelConfig(**config)
    problem = bound_problem(cfg, [f for f in fields(Hyperparameters) if f.metadata["part"] == "model"]) or model_problem(cfg) or \
        (None if 0 <= cfg.bos_id < cfg.vocab_size else f"BOS id {cfg.bos_id} is not below VOCAB_SIZE={cfg.vocab_size}")
    if problem:
        raise GolfError(f"{what}: the model config cannot run: {problem}")
    layers = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdecimal()}
    if layers != set(range(cfg.num_layers)) or min(cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) < 1:
        raise GolfError(f"{what}: the config's {cfg.num_layers} layers do not match the {len(layers)} stored blocks")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in GPT(cfg, init=False).state_dict().items()}
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        raise GolfError(f"{what}: the model config is inconsistent ({e})") from None
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if stored != shapes:
        diff = sorted(set(stored.items()) ^ set(shapes.items()))[:3]
        raise GolfError(f"{what}: the stored tensors do not match the model config (first differences: {diff})")
    model = GPT(cfg)
    model.load_state_dict(state, strict=True)
    return model


def code_entropy_bytes(codes: torch.Tensor, bits: int) -> float:
    """Order-0 entropy of integer codes, in bytes: what an ideal codec spends on them."""
    counts = torch.bincount((codes.long() + 2 ** (bits - 1)).flatten().cpu()).float()
    p = counts[counts > 0] / codes.numel()
    return float(-(p * p.log2()).sum()) * codes.numel() / 8


def forecast_bytes(state: dict, scheme: Scheme) -> int:
    """Projected artifact bytes of a scheme without GPTQ or compressing: the entropy forecast of its round-to-nearest
    codes. Brotli lands within 2% of it on trained weights (docs/measurements.md, "The artifact forecast")."""
    return payload_forecast(*quantize_state_dict(state, scheme))


def payload_forecast(tensors: dict, info: dict) -> int:
    """forecast_bytes for quantized tensors as stored (GPTQ's codes included): the entropy of the codes, plus every
    other stored byte."""
    total = 1024.0 + sum(t.numel() * t.element_size() for n, t in tensors.items() if n not in info or info[n]["q"] in ("raw", "fp16"))
    for name, i in info.items():
        if i["q"] == "int_row":
            total += code_entropy_bytes(tensors[name], i["bits"])
        elif i["q"] == "int_row_packed":
            total += code_entropy_bytes(unpack_codes(tensors[name], i["bits"], math.prod(i["shape"])), i["bits"])
    return int(total)


def forecast_sd(state: dict, scheme: Scheme, budget: int) -> float:
    """The finest step (fewest standard deviations, sd) whose entropy forecast fits the budget, by bisection."""
    lo, hi = 2.0, 256.0
    for _ in range(14):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if forecast_bytes(state, replace(scheme, sd=mid)) <= budget else (mid, hi)
    return round(hi, 3)


def forecast_choice(state: dict, h: Hyperparameters, code_bytes: int) -> tuple[Scheme, int]:
    """The scheme the artifact would use for these weights, by the forecast alone, and its bytes (a bare sd gets the
    step the forecast fits to the cap); the last candidate when none fits."""
    budget = h.size_cap_bytes - code_bytes
    for spec in AUTO_SCHEMES if h.artifact == "auto" else (h.artifact,):
        scheme = Scheme.parse(spec)
        if scheme.sd < 0:
            scheme = replace(scheme, sd=forecast_sd(state, scheme, budget))
        size = forecast_bytes(state, scheme)
        if size <= budget:
            break
    return scheme, size


def forecast_line(state: dict, h: Hyperparameters, code_bytes: int) -> str:
    scheme, size = forecast_choice(state, h, code_bytes)
    fits = size + code_bytes <= h.size_cap_bytes
    return (f"artifact forecast: {scheme.spec} ~{size} bytes + code {code_bytes} ({'fits' if fits else 'DOES NOT FIT'} "
            f"{h.size_cap_bytes}; order-0 entropy estimate)")


# ARTIFACT=auto considers these in order and ships the one that fits with the best held-out loss: int8, int7, then
# a step fitted to the cap (sd), with smaller embedding and bigram codes if the matrices alone cannot make it fit.
# Candidates are quantized (GPTQ's factors computed once, shared by all) and judged by the entropy forecast of their
# codes: a candidate fits when its forecast is within the budget less FORECAST_MARGIN, and the choice stops after two
# fit. Only the chosen one is compressed (about 45 s for a default-size model at brotli's top level on two CPU
# cores). Brotli has landed at 0.98-1.005x the forecast (docs/measurements.md): a fitted step whose artifact is over
# the budget, or more than REFILL under it, is fitted once more to the measured ratio; a fixed one that is over
# gives way to the next candidate.
AUTO_SCHEMES = ("int8-emb8-gptq+brotli", "int7-emb8-gptq+brotli", "int8-emb8-sd-gptq+brotli",
                "int8-emb6-bigram6-sd-gptq+brotli", "int8-emb4-bigram4-sd-gptq+brotli")
FORECAST_MARGIN = 1.006
REFILL = 1.015
FORECAST_SLACK = 1.03  # a candidate forecast (round to nearest, at its coarsest step) this far over is not even quantized


def quantize_candidate(state: dict, scheme: Scheme, hessians, factors: dict, target: int):
    """(scheme, stored tensors, info, forecast bytes) of one candidate; a bare sd gets the finest step whose
    forecast fits `target` (from the round-to-nearest forecast, then widened by the bits GPTQ's codes are over)."""
    if scheme.sd >= 0:
        tensors, info = quantize_state_dict(state, scheme, hessians, factors)
        return scheme, tensors, info, payload_forecast(tensors, info)
    quantized = sum(t.numel() for n, t in state.items() if tensor_role(n, t) in ("matrix", "bigram"))
    sd = forecast_sd(state, scheme, target)
    for _ in range(4):
        candidate = replace(scheme, sd=round(sd, 3))
        tensors, info = quantize_state_dict(state, candidate, hessians, factors)
        size = payload_forecast(tensors, info)
        if size <= target or sd >= 256:
            break
        sd = min(256.0, sd * 2 ** (8 * (size - target) / quantized + 0.002))
    return candidate, tensors, info, size


def choose_artifact(state: dict, config: dict, h: Hyperparameters, code_bytes: int, hessians, heldout_loss, log) -> tuple[bytes, Scheme]:
    """The artifact the run ships: ARTIFACT itself (packed even when over the cap: the run then exits non-zero), or
    with ARTIFACT=auto the candidate that fits with the best held-out loss (see AUTO_SCHEMES). heldout_loss(weights)
    scores dequantized weights (it must not change `state`); raises GolfError when nothing fits."""
    budget, factors, fitting, auto = h.size_cap_bytes - code_bytes, {}, [], h.artifact == "auto"
    reference = heldout_loss(state) if auto else None
    for spec in AUTO_SCHEMES if auto else (h.artifact,):
        scheme, t0 = Scheme.parse(spec), time.perf_counter()
        coarsest = scheme if scheme.sd >= 0 else replace(scheme, sd=256.0)  # a fitted step goes no coarser
        if auto and (smallest := forecast_bytes(state, coarsest)) > FORECAST_SLACK * budget:  # not worth quantizing
            log(f"artifact candidate {coarsest.spec}: forecast ~{smallest} bytes + code {code_bytes} > {h.size_cap_bytes} "
                f"by more than {FORECAST_SLACK - 1:.0%}, not quantized [{time.perf_counter() - t0:.1f}s]")
            continue
        candidate = quantize_candidate(state, scheme, hessians, factors, int(budget / FORECAST_MARGIN))
        fallback = [n for n, i in candidate[2].items() if i.get("gptq") is False]
        if fallback:
            log(f"gptq: no usable input statistics for {', '.join(fallback)}: rounded to nearest")
        fits = candidate[3] * FORECAST_MARGIN <= budget
        loss = heldout_loss({n: dequantize(candidate[1], n, candidate[2][n]) for n in state}) if fits and auto else None
        if auto:
            log(f"artifact candidate {candidate[0].spec}: forecast ~{candidate[3]} bytes + code {code_bytes} " + (
                f"fits, held-out loss {loss:.5f} ({loss - reference:+.5f} vs unquantized)" if fits else
                f"> {h.size_cap_bytes} less {FORECAST_MARGIN - 1:.1%}, not packed") + f" [{time.perf_counter() - t0:.1f}s]")
        fitting += [(loss or 0.0, len(fitting), candidate)] if fits or not auto else []
        if len(fitting) == 2:
            break
    for _, _, candidate in sorted(fitting, key=lambda c: c[:2]):  # the best first; the next if it does not fit
        blob, scheme = ship_fitted(candidate, state, config, h, budget, hessians, factors, log)
        if len(blob) <= budget or not auto:
            return blob, scheme
    raise GolfError(f"no artifact scheme fits SIZE_CAP_BYTES={h.size_cap_bytes}: the smallest, {coarsest.spec}, is "
                    f"~{forecast_bytes(state, coarsest)} bytes by the forecast + {code_bytes} bytes of code (train a smaller "
                    "model, or set ARTIFACT)")


def ship_fitted(candidate, state: dict, config: dict, h: Hyperparameters, budget: int, hessians, factors: dict, log) -> tuple[bytes, Scheme]:
    """A candidate compressed; a fitted step (sd) whose artifact is over the budget or more than REFILL under it is
    fitted again to the ratio of its real bytes to its forecast and compressed once more (the better that fits wins)."""
    scheme, tensors, info, forecast = candidate
    blob = ship(tensors, info, config, scheme, h, budget, log)
    fitted = h.artifact == "auto" or Scheme.parse(h.artifact).sd < 0  # a step the user gave is shipped as given
    if scheme.sd > 0 and fitted and not budget / REFILL <= len(blob) <= budget:
        ratio = len(blob) / forecast
        log(f"artifact {scheme.spec}: {len(blob) / forecast:.4f}x its forecast; fitting the step again to that ratio")
        again, tensors, info, _ = quantize_candidate(state, replace(scheme, sd=-1.0), hessians, factors, int(budget / ratio / 1.001))
        second = ship(tensors, info, config, again, h, budget, log)
        if len(second) <= budget and (len(blob) > budget or len(second) > len(blob)):
            return second, again
    return blob, scheme


def ship(tensors: dict, info: dict, config: dict, scheme: Scheme, h: Hyperparameters, budget: int, log) -> bytes:
    """The artifact's bytes, compressed at the scheme's level (the codec's top level by default), with the time it took."""
    t0 = time.perf_counter()
    blob = encode_artifact(tensors, info, config, scheme, scoring_settings(h))
    log(f"artifact {scheme.spec}: {len(blob)} bytes ({'fits' if len(blob) <= budget else 'over'} the {budget}-byte budget "
        f"for the model) [{scheme.codec} {time.perf_counter() - t0:.1f}s]")
    return blob


@torch.no_grad()
def calibrate(model: GPT, loader: "DistributedTokenLoader", h: Hyperparameters, rt: Runtime) -> dict:
    """GPTQ's statistics: the second moment E[x x^T] of every quantized matrix's input over GPTQ_BATCHES training
    micro-batches per process (summed over processes), on the device."""
    was_training = model.training
    model.eval()
    tokens_per_batch = h.train_batch_tokens // (rt.world_size * (8 // rt.world_size))
    batches = (loader.next_batch(tokens_per_batch, h.train_seq_len)[0] for _ in range(h.gptq_batches))
    sums, tokens = input_moments(model, batches, rt.autocast)
    model.train(was_training)
    if rt.world_size > 1:
        for value in list(sums.values()) + [tokens]:
            dist.all_reduce(value)
    return {k: v / tokens for k, v in sums.items()}


# ----------------------------------------------------------------------------- evaluation: sliding windows, then test-time training

def window_starts(num_targets: int, seq_len: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over the targets tokens[1:]. Window k starts at min(k*stride, T-seq_len) and scores the
    targets after the previous window's end, so every target is scored exactly once, each with at least
    seq_len-stride tokens of context (except the first window's). stride == seq_len is the non-overlapping pass."""
    length = min(seq_len, num_targets)
    count = max(0, math.ceil((num_targets - length) / stride)) + 1
    starts = np.minimum(np.arange(count, dtype=np.int64) * stride, num_targets - length)
    ends = starts + length
    first_scored = np.concatenate([[0], ends[:-1]]) - starts  # offset within each window of its first scored target
    return starts, first_scored


def window_sums(losses: torch.Tensor, x: torch.Tensor, y: torch.Tensor, first: torch.Tensor, luts) -> torch.Tensor:
    """Per window (row): the loss sum, the number of targets and the bytes they stand for, over the targets from
    offset first[row] on: the one place where val_bpb's bytes are counted."""
    base_bytes, has_space, is_boundary = luts
    scored = torch.arange(y.size(1), device=y.device)[None, :] >= first[:, None]
    nbytes = base_bytes[y].int() + (has_space[y] & ~is_boundary[x]).int()
    return torch.stack([(losses.double() * scored).sum(1), scored.sum(1).double(), (nbytes * scored).sum(1).double()], 1)


def score_windows(model: nn.Module, tokens: np.ndarray, luts, starts, first, length: int, batch_seqs: int,
                  device, autocast, out: list) -> None:
    """Score windows tokens[s : s+length+1] (targets from offset `first` on) in batches; append each window's (loss
    sum, targets, bytes) to `out`."""
    batch_seqs = max(1, min(batch_seqs, len(starts)))  # never pad past the windows there are
    for b in range(0, len(starts), batch_seqs):
        # the last batch is padded with unscored copies so every forward pass has one shape (one compile)
        real = np.arange(b, b + batch_seqs) < len(starts)
        rows = np.minimum(np.arange(b, b + batch_seqs), len(starts) - 1)
        window = torch.from_numpy(tokens[starts[rows, None] + np.arange(length + 1)].astype(np.int64)).to(device)
        x, y = window[:, :-1], window[:, 1:]
        with autocast:
            losses = model(x, y, reduction="none").float()
        offsets = torch.from_numpy(np.where(real, first[rows], length)).to(device)
        out.extend(window_sums(losses, x, y, offsets, luts)[: int(real.sum())].tolist())


def totals_of(window_sums: list, world_size: int, device) -> tuple[float, float]:
    """(val_loss, val_bpb) from per-window sums: summed exactly (math.fsum), so the batching cannot change a digit."""
    totals = torch.tensor([math.fsum(w[i] for w in window_sums) for i in range(3)], dtype=torch.float64, device=device)
    if world_size > 1:
        dist.all_reduce(totals)
    loss_sum, count, nbytes = totals.tolist()
    return loss_sum / count, loss_sum / math.log(2) / nbytes


def device_luts(luts, device) -> tuple:
    return tuple(torch.as_tensor(t, device=device) for t in luts)


@torch.no_grad()
def evaluate(model: nn.Module, val_tokens: np.ndarray, luts, seq_len: int, stride: int, batch_seqs: int,
             device: torch.device, autocast, rank: int = 0, world_size: int = 1) -> tuple[float, float]:
    """Return (val_loss in nats per token, val_bpb) over every validation target, split across processes."""
    starts, first_scored = window_starts(len(val_tokens) - 1, seq_len, stride)
    lo, hi = len(starts) * rank // world_size, len(starts) * (rank + 1) // world_size
    sums, was_training = [], model.training
    model.eval()
    score_windows(model, val_tokens, device_luts(luts, device), starts[lo:hi], first_scored[lo:hi], min(seq_len, len(val_tokens) - 1),
                  batch_seqs, device, autocast, sums)
    model.train(was_training)
    return totals_of(sums, world_size, device)


def final_score(model: "GPT", scorer: nn.Module, tokens: np.ndarray, luts, h: Hyperparameters, rt: "Runtime",
                log=print) -> tuple[float, float, dict | None]:
    """The score a run ends with (and `python -m tools score` and EVAL_ARTIFACT give): sliding windows over the whole
    validation split, within documents with DOC_EVAL, with score-first test-time training when TTT is set.
    `scorer` is the model as it runs on this device (compiled or not); TTT adapts `model` itself."""
    model.eval_doc_mask = h.doc_eval
    if h.ttt != "0":
        return evaluate_ttt(model, tokens, luts, h, rt, log)
    return (*evaluate(scorer, tokens, luts, h.eval_seq_len, h.eval_stride, h.eval_batch_seqs, rt.device, rt.autocast,
                      rt.rank, rt.world_size), None)


# Score-first test-time training (TTT): the model adapts on validation text only after that text has been scored.
#   sgd:  the validation stream in chunks of TTT_CHUNK_TOKENS; each chunk's sliding windows are scored, then the
#         chunk trains the weights (TTT_PARAMS) for TTT_STEPS epochs of SGD with momentum, the learning rate falling
#         along a cosine over the chunks. Under torchrun every process scores its share of each chunk's windows
#         and trains on its share of the chunk's sequences; gradients are averaged, so all processes adapt alike.
#   lora: each document alone, from its own start, in chunks of TTT_CHUNK_TOKENS; each chunk is scored, then
#         TTT_STEPS Adam steps train rank-TTT_LORA_RANK adapters on TTT_LORA_TARGETS; with TTT_RESET=1 the adapters
#         restart at every document. Under torchrun each process takes a share of the documents.
# Both start from the model they are given: in the run, the artifact as read back from disk.
def ttt_lr_at(chunk: int, chunks: int, lr: float) -> float:
    return lr * 0.5 * (1 + math.cos(math.pi * chunk / max(chunks - 1, 1)))


LORA_TARGETS = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "o": "attn.proj", "fc": "mlp.fc", "down": "mlp.proj"}


def attach_lora(model: "GPT", targets: str, rank: int) -> list[nn.Parameter]:
    """Low-rank adapters (A random, B zero: no change until trained) on the named block matrices of every block."""
    params = []
    for block in model.blocks:
        for key in targets.split(","):
            linear = block.get_submodule(LORA_TARGETS[key])
            a = nn.Parameter(torch.randn(rank, linear.in_features, device=linear.weight.device) / math.sqrt(linear.in_features))
            b = nn.Parameter(torch.zeros(linear.out_features, rank, device=linear.weight.device))
            linear.lora = (a, b)
            params += [a, b]
    return params


def detach_lora(model: "GPT") -> None:
    for m in model.modules():
        if isinstance(m, Linear):
            m.lora = None


def adaptation_stopped(facts: dict, h: Hyperparameters, t0: float, log, done: str) -> bool:
    """Whether TTT must stop adapting (scoring goes on): EVAL_TIME_CAP_SECONDS reached now (said once) or earlier."""
    if not facts["cut_short"] and h.eval_time_cap_seconds > 0 and time.perf_counter() - t0 > h.eval_time_cap_seconds:
        facts["cut_short"] = True
        log(f"ttt: EVAL_TIME_CAP_SECONDS={h.eval_time_cap_seconds:g} reached: adaptation stopped after {done}")
    return facts["cut_short"]


def evaluate_ttt(model: "GPT", tokens: np.ndarray, luts, h: Hyperparameters, rt: "Runtime", log=print) -> tuple[float, float, dict]:
    """(val_loss, val_bpb, facts) of score-first TTT; facts: chunks, chunks adapted, whether the time cap cut it short."""
    facts, sums = {"cut_short": False, "adapted": 0, "chunks": 0}, []
    run = ttt_sgd if h.ttt == "sgd" else ttt_lora
    run(model, tokens, device_luts(luts, rt.device), h, rt, log, sums, facts)
    model.eval()
    return (*totals_of(sums, rt.world_size, rt.device), facts)


def ttt_sgd(model, tokens, luts, h, rt, log, sums, facts) -> None:
    t0, L = time.perf_counter(), min(h.eval_seq_len, len(tokens) - 1)
    rank, world_size, device, autocast = rt.rank, rt.world_size, rt.device, rt.autocast
    params = [p for n, p in model.named_parameters() if h.ttt_params == "all" or tensor_role(n, p) == "matrix"]
    opt = torch.optim.SGD(params, lr=h.ttt_lr, momentum=h.ttt_momentum)
    starts, first = window_starts(len(tokens) - 1, L, h.eval_stride)
    chunk_of = (starts + first) // h.ttt_chunk_tokens
    facts["chunks"] = chunks = int(chunk_of[-1]) + 1
    for c in range(chunks):
        mine = np.nonzero(chunk_of == c)[0]
        mine = mine[len(mine) * rank // world_size: len(mine) * (rank + 1) // world_size]
        model.eval()
        with torch.no_grad():
            score_windows(model, tokens, luts, starts[mine], first[mine], L, h.eval_batch_seqs, device, autocast, sums)
        if c == chunks - 1 or not h.ttt_steps or adaptation_stopped(facts, h, t0, log, f"{c} of {chunks - 1} chunks"):
            continue
        # train on chunk c's targets only: inputs tokens[c0:c1], targets tokens[c0+1:c1+1], all scored already
        c0, c1 = c * h.ttt_chunk_tokens, min((c + 1) * h.ttt_chunk_tokens, len(tokens) - 1)
        rows, per_step = np.arange(c0, c1 - L + 1, L), h.ttt_batch_seqs * world_size
        for group in opt.param_groups:
            group["lr"] = ttt_lr_at(c, chunks, h.ttt_lr)
        model.train()
        for _ in range(h.ttt_steps):
            for s in range(math.ceil(len(rows) / per_step)):
                global_batch = rows[s * per_step:(s + 1) * per_step]
                batch = global_batch[rank::world_size]
                if len(batch):  # this process's share of the step's rows; the gradient sum is the batch mean's
                    window = torch.from_numpy(tokens[batch[:, None] + np.arange(L + 1)].astype(np.int64)).to(device)
                    with autocast:
                        loss = model(window[:, :-1], window[:, 1:])
                    (loss * len(batch) / len(global_batch)).backward()
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    if world_size > 1:
                        dist.all_reduce(p.grad)
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
        facts["adapted"] += 1


def ttt_lora(model, tokens, luts, h, rt, log, sums, facts) -> None:
    t0, L = time.perf_counter(), min(h.eval_seq_len, len(tokens) - 1)
    rank, world_size, device, autocast = rt.rank, rt.world_size, rt.device, rt.autocast
    bos = np.nonzero(tokens[:-1] == model.cfg.bos_id)[0]
    edges = np.unique(np.concatenate([[0], bos, [len(tokens) - 1]]))
    params = attach_lora(model, h.ttt_lora_targets, h.ttt_lora_rank)
    chunk = min(h.ttt_chunk_tokens, L)  # a chunk is scored in one window of up to L tokens
    for d, (s, e) in enumerate(list(zip(edges[:-1], edges[1:]))[rank::world_size]):  # targets s..e-1
        if h.ttt_reset or not d:
            with torch.no_grad():
                for b in params[1::2]:
                    b.zero_()
            opt = torch.optim.Adam(params, lr=h.ttt_lora_lr)
        for c0 in range(s, e, chunk):
            c1 = min(c0 + chunk, e)
            w0 = max(s, c1 - L)
            x = torch.from_numpy(tokens[w0:c1].astype(np.int64)).to(device)[None]
            y = torch.from_numpy(tokens[w0 + 1:c1 + 1].astype(np.int64)).to(device)[None]
            adapt = bool(h.ttt_steps and c1 < e and not facts["cut_short"])
            model.train(adapt)
            with torch.set_grad_enabled(adapt), autocast:
                losses = model(x, y, reduction="none").float()
            sums.extend(window_sums(losses.detach(), x, y, torch.tensor([c0 - w0], device=device), luts).tolist())
            facts["chunks"] += 1
            if not adapt or adaptation_stopped(facts, h, t0, log, f"{facts['chunks']} chunks"):
                continue
            for step in range(h.ttt_steps):
                if step:
                    with autocast:
                        losses = model(x, y, reduction="none").float()
                losses[0, c0 - w0:].mean().backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            facts["adapted"] += 1
    detach_lora(model)


def eval_flops(model: "GPT", h: "Hyperparameters", val_targets: int, facts: dict | None) -> float:
    """Matmul FLOPs of the final evaluation: 2 per weight per token forward over every window (sliding windows see
    each token about EVAL_SEQ_LEN/EVAL_STRIDE times), plus attention; TTT adds 4 per weight per trained token."""
    weights = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and n != "tok_emb.weight")
    weights = weights * len(model.layer_order()) / max(len(model.blocks), 1) + model.cfg.vocab_size * model.cfg.model_dim
    per_token = 2 * weights + 2 * len(model.layer_order()) * h.eval_seq_len * model.cfg.model_dim
    forward_tokens = val_targets * max(h.eval_seq_len / h.eval_stride, 1) if h.ttt != "lora" else \
        val_targets * max(h.eval_seq_len / h.ttt_chunk_tokens, 1)
    trained = val_targets * h.ttt_steps if h.ttt != "0" and facts else 0
    return per_token * forward_tokens + 2 * per_token * trained


H100_BF16_DENSE_FLOPS = 989e12  # per GPU, the SXM card's dense bf16 figure; estimates assume 40% of it


# ----------------------------------------------------------------------------- main

def finish_run(t: Trainer) -> dict:
    """After training: the raw weights on disk first, then the last validation, GPTQ's calibration (counted as
    training), the artifact chosen and written, and its score. If anything fails from here on, the log says where the
    trained weights are and how to score them."""
    h, rt = t.h, t.rt
    state = t.float_state()
    if rt.is_main:
        save_tensors(t.raw_path, state, {"config": t.shipped_config(), "run_id": t.run_id, "scoring": scoring_settings(h)})
    try:
        t.set_qat(0)  # fake quantization is training's: validation, calibration, the artifact and its score see the weights as stored
        t.validate()
        hessians = None
        if t.calibrating:
            before = t.train_time_ms
            t.start_clock()
            hessians = calibrate(t.model, t.loader, h, rt)
            t.pause_clock()
            t.log(f"calibration: {h.gptq_batches} batches ({h.gptq_batches * h.train_batch_tokens // 8 * rt.world_size} tokens) "
                  f"in {t.train_time_ms - before:.0f}ms; train_time with calibration: {t.train_time_ms:.0f}ms")
        t.log(f"peak memory: {peak_memory_mib(rt.device):.0f} MiB ({'cuda allocated' if rt.device.type == 'cuda' else 'process max RSS'})")
        spec = write_artifact(t, state, hessians)
        return final_lines(t, t.artifact_path, spec, t.artifact_path.stat().st_size, {
            "run_id": t.run_id, "seed": h.seed, "steps": t.step, "iterations": h.iterations,
            "train_time_ms": round(t.train_time_ms), "val_history": t.val_history, "train_history": t.train_history,
            "pre_quant_val_loss": t.val_history[-1]["val_loss"], "pre_quant_val_bpb": t.val_history[-1]["val_bpb"]})
    except BaseException:
        t.log(f"the trained weights are saved in {t.raw_path}: score them with `python -m tools score {t.raw_path} "
              f"--data {h.data_path}`, or pack them with `python -m tools pack`")
        raise


def write_artifact(t: Trainer, state: dict, hessians) -> str:
    """Rank 0 chooses and writes the artifact (held-out training tokens score the ARTIFACT=auto candidates); every
    process learns its scheme, or that none fits."""
    h, rt, spec = t.h, t.rt, [""]
    heldout = t.loader.stream.take(h.artifact_eval_tokens + 1)  # the same tokens on every process
    seq = min(h.train_seq_len, len(heldout) - 1)
    def heldout_loss(weights: dict) -> float:
        t.model.load_state_dict(weights)
        return evaluate(t.model, heldout, t.luts, seq, seq, h.eval_batch_seqs, rt.device, rt.autocast)[0]
    try:
        if rt.is_main:
            blob, scheme = choose_artifact({k: v.to(rt.device) for k, v in state.items()}, t.shipped_config(), h,
                                           len(t.code), hessians, heldout_loss, t.log)
            atomic_write(t.artifact_path, blob)
            spec[0] = scheme.spec
    finally:
        t.model.load_state_dict(state)
        if rt.world_size > 1:
            dist.broadcast_object_list(spec, src=0)  # "" when rank 0 found none (it raises its own error)
    if not spec[0]:
        raise GolfError("rank 0 found no artifact scheme that fits (see its error)")
    return spec[0]


def final_lines(t: Trainer, artifact: Path, spec: str, artifact_bytes: int, summary: dict) -> dict:
    """The final lines: sizes, then the score of the artifact as read back from disk; the summary file."""
    h, rt = t.h, t.rt
    code_bytes = len(t.code)
    total = artifact_bytes + code_bytes
    t.log(f"artifact scheme: {spec} file: {artifact}")
    t.log(f"Code size: {code_bytes} bytes")
    t.log(f"Serialized model {spec}: {artifact_bytes} bytes")
    t.log(f"Total submission size {spec}: {total} bytes (margin to {h.size_cap_bytes}: {h.size_cap_bytes - total} bytes)")
    roundtrip_state, meta = read_artifact(artifact)
    if not h.eval_artifact and meta.get("config") != t.shipped_config():
        raise GolfError(f"internal: {artifact} records another model config than the run's")
    t.model.load_state_dict(roundtrip_state)  # what is scored (and what TTT starts from) is the artifact
    ttt = f" ttt:{h.ttt} chunk:{h.ttt_chunk_tokens} steps:{h.ttt_steps}" if h.ttt != "0" else ""
    t.log(f"final eval: sliding window eval_seq_len:{h.eval_seq_len} eval_stride:{h.eval_stride} doc_eval:{int(h.doc_eval)}"
          f"{ttt} on the round-trip model")
    t.sync()
    t0 = time.perf_counter()
    val_loss, val_bpb, facts = final_score(t.model, t.compiled, t.val_tokens, t.luts, h, rt, t.log)
    t.sync()
    eval_ms = 1000 * (time.perf_counter() - t0)
    flops = eval_flops(t.model, h, len(t.val_tokens) - 1, facts)
    h100_s = flops / (8 * 0.4 * H100_BF16_DENSE_FLOPS)
    t.log(f"eval budget: {eval_ms / 1000:.1f}s on this machine; estimated {h100_s:.3g}s on 8xH100 "
          f"({flops:.3g} FLOPs at 40% of the H100's dense bf16 peak); limit 600s"
          + (f"; ttt adapted {facts['adapted']} of {facts['chunks']} chunks"
             + (" (CUT SHORT by EVAL_TIME_CAP_SECONDS)" if facts["cut_short"] else "") if facts else ""))
    t.log(f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms:.0f}ms")
    t.log(f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    if not math.isfinite(val_loss):
        raise GolfError(f"the round-trip score of {artifact} is not finite (val_loss {val_loss}): " + ("TTT diverged" if ttt else "the weights are broken"))
    summary.update({
        "val_loss": val_loss, "val_bpb": val_bpb, "eval_time_ms": round(eval_ms), "eval_seq_len": h.eval_seq_len,
        "eval_stride": h.eval_stride, "eval_estimate_8xh100_s": round(h100_s, 1), "ttt": facts,
        "artifact": os.path.relpath(artifact, t.out), "artifact_scheme": spec,
        "bytes_code": code_bytes, "bytes_model": artifact_bytes, "bytes_total": total, "size_cap_bytes": h.size_cap_bytes,
        "over_budget": total > h.size_cap_bytes, "hparams": {f.name.upper(): str(getattr(h, f.name)) for f in fields(h)},
        "hardware": hardware_line(rt), "model_params": sum(p.numel() for p in t.model.parameters())})
    if rt.is_main:
        atomic_write(t.summary_path, json.dumps(summary, indent=1, allow_nan=False).encode())
    if total > h.size_cap_bytes:  # last, after everything is written: the run's figures are kept, but it is not a submission
        t.log(f"OVER BUDGET: the submission is {total - h.size_cap_bytes} bytes over the {h.size_cap_bytes}-byte cap")
    return summary


def recorded_scoring(metadata: dict, what: str) -> dict:
    """The scoring settings a model file's metadata records (empty for files written before they were recorded)."""
    recorded = metadata.get("scoring", {})
    names = {f.name.upper() for f in fields(Hyperparameters) if f.metadata["part"] == "eval"}
    if not (isinstance(recorded, dict) and set(recorded) <= names and all(isinstance(v, str) for v in recorded.values())):
        raise GolfError(f"{what}: its recorded scoring settings are malformed")
    return recorded


def artifact_scoring(path) -> dict:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise GolfError(f"EVAL_ARTIFACT={path}: cannot read it: {e.strerror}") from None
    return recorded_scoring(inflate_artifact(blob, str(path))[1], str(path))


def main() -> int:
    rt = None
    try:
        h = Hyperparameters.from_env()
        if h.eval_artifact:  # scored as its run scored it, unless the environment says otherwise
            h = Hyperparameters.from_env(recorded=artifact_scoring(h.eval_artifact))
        rt = setup_runtime(h)
        summary = Trainer(h, rt).run()
        if rt.world_size > 1:  # no process tears the group down while another still works (gloo aborted so)
            dist.barrier()
        return 3 if summary["over_budget"] else 0
    except GolfError as e:
        prefix = f"[rank {rt.rank}] " if rt and rt.world_size > 1 else ""
        print(f"{prefix}error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
