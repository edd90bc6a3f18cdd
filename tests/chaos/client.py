"""A client process of the chaos workload, fed one command per line on stdin.

``python -m tests.chaos.client URL``; commands and their answers (one line each on stdout):

- ``start INDEX`` starts workflow ``chaos-INDEX``: ``ok``, ``exists`` (already started: a
  resend after a crash), ``unavailable ...`` or ``error ...``;
- ``event INDEX SEND_ID`` sends its event (a relay gets several): ``ok``, ``finished`` (the
  workflow has ended), ``unavailable ...`` or ``error ...``;
- ``late INDEX SEND_ID`` sends a "late" event (one the workflow does not wait for), with the
  same answers;
- ``cancel INDEX REASON`` and ``terminate INDEX REASON`` cancel or terminate it: ``ok``,
  ``finished`` (it had ended: refused), ``unavailable ...`` or ``error ...``.

It runs in a process of its own so that the client-side failpoints (``start_workflow``,
``send_event``, ``request_cancel``, ``impose_ending``) can kill it with a hard exit, as they
do a worker.
"""

from __future__ import annotations

import asyncio
import sys

import tapeflow
from tests.chaos.workload import (
    EVENT_NAME,
    LATE_EVENT_NAME,
    Go,
    event_value,
    start_args,
    workflow_for,
    workflow_id,
)


async def answer(client: tapeflow.Client, line: str) -> str:
    command, *args = line.split()
    try:
        if command == "start":
            index = int(args[0])
            try:
                await client.start_workflow(
                    workflow_for(index), *start_args(index), id=workflow_id(index)
                )
            except tapeflow.WorkflowAlreadyExists:
                return "exists"
            return "ok"
        if command in ("event", "late"):
            index, send_id = int(args[0]), args[1]
            name = EVENT_NAME if command == "event" else LATE_EVENT_NAME
            try:
                await client.send_event(
                    workflow_id(index), name, Go(send_id=send_id, value=event_value(index))
                )
            except tapeflow.WorkflowAlreadyCompleted:
                return "finished"
            return "ok"
        if command in ("cancel", "terminate"):
            handle = client.get_handle(workflow_id(int(args[0])))
            try:
                if command == "cancel":
                    await handle.cancel(reason=args[1])
                else:
                    await handle.terminate(reason=args[1])
            except tapeflow.WorkflowAlreadyCompleted:
                return "finished"
            return "ok"
        return f"error unknown command {command!r}"
    except tapeflow.BackendUnavailable as exc:
        return "unavailable " + str(exc).replace("\n", " ")[:200]
    except Exception as exc:
        return f"error {type(exc).__name__}: {exc}".replace("\n", " ")[:300]


async def serve(url: str) -> None:
    while True:  # the database may be away (a restart run): wait for it
        try:
            backend = await tapeflow.connect(url)
            break
        except Exception as exc:
            print(f"waiting for the database: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)
    try:
        client = tapeflow.Client(backend)
        print("ready", flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            if line.strip():
                print(await answer(client, line), flush=True)
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
