"""tapeflow's benchmark suite: ``./scripts/bench`` (see ``python -m benchmarks --help``).

Not part of the test run; ``tests/test_benchmarks_smoke.py`` checks it runs with tiny sizes.
"""
