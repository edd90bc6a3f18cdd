"""User code that raises what stops processes is a failure of its task, never of the worker.

In workflow code, a BaseException outside Exception (SystemExit, KeyboardInterrupt, one of
the user's own) fails the workflow task: it is shown as the task's error and retried with
backoff, and the workflow goes on once the code stops raising. In an activity it is a
failed attempt under the retry policy. Either way the worker stays up for everything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

import tapeflow
from tests.conformance._bystanders import bystanders_finish, start_bystanders
from tests.conformance._waiting import task_error_of
from tests.conformance.process_activities import dies_on_first_attempt, exits_in_child
from tests.conftest import WorkerFactory
from tests.scenarios.hostile import double, steady
from tests.scenarios.journal import new_journal
from tests.scenarios.poison import (
    POISONS,
    cancels_itself,
    exits,
    melts_down,
    raises_once,
    runs_poisoned_activity,
)
from tests.scenarios.retries import Outcome


@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_a_base_exception_in_workflow_code_fails_the_task_not_the_worker(
    client: tapeflow.Client, worker: WorkerFactory, poison: str
) -> None:
    async with worker(workflows=[raises_once, steady], activities=[double]):
        handle = await client.start_workflow(
            raises_once, poison, id=f"poisoned-{poison}-{uuid.uuid4().hex[:8]}"
        )
        error = await task_error_of(client, handle.id)
        record = await handle.describe()
        # The worker that ran the poisoned task runs others...
        await bystanders_finish(await start_bystanders(client, poison))
        # ...and the task itself again, after its backoff, now that the code lets it through.
        assert await handle.result(timeout=10) == f"recovered from {poison}"
    assert error == (
        f"WorkflowInterrupted: workflow code raised {poison}: {poison} from workflow code"
    )
    assert (record.status, record.history_length) == (tapeflow.WorkflowStatus.PENDING, 0)
    assert (await handle.describe()).task_error is None


@pytest.mark.parametrize(
    ("activity", "error_type", "message"),
    [
        (exits, "SystemExit", "sys.exit on attempt 3"),
        (cancels_itself, "CancelledError", "CancelledError on attempt 3"),
        (melts_down, "Meltdown", "Meltdown on attempt 3"),
    ],
    ids=["sys.exit-in-sync", "CancelledError-in-async", "BaseException-in-async"],
)
async def test_a_base_exception_in_an_activity_is_a_failed_attempt(
    client: tapeflow.Client,
    worker: WorkerFactory,
    activity: Callable[..., object],
    error_type: str,
    message: str,
) -> None:
    name = activity.__name__
    with new_journal() as log:
        async with worker(
            workflows=[runs_poisoned_activity, steady],
            activities=[exits, cancels_itself, melts_down, double],
        ):
            handle = await client.start_workflow(runs_poisoned_activity, name, log.id)
            outcome = await handle.result(timeout=10)
            await bystanders_finish(await start_bystanders(client, name))
        assert log.attempts(name) == [1, 2, 3]
    assert outcome == Outcome(
        activity=name, error_type=error_type, error_message=message, attempt=3
    )


async def test_sys_exit_in_a_process_pool_activity_is_a_failed_attempt(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(
        workflows=[runs_poisoned_activity], activities=[exits_in_child], activity_executor="process"
    ):
        handle = await client.start_workflow(runs_poisoned_activity, "exits_in_child", "child")
        outcome = await handle.result(timeout=30)
    assert outcome == Outcome(
        activity="exits_in_child",
        error_type="SystemExit",
        error_message="child: sys.exit on attempt 3",
        attempt=3,
    )


async def test_a_pool_process_that_dies_fails_its_attempt_and_the_pool_goes_on(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """``os._exit`` in a process-pool activity breaks a plain pool for good; here the attempt
    fails, the next one runs in a fresh pool, and so do other activities after it."""
    async with worker(
        workflows=[runs_poisoned_activity],
        activities=[dies_on_first_attempt, exits_in_child],
        activity_executor="process",
    ):
        dying = await client.start_workflow(runs_poisoned_activity, "dies_on_first_attempt", "d")
        assert await dying.result(timeout=30) == Outcome(result="d: done on attempt 2")
        after = await client.start_workflow(runs_poisoned_activity, "exits_in_child", "after")
        assert (await after.result(timeout=30)).attempt == 3  # ran, in the fresh pool
