"""The shared module of every command, under the name the tools have always imported it by.

It lives at the repository root (common.py), below both data/ and tools/, so that data/ (an earlier stage of the data
flow) no longer borrows from tools/. Every name is re-exported here: `from tools import common as C` and
`from tools.common import ToolError, run_cli, ...` keep working unchanged.
"""
from __future__ import annotations

from common import *  # noqa: F401,F403  (every public name of common.py)
from common import REPO, TRAIN_GPT, _current_umask, _process_start_time, _refuse_constant  # noqa: F401

_TEMP_RE = TEMP_NAME_RE  # noqa: F405  (its name before it was exported)
