"""Benchmarks that put numbers on proxyd's cost; see bench/README.md."""
