"""Benchmarks behind ``escx bench`` / ``make bench`` (see :mod:`escx.benchmark.suite`)."""
