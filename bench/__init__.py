"""Benchmarks: bench_train (training throughput and share of the matmul peak), bench_pack (packing schemes on a
checkpoint), bench_fused_ce (the Triton cross-entropy against the reference). Run from the repository root, e.g.
`python -m bench.bench_train`."""
