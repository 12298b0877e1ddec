"""Benchmarks and the planner-vs-original simulation: `python -m bench` (or `make bench`)."""
