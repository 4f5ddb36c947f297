"""A sweep spec (TOML, format in docs/sweeps.md): every key of every table checked for its type and range, the number
of runs counted before any run is built, then the expansion into runs. Used by tools/runs/sweep.py.

Every problem is one ToolError naming the file and the key, e.g.
    error: spec.toml: `nproc_per_node` is a string "x", expected an integer in [1, 1024]
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import common as C
from common import ToolError

# The most runs one spec may expand to. The biggest sweep in this repository has 26 runs; one run of the challenge's
# shape holds an 8-GPU node for 10 minutes, so 10,000 runs are ~1,700 node-hours, far beyond a sweep this driver is
# for (and ten times Slurm's default MaxArraySize of 1,001 array tasks). A count above it is a slip (an axis too
# many in [grid], a digit too many in [random] count) that would exhaust memory or hang while the runs were built:
# it is refused, with the count, before anything is built.
MAX_RUNS = 10_000
SPEC_MAX_BYTES = 1 << 20  # a spec is a few kilobytes of TOML; reading more is refused before it is read whole
MAX_NPROC_PER_NODE = 1024  # processes of one run on one node (torchrun); real nodes have 8-16 GPUs
MAX_DIGITS = 17  # significant digits of a sampled float: 17 already round-trip every double
MAX_NAME_CHARS = 100  # the sweep's folder name, with room under the 255-byte limit of a file name
SEED_RANGE = (0, 2**63 - 1)  # what train_gpt.py accepts for SEED

SPEC_KEYS = ("name", "script", "launcher", "nproc_per_node", "seeds", "base", "grid", "configs", "random")
RANDOM_KEYS = ("count", "seed", "params")
DISTS = ("uniform", "log_uniform", "int_uniform", "choice")
LAUNCHERS = ("torchrun", "python")
DRIVER_SET = ("OUT_DIR", "RUN_ID")


@dataclass
class Run:
    index: int
    name: str
    axes: dict[str, str]          # the values that vary (including SEED when seeds are given)
    env: dict[str, str]           # base + axes (what the run's environment adds, without OUT_DIR/RUN_ID)


@dataclass
class Spec:
    name: str
    path: Path
    base: dict[str, str]
    axes: list[str]
    runs: list[Run]
    script: str | None = None
    launcher: str = "torchrun"
    nproc_per_node: int = 1


@dataclass
class RandomParam:
    """One range of [random.params]: NAME = { <dist> = ARG, digits = D }."""
    name: str
    dist: str
    arg: list            # [low, high] for uniform, log_uniform, int_uniform; the values (env strings) for choice
    digits: int = 4


@dataclass
class RandomTable:
    count: int = 0
    seed: int = 0
    params: list[RandomParam] | None = None


@dataclass
class SpecTables:
    """A spec's tables after every key was checked; values are already environment strings."""
    name: str
    script: str | None
    launcher: str
    nproc_per_node: int
    base: dict[str, str]
    configs: list[dict[str, str]]
    grid: dict[str, list[str]]
    random: RandomTable
    seeds: list[int] | None


# --------------------------------------------------------------------------- types and ranges

