"""Fixtures shared by every test: a fresh backend per test, workers with fast test options.

They come from the conformance plugin (tests/conformance/plugin.py), parametrized over the
backends registered in tests/backends_registry.py."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.conformance.plugin", "tests.backends_registry")

from tests.backends_registry import POSTGRES_URL  # noqa: E402
from tests.conformance.plugin import WorkerFactory  # noqa: E402

__all__ = ["POSTGRES_URL", "WorkerFactory"]

pytest_plugins = [
    "tests.conformance.plugin",
    "tests.backends_registry",
    "pytester",
    "tapeflow.testing.pytest_plugin",  # as users enable it: the workflow_environment fixture
]
