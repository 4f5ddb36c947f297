"""Fixtures every test module may use; the helpers they are built from are in tests/helpers.py. The `slow` marker
(registered in pyproject.toml) is on the end-to-end tests that run train_gpt.py or a tool on real runs:
`python -m pytest -m "not slow" tests` leaves them out.

The session runs with one thread per process unless OMP_NUM_THREADS says otherwise (set before torch is imported):
every command a test starts already does (helpers.subprocess_env), and a test process spinning two OpenMP threads
against those processes on two cores made single in-process tests 10-30x slower."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import TRAIN_GPT, make_byte_dataset, run_train, tiny_env, tiny_trained_env  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny pure-byte dataset (two train shards, one val shard), shared by every test: copy it before changing it."""
    return make_byte_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_trained(tiny_data, tmp_path_factory) -> tuple[Path, Path, str]:
    """(dataset dir, run dir, stdout) of one tiny train_gpt.py run with checkpoints, an int6+brotli artifact and the
    raw weights (RUN_ID=tiny: logs/tiny.txt, logs/tiny.json, models/tiny.ptz, models/tiny.safetensors,
    checkpoints/tiny/step_000003.ckpt and step_000006.ckpt), with helpers.TINY_TRAINED's settings
    (helpers.tiny_trained_env gives them to a run that resumes or rescores it). BF16 stays auto: the tools' defaults
    must reproduce the run's choice. Tests that need a finished run's files copy them (helpers.copy_of_run)."""
    run = tmp_path_factory.mktemp("tiny_run")
    result = run_train(tiny_trained_env(tiny_data, run))
    assert result.returncode == 0, result.stderr[-3000:]
    return tiny_data, run, result.stdout


@pytest.fixture(scope="session")
def no_scheme_fits(tiny_data, tmp_path_factory) -> tuple[Path, int, subprocess.CompletedProcess]:
    """(run dir, cap, result) of a tiny 2-step run (RUN_ID=huge) whose SIZE_CAP_BYTES no artifact scheme can meet:
    the code as it ships plus 2,000 bytes. It fails after training; test_artifact_choice reads how it refused,
    test_nothing_lost what it kept."""
    import train_gpt as tg

    run = tmp_path_factory.mktemp("no_fit")
    cap = len(tg.shipped_code(TRAIN_GPT.read_bytes())) + 2000
    result = run_train(tiny_env(tiny_data, run, RUN_ID="huge", ITERATIONS=2, VAL_LOSS_EVERY=0, SIZE_CAP_BYTES=str(cap)))
    return run, cap, result


def _dead_pid() -> int:
    """A pid that no process has."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
            pid += 1
        except ProcessLookupError:
            return pid


@pytest.fixture(scope="session")
def failed_starts_then_a_run(tiny_data, tmp_path_factory) -> dict:
    """One folder where RUN_ID=fixme fails to start twice, then runs: first with a bad input (VOCAB_SIZE=1024), then
    with a log that cannot be written (files over 16 KiB refused, as on a full disk); then, with temporary files of a
    dead process and of this live one left in its folders, a 2-step run of the same RUN_ID. What each start left is
    recorded as it happened: test_run_safety (bad input, stale temporaries) and test_nothing_lost (the log) read it."""
    import resource

    import train_gpt as tg

    out = tmp_path_factory.mktemp("fixme")
    log = out / "logs" / "fixme.txt"
    env = tiny_env(tiny_data, out, RUN_ID="fixme", ITERATIONS=2, VAL_LOSS_EVERY=0)
    facts: dict = {"out": out}
    facts["bad_input"] = run_train({**env, "VOCAB_SIZE": "1024"})
    facts["log_after_bad_input"] = log.exists()
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))  # noqa: E731
    facts["no_room"] = subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, capture_output=True, text=True,
                                      timeout=300, cwd=out, preexec_fn=limit)
    facts["log_after_no_room"] = log.exists()
    dead = _dead_pid()
    for folder in ("logs", "models", "checkpoints/fixme"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    facts["stale"] = [out / "models" / f".x.ptz.tmp-{tg.HOST}-{dead}-ab12",
                      out / "checkpoints" / "fixme" / f".step_000002.ckpt.tmp-{tg.HOST}-{dead}-cd34"]
    facts["alive"] = out / "models" / f".y.ptz.tmp-{tg.HOST}-{os.getpid()}-ef56"  # this process is alive: kept
    for p in facts["stale"] + [facts["alive"]]:
        p.write_bytes(b"half-written")
    facts["run"] = run_train(env)
    return facts