def toml_kind(value) -> str:
    """How a TOML value's type reads in an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"an integer {value}" if abs(value) < 10**12 else "an integer"
    if isinstance(value, float):
        return f"a float {value!r}"
    if isinstance(value, str):
        return f"a string {json.dumps(value)}" if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def expect_int(value, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ToolError(f"`{key}` is {toml_kind(value)}, expected an integer in [{lo}, {hi}]")
    return value


def expect_text(value, key: str) -> str:
    """A non-empty string without control characters (it ends up in a command line or a generated script)."""
    if not isinstance(value, str) or not value or re.search(r"[\x00-\x1f\x7f]", value):
        raise ToolError(f"`{key}` is {toml_kind(value)}, expected a non-empty string without control characters")
    return value


def expect_table(value, key: str, example: str) -> dict:
    if not isinstance(value, dict):
        raise ToolError(f"`{key}` is {toml_kind(value)}, expected a table ({example})")
    return value


def expect_array(value, key: str, example: str) -> list:
    if not isinstance(value, list) or not value:
        kind = "an empty array" if value == [] else toml_kind(value)
        raise ToolError(f"`{key}` is {kind}, expected a non-empty array ({example})")
    return value


def refuse_unknown(table: dict, allowed, key: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        where = f"`{key}` has" if key else "the spec has"
        raise ToolError(f"{where} unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(allowed)})")


def env_name(name: str, key: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
        raise ToolError(f"`{key}`: {name!r} is not an UPPER_SNAKE_CASE environment variable name")
    return name


def env_value(value, key: str) -> str:
    """A TOML scalar as the environment string a run gets: booleans 1/0, floats by repr (finite only)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError(f"`{key}` is {value}, expected a finite number")
        return repr(value)
    if isinstance(value, str) and not re.search(r"[\x00-\x1f\x7f]", value):
        return value
    raise ToolError(f"`{key}` is {toml_kind(value)}, expected a string (without control characters), a number or a "
                    f"boolean")


def env_table(value, key: str, example: str) -> dict[str, str]:
    """A table of NAME = scalar lines as environment strings."""
    table = expect_table(value, key, example)
    return {env_name(k, key): env_value(v, f"{key}.{k}") for k, v in table.items()}


# --------------------------------------------------------------------------- the tables

def check_top(d: dict, default_name: str) -> tuple[str, str | None, str, int]:
    """name, script, launcher and nproc_per_node."""
    refuse_unknown(d, SPEC_KEYS, "")
    name = expect_text(d.get("name", default_name), "name")
    if len(name) > MAX_NAME_CHARS or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ToolError(f"`name` {name!r} must be 1-{MAX_NAME_CHARS} letters, digits, '.', '_', '-' (it names the "
                        f"sweep's folder)" + ("; the default is the file name" if "name" not in d else ""))
    script = expect_text(d["script"], "script") if "script" in d else None
    launcher = d.get("launcher", "torchrun")
    if launcher not in LAUNCHERS:
        raise ToolError(f"`launcher` is {toml_kind(launcher)}, expected \"torchrun\" or \"python\"")
    nproc = expect_int(d.get("nproc_per_node", 1), "nproc_per_node", 1, MAX_NPROC_PER_NODE)
    return name, script, launcher, nproc


def check_base(d: dict) -> dict[str, str]:
    base = env_table(d.get("base", {}), "base", "[base] with NAME = value lines")
    for k in DRIVER_SET:
        if k in base:
            raise ToolError(f"`base.{k}`: {k} is set by the driver for each run")
    return base


def check_grid(d: dict) -> dict[str, list[str]]:
    grid = expect_table(d.get("grid", {}), "grid", "[grid] with NAME = [v1, v2] lines")
    out = {}
    for k, values in grid.items():
        env_name(k, "grid")
        values = expect_array(values, f"grid.{k}", "NAME = [v1, v2]")
        out[k] = [env_value(v, f"grid.{k}[{i}]") for i, v in enumerate(values)]
    return out


def check_configs(d: dict) -> list[dict[str, str]]:
    configs = d.get("configs", [])
    if not isinstance(configs, list):
        raise ToolError(f"`configs` is {toml_kind(configs)}, expected an array of tables ([[configs]] tables)")
    return [env_table(c, f"configs[{i}]", "one [[configs]] table") for i, c in enumerate(configs)]


def check_seeds(d: dict) -> list[int] | None:
    if "seeds" not in d:
        return None
    seeds = expect_array(d["seeds"], "seeds", "seeds = [1, 2, 3]")
    return [expect_int(s, f"seeds[{i}]", *SEED_RANGE) for i, s in enumerate(seeds)]


