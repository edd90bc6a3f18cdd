"""Patches: which branch a workflow takes where its code changed under running workflows.

A patch is a ``MarkerRecorded`` named ``"patch"`` whose details name the patch (``{"id":
"tax-v2"}``), not an event kind of its own: like a side effect's value, it is a fact the
code notes for its own replay, with a seq of its own, checked in order with the other
commands, and it writes nothing but history, so the commit plans, both backends and every
history reader already store and show it. Its name keeps it apart from other markers.

``patched(id)`` is decided once per run: on new execution (an activation past the end of
history) it is True and notes the marker as the next command; on replay it is True exactly
where the replayed task has that marker as its next command. A marker the code does not
match stays in the task's decisions and fails the replay check, naming the patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tapeflow._engine.commands import Commands
from tapeflow.history import Decision, MarkerRecorded

PATCH = "patch"
"""The name of the marker ``workflow.patched`` records."""


def patch_of(decision: Decision | None) -> str | None:
    """The id of the patch ``decision`` is the marker of, or None if it is none."""
    if not isinstance(decision, MarkerRecorded) or decision.name != PATCH:
        return None
    details = decision.details
    found = details.get("id") if isinstance(details, dict) else None
    return found if isinstance(found, str) else None


@dataclass(frozen=True)
class _Missed:
    """A patch decided on replay where history had no marker for it: the old branch."""

    patch_id: str
    seq: int
    deprecated: bool


class Patches:
    """The patches one run has decided, and the replayed task's decisions to decide by."""

    def __init__(self, commands: Commands) -> None:
        self._commands = commands
        self._decided: dict[str, bool] = {}
        self._recorded: Mapping[int, Decision] | None = None
        self._missed: list[_Missed] = []
        """This activation's patches decided on replay with no marker in history."""

    def begin(self, recorded: Mapping[int, Decision] | None) -> None:
        """An activation begins: the decisions history has for it by seq, or None if it
        is new execution (past the end of history)."""
        self._recorded = recorded
        self._missed = []

    def patched(self, patch_id: str) -> bool:
        """Whether to take the new branch (see ``workflow.patched``)."""
        if patch_id in self._decided:
            return self._decided[patch_id]
        taken = self._recorded is None or self._marked(patch_id)
        if taken:
            self._commands.record_marker(PATCH, {"id": patch_id})
        else:
            self._missed.append(_Missed(patch_id, self._commands.next_seq, deprecated=False))
        self._decided[patch_id] = taken
        return taken

    def deprecate(self, patch_id: str) -> None:
        """The new branch from here on; a marker for it at this point in history is
        matched (re-decided on replay, so the task's decisions stay those of history),
        and nothing is recorded on new execution."""
        if patch_id in self._decided:
            return
        if self._recorded is not None and self._marked(patch_id):
            self._commands.record_marker(PATCH, {"id": patch_id})
        elif self._recorded is not None:
            self._missed.append(_Missed(patch_id, self._commands.next_seq, deprecated=True))
        self._decided[patch_id] = True

    def _marked(self, patch_id: str) -> bool:
        assert self._recorded is not None
        return patch_of(self._recorded.get(self._commands.next_seq)) == patch_id

    def missed(self, upto: int | None = None) -> list[str]:
        """Notes for a non-determinism error at seq ``upto`` (None: at the end): the
        patches this task replayed with no marker in history up to there, whose old
        branch (or a deprecation too early) may be what went astray. Those of earlier
        tasks are left out: every later error of an old history would name them."""
        return [
            f"history has no marker for the deprecated patch {m.patch_id!r} at seq {m.seq} "
            "(a history from before the patch needs its old branch)"
            if m.deprecated
            else f"workflow.patched({m.patch_id!r}) was False at seq {m.seq} "
            "(history has no marker for it there: the old branch)"
            for m in self._missed
            if upto is None or m.seq <= upto
        ]
