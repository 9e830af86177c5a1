"""Pure-PyTorch references: the tests' oracle, the benchmarks' baseline, the fallback backend."""
