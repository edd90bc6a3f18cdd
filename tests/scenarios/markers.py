"""A workflow that notes markers in its history: the smallest decision there is."""

from __future__ import annotations

from tapeflow import workflow
from tapeflow._engine.instance import running_instance


def note(name: str, details: object = None) -> None:
    """What ``workflow.side_effect`` and ``workflow.patched`` do underneath."""
    instance = running_instance()
    assert instance is not None, "only inside workflow code"
    instance.commands.record_marker(name, details)


@workflow.defn
async def noting(count: int) -> int:
    for n in range(count):
        note(f"step-{n}", {"n": n})
        await workflow.sleep(0.01)  # each in a task of its own
    return count
