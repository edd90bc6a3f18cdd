"""A deploy that patches a workflow while runs of it wait: each run keeps the branch its
history took. The worker of the old code stops; a worker of the new code (a new process
after a deploy, with nothing cached) replays the waiting run down the old branch, while
a run started on the new code takes the new one. Rolling back under a patched run fails
its task naming the patch, and nothing is lost."""

from __future__ import annotations

import tapeflow
from tapeflow import activity, testing, workflow
from tapeflow.history import ActivityCompleted, ActivityScheduled, HistoryEvent, MarkerRecorded
from tests.conformance._waiting import history, history_has, task_error_of
from tests.conftest import WorkerFactory


@activity.defn
def tax_v1(amount: int) -> int:
    return amount // 10


@activity.defn
def tax_v2(amount: int) -> int:
    return amount // 5


@activity.defn
def charge(amount: int) -> str:
    return f"charged {amount}"


ACTIVITIES = [tax_v1, tax_v2, charge]


@workflow.defn(name="checkout")
async def checkout_v1(amount: int) -> str:
    tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(charge, amount + tax)


@workflow.defn(name="checkout")
async def checkout_v2(amount: int) -> str:
    if workflow.patched("tax-v2"):
        tax = await workflow.execute_activity(tax_v2, amount)
    else:
        tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(charge, amount + tax)


async def taxed(client: tapeflow.Client, workflow_id: str) -> None:
    """Wait until the workflow has its tax and waits to be paid."""
    await history_has(client, workflow_id, lambda e: isinstance(e, ActivityCompleted))


def steps(events: list[HistoryEvent]) -> list[str]:
    """What the history decided, in order: the patches' markers and the activities."""
    return [
        f"patch {e.details['id']}" if isinstance(e, MarkerRecorded) else e.name
        for e in events
        if isinstance(e, MarkerRecorded | ActivityScheduled)
    ]


async def test_a_run_waiting_across_a_patch_keeps_its_branch_and_new_runs_take_the_new(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[checkout_v1], activities=ACTIVITIES):
        old = await client.start_workflow(checkout_v1, 100, id="checkout-old")
        await taxed(client, old.id)
    saved = await old.history()
    testing.replay(checkout_v2, saved)  # what CI checks before the deploy

    async with worker(workflows=[checkout_v2], activities=ACTIVITIES):
        await old.send_event("paid")
        assert await old.result(timeout=20) == "charged 110"  # tax_v1's 10
        new = await client.start_workflow(checkout_v2, 100, id="checkout-new")
        await new.send_event("paid")
        assert await new.result(timeout=20) == "charged 120"  # tax_v2's 20

    assert steps(await history(client, old.id)) == ["tax_v1", "charge"]
    assert steps(await history(client, new.id)) == ["patch tax-v2", "tax_v2", "charge"]
    for handle in (old, new):
        assert testing.replay(checkout_v2, await handle.history()).finished


async def test_rolling_back_under_a_patched_run_fails_its_task_naming_the_patch(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[checkout_v2], activities=ACTIVITIES):
        handle = await client.start_workflow(checkout_v2, 100, id="checkout-patched")
        await taxed(client, handle.id)
    before = await handle.history()

    async with worker(workflows=[checkout_v1], activities=ACTIVITIES):
        await handle.send_event("paid")
        error = await task_error_of(client, handle.id)
    assert "NonDeterminismError" in error
    assert "patch 'tax-v2'" in error
    assert await handle.history() == before

    async with worker(workflows=[checkout_v2], activities=ACTIVITIES):
        assert await handle.result(timeout=20) == "charged 120"
