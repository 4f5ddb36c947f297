"""Fixtures every test module may use; the helpers they are built from are in tests/helpers.py. The `slow` marker
(registered in pyproject.toml) is on the end-to-end tests that run train_gpt.py or a tool on real runs:
`python -m pytest -m "not slow" tests` leaves them out."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_byte_dataset, run_train, tiny_env


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny pure-byte dataset (two train shards, one val shard), shared by every test: copy it before changing it."""
    return make_byte_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_trained(tiny_data, tmp_path_factory) -> tuple[Path, Path, str]:
    """(dataset dir, run dir, stdout) of one tiny train_gpt.py run with a checkpoint, an int6+brotli artifact and the
    raw weights (RUN_ID=tiny: logs/tiny.txt, models/tiny.ptz, models/tiny.safetensors,
    checkpoints/tiny/step_000006.ckpt). BF16 stays auto: the tools' defaults must reproduce the run's choice."""
    run = tmp_path_factory.mktemp("tiny_run")
    result = run_train(tiny_env(tiny_data, run, ITERATIONS=6, WARMDOWN_ITERS=3, VAL_LOSS_EVERY=0, TRAIN_LOG_EVERY=3,
                                EVAL_BATCH_SEQS=8, COMPILE=0, CHECKPOINT_EVERY=6, ARTIFACT="int6+brotli"))
    assert result.returncode == 0, result.stderr[-3000:]
    return tiny_data, run, result.stdout

