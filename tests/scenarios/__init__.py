"""The end-to-end scenarios as importable workflows and activities.

Each module holds one scenario's definitions; ``tests/conformance/test_<scenario>.py``
runs it against every backend, and golden histories are recorded from the same code. The
workflows are deterministic; activities take their behaviour (which step fails, how often)
from their inputs or from a per-test structure named by an id in their inputs.
"""
