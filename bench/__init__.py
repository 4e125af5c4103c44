"""Benchmark harness of issue #8: our API against a raw-psycopg ceiling.

Run it with `make bench` (or `python -m bench.run --help`); see
docs/PERFORMANCE.md for the method and the latest results.
"""
