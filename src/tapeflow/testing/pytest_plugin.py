"""The ``workflow_environment`` fixture: a factory of ``WorkflowEnvironment``, each entered
when made and closed when the test ends::

    async def test_a_year_of_payments(workflow_environment: EnvironmentFactory) -> None:
        env = await workflow_environment(workflows=[subscription], activities=[payment])
        handle = await env.client.start_workflow(subscription, inp)
        assert await handle.result() == ...

Enable it in your top-level ``conftest.py`` with
``pytest_plugins = ["tapeflow.testing.pytest_plugin"]`` (or ``-p tapeflow.testing.pytest_plugin``).
It is opt-in, not a ``pytest11`` entry point that every pytest run in the environment would
load: the fixture is async and needs pytest-asyncio, which tapeflow does not depend on,
and a library installed for its runtime should not add fixtures to (and import itself
into) the test runs of every project sharing its environment. It works in
pytest-asyncio's strict mode and in its auto mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tapeflow.testing._environment import WorkflowEnvironment

try:
    import pytest_asyncio
except ImportError as exc:  # pragma: no cover - depends on what the user installed
    raise ImportError(
        "tapeflow.testing.pytest_plugin needs pytest-asyncio: pip install pytest-asyncio"
    ) from exc

__all__ = ["EnvironmentFactory", "workflow_environment"]

EnvironmentFactory = Callable[..., Awaitable[WorkflowEnvironment]]
"""``await workflow_environment(**arguments)``: a running ``WorkflowEnvironment`` made
with these arguments."""


@pytest_asyncio.fixture
async def workflow_environment() -> AsyncIterator[EnvironmentFactory]:
    """Makes running environments for this test (as many as it asks for), closed after."""
    async with contextlib.AsyncExitStack() as running:

        async def start(**arguments: Any) -> WorkflowEnvironment:
            return await running.enter_async_context(WorkflowEnvironment(**arguments))

        yield start
