"""Commands on runs: logparse (what a log says), plot_runs, sweep (many runs from a spec), record (a submission
folder from logs)."""