def check_random_param(name: str, table, key: str) -> RandomParam:
    env_name(name, "random.params")
    table = expect_table(table, key, "NAME = { log_uniform = [1e-3, 1e-1] }")
    dists = [k for k in DISTS if k in table]
    if len(dists) != 1:
        raise ToolError(f"`{key}`: give exactly one of {', '.join(DISTS)}")
    dist = dists[0]
    refuse_unknown(table, (dist, "digits") if dist in ("uniform", "log_uniform") else (dist,), key)
    if dist == "choice":
        values = expect_array(table[dist], f"{key}.choice", "choice = [3, 5]")
        return RandomParam(name, dist, [env_value(v, f"{key}.choice[{i}]") for i, v in enumerate(values)])
    bounds = table[dist]
    number = int if dist == "int_uniform" else (int, float)
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, number) and not isinstance(b, bool)
                                                                  and math.isfinite(b) for b in bounds)):
        what = "integers" if dist == "int_uniform" else "finite numbers"
        raise ToolError(f"`{key}.{dist}` is {toml_kind(bounds)}, expected [low, high], two {what}")
    lo, hi = bounds
    if lo > hi:
        raise ToolError(f"`{key}.{dist}`: low {lo} > high {hi}")
    if dist == "log_uniform" and lo <= 0:
        raise ToolError(f"`{key}.log_uniform`: log_uniform needs low > 0, not {lo}")
    digits = expect_int(table.get("digits", 4), f"{key}.digits", 1, MAX_DIGITS)
    return RandomParam(name, dist, [lo, hi], digits)


def check_random(table) -> RandomTable:
    """[random]: count, seed and the [random.params] ranges."""
    table = expect_table(table, "random", "[random] with count, seed and [random.params]")
    refuse_unknown(table, RANDOM_KEYS, "random")
    count = expect_int(table.get("count", 0), "random.count", 0, 2**63 - 1)  # counted against MAX_RUNS with the rest
    seed = expect_int(table.get("seed", 0), "random.seed", -2**63, 2**63 - 1)
    params = expect_table(table.get("params", {}), "random.params", "NAME = { uniform = [low, high] } lines")
    if count and not params:
        raise ToolError("`random.params`: a count of samples needs a [random.params] table of ranges")
    return RandomTable(count, seed, [check_random_param(k, v, f"random.params.{k}") for k, v in params.items()])


def check_tables(d: dict, default_name: str) -> SpecTables:
    """Every key of every table of a parsed spec, checked for its type and range."""
    name, script, launcher, nproc = check_top(d, default_name)
    return SpecTables(name, script, launcher, nproc, check_base(d), check_configs(d), check_grid(d),
                      check_random(d.get("random", {})), check_seeds(d))


# --------------------------------------------------------------------------- counting and expanding

def count_runs(t: SpecTables) -> int:
    """configs x grid x random samples x seeds, each absent part counting as one: the most runs the spec expands to
    (identical configurations are one run), computed without building any of them."""
    n = max(len(t.configs), 1) * max(t.random.count, 1) * (len(t.seeds) if t.seeds is not None else 1)
    for values in t.grid.values():
        n *= len(values)
    return n


