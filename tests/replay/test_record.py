"""The recorder itself: a real worker on SQLite writes histories that replay (cache on/off)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapeflow._definition import definition_of
from tapeflow.history import decode_events
from tests.replay import record
from tests.replay.test_golden import verify


@pytest.mark.parametrize("cache_size", [1000, 0], ids=["cache", "nocache"])
async def test_recordings_replay_and_end_as_expected(tmp_path: Path, cache_size: int) -> None:
    chosen = [r for r in record.RECORDINGS if r.name in {"saga_compensated", "gives_up"}]
    histories = await record.run_recordings(chosen, cache_size=cache_size, timeout=30)
    record.write(chosen, histories, tmp_path)
    manifest = json.loads((tmp_path / record.MANIFEST).read_text())
    assert manifest == {
        "gives_up.json": "tests.replay.workflows:gives_up",
        "saga_compensated.json": "tests.replay.workflows:saga",
    }
    for recording in chosen:
        history = decode_events((tmp_path / f"{recording.name}.json").read_text())
        assert history == histories[recording.name]
        verify(definition_of(recording.workflow, "workflow"), recording.name, history)


def test_every_recording_has_a_golden_file() -> None:
    manifest = json.loads((record.HISTORIES / record.MANIFEST).read_text())
    for recording in record.all_recordings():
        assert manifest.get(f"{recording.name}.json") == recording.target, recording.name


def test_the_recorder_lists_its_recordings(capsys: pytest.CaptureFixture[str]) -> None:
    assert record.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "order_pipeline" in out
    assert "tests.replay.workflows:saga" in out
