"""PostgreSQL: a start or a keyed send that races another transaction doing the same waits
for it, then settles by what that transaction did: the winner's run is found (or made, if
the winner rolled back), and a key is used once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import psycopg
import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.backends.base import NewWorkflow
from tapeflow.backends.plan import new_workflow_json
from tapeflow.history import EventReceived, encode_event
from tests.conftest import POSTGRES_URL


@workflow.defn
async def tally(expected: int) -> list[int]:
    votes: list[int] = []
    workflow.on_event("vote", votes.append, type=int)
    await workflow.wait_condition(lambda: len(votes) >= expected)
    return votes


async def _in_flight(postgres_url: str) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    """A connection in an open transaction on the backend's schema."""
    schema = postgres_url.rpartition("schema=")[2]
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_URL, options=f"-c search_path={schema}"
    ) as conn:
        yield conn


async def _blocked(task: asyncio.Task[object]) -> None:
    await asyncio.sleep(0.3)
    assert not task.done()


@pytest.mark.parametrize("winner_commits", [True, False])
async def test_a_start_racing_an_uncommitted_start_settles_by_its_outcome(
    postgres_url: str, winner_commits: bool
) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        await tapeflow.Client(backend).start_workflow(tally, 0, id="warm")  # schema made
        winner = NewWorkflow("raced", "tally", "", [1], None)
        start = json.dumps([{**new_workflow_json(winner), "use_existing": False}])
        async for conn in _in_flight(postgres_url):
            async with conn.transaction(force_rollback=not winner_commits):
                await conn.execute("SELECT start_runs(%s::json, '[]')", [start])
                loser = asyncio.create_task(
                    tapeflow.Client(backend).start_workflow(
                        tally, 1, id="raced", id_conflict="use_existing", start_event=("vote", 2)
                    )
                )
                await _blocked(loser)  # on the winner's row, not yet visible to it
        handle = await asyncio.wait_for(loser, 5)
        assert (handle.run_id == winner.run_id) is winner_commits
        record = await backend.get_workflow("raced")
        assert (record.run_id, record.previous_run_id) == (handle.run_id, None)
        async with tapeflow.Worker(backend, workflows=[tally]):
            assert await handle.result(timeout=10) == [2]  # the loser's event reached it


@pytest.mark.parametrize("first_commits", [True, False])
async def test_a_keyed_send_racing_an_uncommitted_one_delivers_once(
    postgres_url: str, first_commits: bool
) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        handle = await client.start_workflow(tally, 1, id="voting")
        first = encode_event(EventReceived(name="vote", payload=1))
        async for conn in _in_flight(postgres_url):
            async with conn.transaction(force_rollback=not first_commits):
                await conn.execute("SELECT send_event('voting', %s::json, 'k')", [first])
                second = asyncio.create_task(
                    client.send_event("voting", "vote", 2, idempotency_key="k")
                )
                await _blocked(second)  # on the first's key
        await asyncio.wait_for(second, 5)
        async with tapeflow.Worker(backend, workflows=[tally]):
            assert await handle.result(timeout=10) == [1 if first_commits else 2]


async def test_a_start_waiting_on_a_run_that_continues_as_new_finds_the_next_run(
    postgres_url: str,
) -> None:
    """start_run (a start that create_runs did not make) locks the run it saw: if that run
    continued as new meanwhile, the run to use is the next one, made by the same commit."""
    async with tapeflow.connect(postgres_url) as backend:
        first = await tapeflow.Client(backend).start_workflow(tally, 1, id="looping")
        following = NewWorkflow("looping", "tally", "", [1], None, id_reuse="allow")
        vote = encode_event(EventReceived(name="vote", payload=3))
        late = NewWorkflow("looping", "tally", "", [1], None, events=(vote,))
        start = json.dumps({**new_workflow_json(late), "use_existing": True})
        async for committing in _in_flight(postgres_url):
            async for starting in _in_flight(postgres_url):
                async with committing.transaction():  # a commit continuing the run as new
                    await committing.execute(
                        "UPDATE workflows SET status = 'continued_as_new' WHERE run_id = %s",
                        [first.run_id],
                    )
                    await committing.execute(
                        "SELECT create_runs(%s::json)",
                        [json.dumps([new_workflow_json(following)])],
                    )
                    found = asyncio.create_task(
                        starting.execute("SELECT start_run(%s::json)", [start])
                    )
                    await _blocked(found)  # on the run it saw, which is ending
                cursor = await asyncio.wait_for(found, 5)
                assert await cursor.fetchone() == (["found", following.run_id, "tally", "pending"],)
        async with tapeflow.Worker(backend, workflows=[tally]):
            handle = tapeflow.Client(backend).get_handle("looping")
            assert await handle.result(timeout=10) == [3]
