"""Payloads as codec envelopes, and back: the JSON side of ``tapeflow.codec``.

An encoded payload is stored as ``{"tapeflow:codec": ["zlib", "aesgcm:k2"], "data":
"<base64>"}``: still JSON (the columns are JSON), and it says which steps to undo. Any
other value is a payload stored plain (before a codec was configured) and reads as itself.
A user's value is never taken for an envelope: the converter refuses to store a dict with
the key ``"tapeflow:codec"`` (``tapeflow.converter.to_json``), and with a codec every
value is inside an envelope's data anyway.

Which fields of history events are payloads is one table, ``PAYLOAD_FIELDS``, by field
name; names, ids, kinds, seqs, times and reasons stay clear (the backends and the UI read
them), and so do a run's variables, which lists filter by in SQL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from tapeflow.backends._rows import FAILURE as _FAILURE
from tapeflow.codec import ENVELOPE_KEY, PayloadCodec, ZlibCodec, is_envelope
from tapeflow.errors import CodecError
from tapeflow.history import (
    Failure,
    HistoryEvent,
    JSONValue,
    UpdateOutcome,
    decode_event,
    decode_outcome,
    encode_event,
    encode_outcome,
)

ENCODED_MESSAGE = "(encoded: the message and traceback are in 'encoded')"
"""A failure's message once its text went into the envelope: what a reader without the
codec's keys sees."""

PAYLOAD_FIELDS = {
    "args": "each",
    "result": "value",
    "payload": "value",
    "details": "value",
    "failure": "failure",
    "carried": "events",
}
"""The payload fields of history events (and update outcomes), by name, and what each
holds: a list of values (each its own envelope, so that it stays a list), a value, a
``Failure`` (its message and traceback), or events of their own."""

E = TypeVar("E", bound=HistoryEvent | UpdateOutcome)


class Envelopes:
    """Encodes with ``codecs`` in order; decodes any envelope whose steps these codecs
    (or zlib, which needs nothing) name, whatever codecs wrote it."""

    def __init__(self, codecs: Sequence[PayloadCodec]) -> None:
        if not codecs:
            raise ValueError("Envelopes needs at least one codec")
        self._codecs = tuple(codecs)
        self._by_name: dict[str, PayloadCodec] = {ZlibCodec.name: ZlibCodec()}
        self._by_name.update((codec.name, codec) for codec in codecs)

    # -- values ----------------------------------------------------------------------------

    def encode(self, value: JSONValue) -> JSONValue:
        """An envelope is passed on as it is: no user value has that shape, so it is one
        read back undecoded (a reset copying arguments it has no key for), still valid."""
        if is_envelope(value):
            return value
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        steps = []
        for codec in self._codecs:
            data, step = codec.encode(data)
            steps.append(step)
        return {ENVELOPE_KEY: steps, "data": base64.b64encode(data).decode("ascii")}

    def decode(self, value: JSONValue) -> JSONValue:
        if not is_envelope(value):
            return value  # stored plain, before a codec was configured
        steps: list[str] = value[ENVELOPE_KEY]
        try:
            data = base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("an encoded payload's data is not base64") from None
        for step in reversed(steps):
            codec = self._by_name.get(step.partition(":")[0])
            if codec is None:
                raise CodecError(
                    f"a payload was encoded with {step!r}, and no configured codec decodes "
                    f"it (configured: {', '.join(self._by_name)})"
                )
            data = codec.decode(data, step)
        try:
            return json.loads(data)
        except ValueError:
            raise CodecError("a decoded payload is not JSON") from None

    def decode_or_keep(self, value: JSONValue) -> JSONValue:
        """Decoded, or the envelope as it is if these codecs cannot decode it: for a
        describe, which must show a run (its status, its task's error) whatever its keys;
        the converter refuses the envelope where a value is used (``from_json``)."""
        try:
            return self.decode(value)
        except CodecError:
            return value

    def encode_each(self, values: Sequence[JSONValue]) -> list[JSONValue]:
        return [self.encode(value) for value in values]

    def decode_each(self, values: Sequence[JSONValue]) -> list[JSONValue]:
        return [self.decode(value) for value in values]

    def encode_text(self, text: str | None) -> str | None:
        """A payload stored as JSON text (a plan's rows)."""
        return None if text is None else _text(self.encode(json.loads(text)))

    def encode_each_text(self, text: str) -> str:
        return _text(self.encode_each(json.loads(text)))

    # -- failures --------------------------------------------------------------------------

    def encode_failure(self, failure: Failure | None) -> Failure | None:
        """Its type stays clear (workflows catch by it); its message and traceback go into
        ``encoded``."""
        if failure is None or failure.encoded is not None:
            return failure
        text = {"message": failure.message, "traceback": failure.traceback}
        return Failure(failure.type, ENCODED_MESSAGE, None, self.encode(text))

    def decode_failure(self, failure: Failure | None) -> Failure | None:
        if failure is None or failure.encoded is None:
            return failure
        text = self.decode(failure.encoded)
        if not isinstance(text, dict) or not isinstance(text.get("message"), str):
            raise CodecError(f"an encoded {failure.type} failure holds no message")
        return Failure(failure.type, text["message"], text.get("traceback"))

    def decode_failure_or_keep(self, failure: Failure | None) -> Failure | None:
        try:
            return self.decode_failure(failure)
        except CodecError:
            return failure

    def encode_failure_text(self, text: str | None) -> str | None:
        if text is None:
            return None
        failure = _FAILURE.validate_json(text)
        return _FAILURE.dump_json(self.encode_failure(failure) or failure).decode()

    # -- events ----------------------------------------------------------------------------

    def encode_event(self, event: E) -> E:
        return cast(E, self._each_payload(event, encoding=True))

    def decode_event(self, event: E) -> E:
        return cast(E, self._each_payload(event, encoding=False))

    def encode_event_text(self, text: str) -> str:
        return encode_event(self.encode_event(decode_event(text)))

    def encode_outcome_text(self, text: str) -> str:
        return encode_outcome(self.encode_event(decode_outcome(text)))

    def _each_payload(self, event: Any, *, encoding: bool) -> Any:
        value = self.encode if encoding else self.decode
        failure = self.encode_failure if encoding else self.decode_failure
        changes: dict[str, Any] = {}
        for field in dataclasses.fields(event):
            holds = PAYLOAD_FIELDS.get(field.name)
            found = getattr(event, field.name)
            if holds == "value":
                changes[field.name] = value(found)
            elif holds == "each":
                changes[field.name] = [value(item) for item in found]
            elif holds == "failure":
                changes[field.name] = failure(found)
            elif holds == "events":
                changes[field.name] = [
                    self._each_payload(item, encoding=encoding) for item in found
                ]
        return dataclasses.replace(event, **changes) if changes else event


def _text(value: JSONValue) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
