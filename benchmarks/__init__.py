"""The benchmark scripts, run from the repository root as modules: `python -m benchmarks.train_step` (README.md)."""