def _round_sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def sample_params(params: list[RandomParam], count: int, seed: int) -> list[dict[str, str]]:
    """`count` samples of the ranges, reproducible from `seed`."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        sample = {}
        for p in params:
            if p.dist == "choice":
                sample[p.name] = rng.choice(p.arg)
            elif p.dist == "int_uniform":
                sample[p.name] = str(rng.randint(p.arg[0], p.arg[1]))
            elif p.dist == "uniform":
                sample[p.name] = repr(_round_sig(rng.uniform(p.arg[0], p.arg[1]), p.digits))
            else:
                x = math.exp(rng.uniform(math.log(p.arg[0]), math.log(p.arg[1])))
                sample[p.name] = repr(_round_sig(x, p.digits))
        out.append(sample)
    return out


def too_many_runs(n: int) -> ToolError:
    return ToolError(f"expands to {n:,} runs, more than the {MAX_RUNS:,} one sweep may have (configs x grid x random "
                     f"count x seeds); split it into several specs")


def sample_random(spec_random: dict) -> list[dict[str, str]]:
    """The samples of a [random] table (checked and counted first)."""
    r = check_random(spec_random)
    if r.count > MAX_RUNS:
        raise too_many_runs(r.count)
    return sample_params(r.params, r.count, r.seed)


def run_name(axes: dict[str, str], env: dict[str, str]) -> str:
    """Readable part from the axis values + 8 hex digits of the hash of the whole environment."""
    h = hashlib.sha1(json.dumps(env, sort_keys=True).encode()).hexdigest()[:8]
    clean = lambda v: re.sub(r"[^A-Za-z0-9.+-]", "_", v)  # noqa: E731
    readable = ""
    for k, v in axes.items():  # whole parts only, so no value is ever shown cut
        part = k.lower() + clean(v)
        if k != "SEED" and len(readable) + len(part) < 56:
            readable = f"{readable}-{part}" if readable else part
    if "SEED" in axes:
        readable = (readable + "-" if readable else "") + "s" + clean(axes["SEED"])
    return f"{readable or 'run'}-{h}"


def axis_owners(t: SpecTables, parts: dict[str, list[dict[str, str]]]) -> list[str]:
    """The axes (variables that vary), in order; a variable set by two parts is refused."""
    owners: dict[str, str] = {}
    for label, dicts in parts.items():
        for k in dict.fromkeys(k for p in dicts for k in p):
            if k in owners:
                raise ToolError(f"{k} is set by both {owners[k]} and {label}")
            owners[k] = label
    if t.seeds is not None and "SEED" in owners:
        raise ToolError(f"SEED is set by both seeds and {owners['SEED']}")
    return list(owners) + (["SEED"] if t.seeds is not None else [])


def build_runs(t: SpecTables) -> tuple[list[str], list[Run]]:
    """The axes and the runs: configs x grid x random samples x seeds, identical configurations once."""
    grid_parts = [dict(zip(t.grid, combo)) for combo in itertools.product(*t.grid.values())]
    rnd_parts = sample_params(t.random.params, t.random.count, t.random.seed)
    parts = {"[[configs]]": t.configs, "[grid]": grid_parts, "[random]": rnd_parts}
    axes = axis_owners(t, parts)
    runs, seen = [], set()
    for c, g, r in itertools.product(t.configs or [{}], grid_parts or [{}], rnd_parts or [{}]):
        for s in (t.seeds if t.seeds is not None else [None]):
            values = {**c, **g, **r, **({"SEED": str(s)} if s is not None else {})}
            ax = {k: values[k] for k in axes if k in values}
            env = {**t.base, **ax}
            name = run_name(ax, env)
            if name not in seen:  # identical configuration listed twice: one run
                seen.add(name)
                runs.append(Run(len(runs), name, ax, env))
    return axes, runs


def check_setting_names(names) -> None:
    """The rule train_gpt.py applies at start-up: a name close to a setting, or a record-only setting, is refused."""
    import train_gpt
    try:
        train_gpt.check_setting_names({k: "" for k in names})
    except train_gpt.GolfError as e:
        raise ToolError(str(e)) from None


def expand_spec(d: dict, path: Path | str = "<spec>") -> Spec:
    """A parsed spec's runs, after every key was checked and their number counted against MAX_RUNS; every problem is
    one ToolError that names the file."""
    path = Path(path)
    try:
        t = check_tables(d, path.stem)
        n = count_runs(t)
        if n > MAX_RUNS:
            raise too_many_runs(n)
        axes, runs = build_runs(t)
        if t.script is None:  # train_gpt.py: the names it would refuse are refused here, before anything runs
            check_setting_names(set(t.base) | set(axes))
    except ToolError as e:
        raise ToolError(f"{path}: {e}") from None
    return Spec(t.name, path, t.base, axes, runs, t.script, t.launcher, t.nproc_per_node)


def load_spec(path: str | Path) -> Spec:
    """Read (at most SPEC_MAX_BYTES), parse and expand a spec file."""
    p = Path(path)
    data = C.read_bounded(p, SPEC_MAX_BYTES, "sweep spec")
    try:
        d = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ToolError(f"{p}: not valid UTF-8") from None
    except RecursionError:
        raise ToolError(f"{p}: not valid TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as e:
        raise ToolError(f"{p}: not valid TOML ({e})") from None
    return expand_spec(d, p)
