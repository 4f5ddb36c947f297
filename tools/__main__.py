"""`python -m tools COMMAND [ARGS...]`: run one of golf's user commands (from the repository root); without a command,
list them with the first line of each one's docstring.

A command is a module of tools/artifacts/ or tools/runs/ with a main(argv); `python -m tools.artifacts.pack ...` runs
the same thing. Under torchrun: `torchrun --standalone --nproc_per_node=2 -m tools score MODEL --data DIR`.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from tools.common import run_cli

HERE = Path(__file__).resolve().parent
GROUPS = {"artifacts": "a model file: artifact, raw weights or training checkpoint",
          "runs": "runs: logs, sweeps, plots, record folders"}


def commands() -> dict[str, Path]:
    """{command name: module file}, in group order, then by name."""
    found = {}
    for group in GROUPS:
        for path in sorted((HERE / group).glob("*.py")):
            if not path.name.startswith("_") and "def main(" in path.read_text():
                found[path.stem] = path
    return found


def summary(path: Path) -> str:
    """The first line of a module's docstring, read without importing it (importing may load torch)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def index() -> str:
    lines = ["usage: python -m tools COMMAND [ARGS...]   (python -m tools COMMAND --help for its options)", ""]
    cmds = commands()
    for group, what in GROUPS.items():
        lines.append(f"{group} ({what}):")
        for name, path in cmds.items():
            if path.parent.name == group:
                lines.append(f"  {name:<17} {summary(path)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(index())
        return 0
    name, rest = argv[0], argv[1:]
    cmds = commands()
    if name not in cmds:
        print(f"error: no command {name!r}; the commands are: {', '.join(cmds)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"tools.{cmds[name].parent.name}.{name}")
    sys.argv[0] = f"python -m tools {name}"  # what argparse shows as the program name
    return run_cli(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
