"""golf's user commands, run from the repository root: `python -m tools` lists them, `python -m tools COMMAND --help`
says how to use one. artifacts/: pack, fit, score, inspect and sample a model; runs/: logs, sweeps, plots and record
folders; common.py: what every command shares."""
