"""Benchmarks (not tests): scripts that time the solver and print Markdown tables."""
