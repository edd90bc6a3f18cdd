"""Payload codecs: compression and AES-GCM under every stored payload, keys rotated, old
plain payloads still read, and a missing key a clear, retried failure, never a lost
workflow. End to end on each backend, the database's raw rows hold no plaintext."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import html
import json
import sqlite3
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from typer.testing import CliRunner, Result

import tapeflow
import tapeflow.ui
from tapeflow import activity, history, workflow
from tapeflow.backends._envelopes import ENCODED_MESSAGE, PAYLOAD_FIELDS, Envelopes
from tapeflow.cli import app
from tapeflow.codec import KEYS_VARIABLE, AesGcmCodec, ZlibCodec, is_envelope, parse_keys
from tapeflow.converter import to_json
from tapeflow.history import EventReceived, Failure, UpdateCompleted, UpdateRejected
from tests.conformance._waiting import eventually, has_run, history_has, task_error_of
from tests.ui.conftest import running

SECRET = "4111-1111-1111-1111"
K1, K2 = bytes(range(32)), bytes(range(32, 64))


def aes(**keys: bytes) -> AesGcmCodec:
    return AesGcmCodec(keys)


def keys_text(**keys: bytes) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items())


# -- the codecs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codecs",
    [[ZlibCodec()], [aes(k1=K1)], [ZlibCodec(), aes(k1=K1)]],
    ids=["zlib", "aesgcm", "zlib-then-aesgcm"],
)
@pytest.mark.parametrize("value", [None, 7, "é" * 50, [1, {"a": [True, 2.5]}], {"card": SECRET}])
def test_each_codec_round_trips_a_payload_as_a_json_envelope(codecs: list[Any], value: Any) -> None:
    envelopes = Envelopes(codecs)
    encoded = envelopes.encode(value)
    assert is_envelope(encoded)
    assert json.loads(json.dumps(encoded)) == encoded  # JSON, for the JSON columns
    assert encoded["tapeflow:codec"] == [c.encode(b"")[1] for c in codecs]
    if len(codecs) > 1 or isinstance(codecs[0], AesGcmCodec):
        assert "4111" not in json.dumps(encoded)
    assert envelopes.decode(encoded) == value


def test_aes_gcm_uses_a_fresh_nonce_per_payload_and_names_its_key() -> None:
    envelopes = Envelopes([aes(k1=K1)])
    first, second = envelopes.encode(SECRET), envelopes.encode(SECRET)
    assert first["tapeflow:codec"] == ["aesgcm:k1"]
    assert first["data"] != second["data"]
    nonces = {base64.b64decode(e["data"])[:12] for e in (first, second)}
    assert len(nonces) == 2


def test_a_rotated_key_writes_and_the_old_one_still_reads() -> None:
    before = Envelopes([aes(k1=K1)]).encode({"card": SECRET})
    rotated = Envelopes([aes(k2=K2, k1=K1)])  # k2 first: it writes
    assert rotated.decode(before) == {"card": SECRET}
    after = rotated.encode({"card": SECRET})
    assert after["tapeflow:codec"] == ["aesgcm:k2"]
    assert Envelopes([aes(k2=K2)]).decode(after) == {"card": SECRET}
    assert AesGcmCodec({"k2": K2, "k1": K1}, write_key="k1").encode(b"x")[1] == "aesgcm:k1"


def test_a_missing_key_is_a_clear_error_naming_it() -> None:
    encoded = Envelopes([aes(k1=K1)]).encode(SECRET)
    with pytest.raises(tapeflow.CodecError, match=r"key 'k1', which is not configured.*k2"):
        Envelopes([aes(k2=K2)]).decode(encoded)
    with pytest.raises(tapeflow.CodecError, match=r"no configured codec decodes it"):
        Envelopes([ZlibCodec()]).decode(encoded)


def test_a_wrong_key_under_the_right_id_or_altered_data_is_a_clear_error() -> None:
    encoded = Envelopes([aes(k1=K1)]).encode(SECRET)
    with pytest.raises(tapeflow.CodecError, match=r"does not decrypt with AES key 'k1'"):
        Envelopes([aes(k1=K2)]).decode(encoded)
    raw = bytearray(base64.b64decode(encoded["data"]))
    raw[-1] ^= 1
    altered = {**encoded, "data": base64.b64encode(bytes(raw)).decode()}
    with pytest.raises(tapeflow.CodecError, match="altered"):
        Envelopes([aes(k1=K1)]).decode(altered)


def test_a_payload_stored_before_the_codec_reads_as_itself() -> None:
    envelopes = Envelopes([aes(k1=K1)])
    for plain in (None, 3, "text", [1, 2], {"data": "x"}, {"tapeflow": 1}):
        assert envelopes.decode(plain) == plain
    failure = Failure("ValueError", "boom", "Traceback...")
    assert envelopes.decode_failure(failure) == failure


def test_a_users_value_with_the_envelope_key_is_refused() -> None:
    with pytest.raises(tapeflow.PayloadError, match="tapeflow:codec"):
        to_json({"tapeflow:codec": ["zlib"], "data": "eJwDAAAAAAE="})
    assert to_json({"nested": {"tapeflow:codec": 1}}) == {"nested": {"tapeflow:codec": 1}}


def test_a_failure_keeps_its_type_clear_and_hides_its_text() -> None:
    envelopes = Envelopes([aes(k1=K1)])
    failure = Failure("CardDeclined", f"declined {SECRET}", f"Traceback: {SECRET}")
    encoded = envelopes.encode_failure(failure)
    assert encoded is not None
    assert (encoded.type, encoded.message, encoded.traceback) == (
        "CardDeclined",
        ENCODED_MESSAGE,
        None,
    )
    assert SECRET not in json.dumps(encoded.encoded)
    assert envelopes.decode_failure(encoded) == failure


def test_keys_come_from_the_environment_first_one_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEYS_VARIABLE, keys_text(k2=K2, k1=K1))
    codec = AesGcmCodec.from_environment()
    assert (codec.key_ids, codec.write_key) == (["k2", "k1"], "k2")
    assert "k2" in repr(codec)
    assert base64.b64encode(K2).decode() not in repr(codec)
    with pytest.raises(tapeflow.InvalidArgument, match="entry 2"):
        parse_keys(f"k1:{base64.b64encode(K1).decode()},k2:not base64!")
    with pytest.raises(tapeflow.InvalidArgument, match="16, 24 or 32"):
        AesGcmCodec({"k1": b"short"})
    monkeypatch.delenv(KEYS_VARIABLE)
    with pytest.raises(tapeflow.InvalidArgument, match=KEYS_VARIABLE):
        AesGcmCodec.from_environment()


def test_every_payload_field_of_every_event_is_encoded() -> None:
    """A new event kind with a payload field of a new name must be added to the table, or
    its payloads would be stored in the clear."""
    kinds = [*get_args(history.HistoryEvent), UpdateRejected, UpdateCompleted]
    payload_types = (Any, list[Any], Failure, Failure | None, list[EventReceived])
    for kind in kinds:
        hints = get_type_hints(kind)
        for field in dataclasses.fields(kind):
            if hints[field.name] in payload_types:
                assert field.name in PAYLOAD_FIELDS, f"{kind.__name__}.{field.name}"


def test_events_are_encoded_field_by_field_and_decode_back() -> None:
    envelopes = Envelopes([aes(k1=K1)])
    carried = [EventReceived("note", SECRET)]
    event = history.WorkflowContinuedAsNew(args=[SECRET, 2], run_id="r", carried=carried)
    encoded = envelopes.encode_event(event)
    assert SECRET not in history.encode_event(encoded)
    assert encoded.run_id == "r"
    assert len(encoded.args) == 2
    assert envelopes.decode_event(encoded) == event


# -- end to end, on each backend -------------------------------------------------------------


@dataclass
class Card:
    number: str


@activity.defn
def charge(card: Card, cents: int) -> str:
    return f"charged {cents} to {card.number}"


@activity.defn
def refund(card: Card) -> None:
    raise tapeflow.NonRetryableError(f"refund refused for {card.number}")


@workflow.defn
async def checkout(card: Card) -> dict[str, str]:
    workflow.set_var("step", "charging")  # a variable stays clear: lists filter by it
    receipt = await workflow.execute_activity(charge, card, 100)
    try:
        await workflow.execute_activity(refund, card)
    except tapeflow.ActivityError as exc:
        refused = str(exc)
    note = await workflow.wait_event("note")
    return {"receipt": receipt, "note": note, "refused": refused}


def _stored_text(backend_url: str) -> str:
    """Every row of every tapeflow table, as text, read straight from the database."""
    if backend_url.startswith("sqlite"):
        with sqlite3.connect(backend_url.removeprefix("sqlite:///")) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return "\n".join(str(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    import psycopg

    from tapeflow.backends.postgres._conninfo import split_url

    conninfo, own = split_url(backend_url.partition("://")[2])
    schema = own.get("schema", "tapeflow")
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchall()
        return "\n".join(
            str(conn.execute(f'SELECT t::text FROM "{schema}"."{name}" t').fetchall())
            for (name,) in tables
        )


@pytest.fixture
async def encrypted(backend_url: str) -> AsyncIterator[tapeflow.Backend]:
    async with tapeflow.connect(backend_url, codec=[ZlibCodec(), aes(k1=K1)]) as opened:
        yield opened


async def test_a_workflow_runs_encrypted_and_the_database_holds_no_plaintext(
    encrypted: tapeflow.Backend, backend_url: str
) -> None:
    client = tapeflow.Client(encrypted)
    async with tapeflow.Worker(encrypted, workflows=[checkout], activities=[charge, refund]):
        handle = await client.start_workflow(checkout, Card(SECRET), id="order-1")
        await handle.send_event("note", f"leave at door, card {SECRET}")
        result = await handle.result(timeout=20)
    assert result["receipt"] == f"charged 100 to {SECRET}"
    assert SECRET in result["refused"]
    assert SECRET in result["note"]

    record = await handle.describe()
    assert record.args == [{"number": SECRET}]
    assert record.vars == {"step": "charging"}
    events = await handle.history()
    failed = next(e for e in events if isinstance(e, history.ActivityFailed))
    assert SECRET in failed.failure.message
    received = next(e for e in events if isinstance(e, EventReceived))
    assert SECRET in received.payload

    stored = _stored_text(backend_url)
    assert SECRET not in stored
    assert "aesgcm:k1" in stored
    assert "activity_failed" in stored  # what a backend reads stays clear
    assert '"charging"' in stored
    found = await client.list_workflows(vars={"step": "charging"})
    assert [s.id for s in found.workflows] == ["order-1"]


@workflow.defn
async def vault(card: Card) -> str:
    """An update and a child workflow, encrypted."""

    async def store(pin: str) -> str:
        return f"stored {pin} for {card.number}"

    workflow.on_update("store", store)
    child = await workflow.execute_child_workflow(charge_only, card, id="vault-child")
    await workflow.wait_event("close")
    return str(child)


async def test_updates_children_and_schedules_are_encrypted_too(
    encrypted: tapeflow.Backend, backend_url: str
) -> None:
    client = tapeflow.Client(encrypted)
    async with tapeflow.Worker(encrypted, workflows=[vault, charge_only], activities=[charge]):
        handle = await client.start_workflow(vault, Card(SECRET), id="vault")
        answer = await handle.execute_update("store", "1234", timeout=20)
        assert answer == f"stored 1234 for {SECRET}"
        schedule = await client.create_schedule(
            "nightly", charge_only, Card(SECRET), every=timedelta(days=1), paused=True
        )
        assert (await schedule.describe()).args == [{"number": SECRET}]
        started = await schedule.trigger()
        assert started is not None
        assert await started.result(timeout=20) == f"charged 5 to {SECRET}"
        await handle.send_event("close")
        assert await handle.result(timeout=20) == f"charged 5 to {SECRET}"
    closed = next(e for e in await handle.history() if isinstance(e, history.ChildWorkflowClosed))
    assert closed.result == f"charged 5 to {SECRET}"
    assert SECRET not in _stored_text(backend_url)


async def test_payloads_written_before_the_codec_still_read(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    async with tapeflow.Worker(backend, workflows=[checkout], activities=[charge, refund]):
        plain = await tapeflow.Client(backend).start_workflow(checkout, Card("plain"), id="old")
        await plain.send_event("note", "before")
        await plain.result(timeout=20)
    async with tapeflow.connect(backend_url, codec=aes(k1=K1)) as encrypted:
        old = tapeflow.Client(encrypted).get_handle("old")
        assert (await old.describe()).result["note"] == "before"
        assert any(isinstance(e, EventReceived) for e in await old.history())


@pytest.mark.parametrize("wrong", ["another-key", "no-codec"])
async def test_a_task_that_cannot_decode_waits_for_the_key_and_then_runs(
    backend_url: str, wrong: str
) -> None:
    """A worker with other keys gives the task back at its claim; one started without the
    codec at all meets the envelope in the converter: a task failure either way."""
    async with tapeflow.connect(backend_url, codec=aes(k1=K1)) as writer:
        handle = await tapeflow.Client(writer).start_workflow(checkout, Card(SECRET), id="k")
        await handle.send_event("note", "hi")
    codec = [aes(k2=K2)] if wrong == "another-key" else []
    async with tapeflow.connect(backend_url, codec=codec) as other:
        async with tapeflow.Worker(other, workflows=[checkout], activities=[charge, refund]):
            error = await task_error_of(tapeflow.Client(other), "k")
        assert "CodecError" in error
        assert "k1" in error
        record = await other.get_workflow("k")  # shown, its arguments as stored
        assert record.status == tapeflow.WorkflowStatus.PENDING
        assert is_envelope(record.args[0])
    async with tapeflow.connect(backend_url, codec=aes(k2=K2, k1=K1)) as rotated:
        handle = tapeflow.Client(rotated).get_handle("k")
        async with tapeflow.Worker(rotated, workflows=[checkout], activities=[charge, refund]):
            assert (await handle.result(timeout=timedelta(seconds=90)))["note"] == "hi"


@workflow.defn
async def two_notes() -> str:
    first = await workflow.wait_event("first")
    second = await workflow.wait_event("second")
    return f"{first} {second}"


async def test_a_history_that_cannot_decode_waits_for_the_key(backend_url: str) -> None:
    async with tapeflow.connect(backend_url, codec=aes(k1=K1)) as old:
        client = tapeflow.Client(old)
        handle = await client.start_workflow(two_notes, id="notes")
        await handle.send_event("first", "a")
        async with tapeflow.Worker(old, workflows=[two_notes]):
            await history_has(client, "notes", lambda e: isinstance(e, EventReceived))
    async with tapeflow.connect(backend_url, codec=aes(k2=K2, k1=K1)) as rotated:
        await tapeflow.Client(rotated).send_event("notes", "second", "b")  # written with k2
    async with tapeflow.connect(backend_url, codec=aes(k2=K2)) as new:
        async with tapeflow.Worker(new, workflows=[two_notes]):
            error = await task_error_of(tapeflow.Client(new), "notes")
        assert "the history of 'notes' cannot be decoded" in error
        assert "'k1'" in error
    async with tapeflow.connect(backend_url, codec=aes(k2=K2, k1=K1)) as rotated:
        handle = tapeflow.Client(rotated).get_handle("notes")
        async with tapeflow.Worker(rotated, workflows=[two_notes]):
            assert await handle.result(timeout=90) == "a b"


@workflow.defn
async def charge_only(card: Card) -> str:
    return await workflow.execute_activity(charge, card, 5)


async def test_an_activity_that_cannot_decode_is_put_back_and_runs_with_the_key(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with tapeflow.connect(backend_url, codec=aes(k1=K1)) as writer:
        handle = await tapeflow.Client(writer).start_workflow(charge_only, Card(SECRET), id="a")
        async with tapeflow.Worker(writer, workflows=[charge_only]):  # schedules, runs nothing
            await has_run(tapeflow.Client(writer), "a")

    async def put_back() -> bool:
        return "arguments of activity task" in caplog.text

    async with (
        tapeflow.connect(backend_url, codec=aes(k2=K2)) as wrong,
        tapeflow.Worker(wrong, activities=[charge]),
    ):
        await eventually(put_back, "the activity task is put back")
    async with tapeflow.connect(backend_url, codec=aes(k2=K2, k1=K1)) as rotated:
        handle = tapeflow.Client(rotated).get_handle("a")
        async with tapeflow.Worker(rotated, workflows=[charge_only], activities=[charge]):
            assert await handle.result(timeout=90) == f"charged 5 to {SECRET}"


async def test_a_result_that_cannot_be_decoded_is_a_codec_error_not_an_envelope(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'result.db'}"
    await _run_checkout(url, [aes(k1=K1)])
    for codec in ([aes(k2=K2)], []):  # the wrong key, and none at all
        async with tapeflow.connect(url, codec=codec) as backend:
            handle = tapeflow.Client(backend).get_handle("order-1")
            with pytest.raises(tapeflow.CodecError, match=r"aesgcm:k1.*TAPEFLOW_CODEC_KEYS"):
                await handle.result(timeout=5)


# -- the CLI and the UI ----------------------------------------------------------------------


async def _run_checkout(url: str, codec: list[Any]) -> None:
    async with tapeflow.connect(url, codec=codec) as backend:
        client = tapeflow.Client(backend)
        async with tapeflow.Worker(backend, workflows=[checkout], activities=[charge, refund]):
            handle = await client.start_workflow(checkout, Card(SECRET), id="order-1")
            await handle.send_event("note", "door")
            await handle.result(timeout=20)


def _cli(*args: str, keys: str | None) -> Result:
    env = {KEYS_VARIABLE: keys} if keys is not None else {KEYS_VARIABLE: ""}
    result = CliRunner().invoke(app, list(args), prog_name="tapeflow", env=env)
    assert result.exit_code == 0, result.stderr
    return result


def test_the_cli_decodes_with_the_key_and_shows_envelopes_without(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    asyncio.run(_run_checkout(url, [aes(k1=K1)]))
    keys = keys_text(k1=K1)

    described = json.loads(_cli("describe", "order-1", "--json", "--url", url, keys=keys).stdout)
    assert described["args"] == [{"number": SECRET}]
    assert described["result"]["receipt"] == f"charged 100 to {SECRET}"
    shown = _cli("history", "order-1", "--json", "--url", url, keys=keys).stdout
    assert SECRET in shown
    assert "tapeflow:codec" not in shown

    for command in ("describe", "history"):
        encoded = _cli(command, "order-1", "--json", "--url", url, keys=None).stdout
        assert SECRET not in encoded
        assert "aesgcm:k1" in encoded
    result = json.loads(_cli("result", "order-1", "--url", url, keys=None).stdout)
    assert is_envelope(result)

    wrong = {KEYS_VARIABLE: keys_text(k2=K2)}
    refused = CliRunner().invoke(app, ["history", "order-1", "--url", url], env=wrong)
    assert refused.exit_code == 1
    assert "key 'k1', which is not configured" in refused.stderr


async def test_the_ui_shows_payloads_decoded_when_started_with_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    await _run_checkout(url, [aes(k1=K1)])

    async def page() -> str:
        async with running(tapeflow.ui.app(url)) as served:
            address = f"{served}/workflow?id=order-1"
            with await asyncio.to_thread(urllib.request.urlopen, address) as response:
                text: str = response.read().decode()
                return html.unescape(text)

    monkeypatch.setenv(KEYS_VARIABLE, keys_text(k1=K1))
    decoded = await page()
    assert f"charged 100 to {SECRET}" in decoded
    assert "door" in decoded
    monkeypatch.setenv(KEYS_VARIABLE, "")
    encoded = await page()
    assert SECRET not in encoded
    assert "aesgcm:k1" in encoded
