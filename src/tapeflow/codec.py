"""Payload codecs: bytes in, bytes out, under the JSON of every stored payload.

``tapeflow.connect(url, codec=...)`` applies them (see ``tapeflow.backends.encoded`` for
which fields are payloads): compression (``ZlibCodec``), encryption (``AesGcmCodec``), or
several in order (``codec=[ZlibCodec(), AesGcmCodec.from_environment()]``: compress, then
encrypt). Each codec names the step it took (``"zlib"``, ``"aesgcm:k2"``) and the stored
envelope lists the steps, so a payload decodes by what it says was done to it, not by
what is configured now: old keys keep decoding after a rotation, and a payload written
before any codec (not an envelope) reads as itself.
"""

from __future__ import annotations

import base64
import binascii
import os
import zlib
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from tapeflow.errors import CodecError, InvalidArgument

ENVELOPE_KEY = "tapeflow:codec"
"""The key of an encoded payload's envelope, ``{"tapeflow:codec": [steps], "data": ...}``:
no value a user stores may have it at its top (the converter refuses it), so no plain
payload is ever read as an envelope."""

KEYS_VARIABLE = "TAPEFLOW_CODEC_KEYS"
"""``"k2:<base64 key>,k1:<base64 key>"``: AES keys by id, the first one writing."""


def is_envelope(value: object) -> bool:
    """Whether ``value`` is an encoded payload: exactly the envelope's two keys."""
    return (
        isinstance(value, dict)
        and value.keys() == {ENVELOPE_KEY, "data"}
        and isinstance(value[ENVELOPE_KEY], list)
        and all(isinstance(step, str) for step in value[ENVELOPE_KEY])
        and isinstance(value["data"], str)
    )


@runtime_checkable
class PayloadCodec(Protocol):
    """One reversible step on a payload's bytes."""

    @property
    def name(self) -> str:
        """The first part of the steps it writes: a step ``"aesgcm:k2"`` is ``"aesgcm"``'s."""
        ...

    def encode(self, data: bytes) -> tuple[bytes, str]:
        """``data`` transformed, and the step that says how (with what it needs to undo
        it, such as a key id)."""
        ...

    def decode(self, data: bytes, step: str) -> bytes:
        """Undo ``step``. Raises CodecError if it cannot (a missing key, altered data)."""
        ...


class ZlibCodec:
    """Compression: worth it for large, repetitive payloads (documents, lists of records).
    Always decodable, configured or not: it needs nothing to undo."""

    name = "zlib"

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def encode(self, data: bytes) -> tuple[bytes, str]:
        return zlib.compress(data, self.level), self.name

    def decode(self, data: bytes, step: str) -> bytes:
        try:
            return zlib.decompress(data)
        except zlib.error as exc:
            raise CodecError(f"a zlib payload cannot be decompressed: {exc}") from None


NONCE_BYTES = 12
"""AES-GCM's 96-bit nonce, random per payload: 2**32 payloads per key keep the chance
of a repeated nonce below 2**-32 (NIST SP 800-38D); rotate keys well before that."""

KEY_SIZES = (16, 24, 32)


class AesGcmCodec:
    """Authenticated encryption with AES-GCM (``tapeflow[encryption]``). ``keys`` maps key
    ids to keys (16, 24 or 32 bytes); ``write_key`` (default: the first) encrypts, every
    one decrypts. Each payload is its nonce then its ciphertext, its step names its key
    (``"aesgcm:k2"``), which is also bound as associated data: a payload cannot be passed
    off as another key's. Rotation: put the new key first and keep the old ones until no
    payload needs them."""

    name = "aesgcm"

    def __init__(self, keys: Mapping[str, bytes], write_key: str | None = None) -> None:
        if not keys:
            raise InvalidArgument("AesGcmCodec needs at least one key")
        for key_id, key in keys.items():
            if not key_id or ":" in key_id or "," in key_id:
                raise InvalidArgument(f"bad AES key id {key_id!r}: no ':' or ',', not empty")
            if len(key) not in KEY_SIZES:
                raise InvalidArgument(
                    f"AES key {key_id!r} is {len(key)} bytes: it must be 16, 24 or 32"
                )
        self.write_key = next(iter(keys)) if write_key is None else write_key
        if self.write_key not in keys:
            raise InvalidArgument(f"write_key {self.write_key!r} is not among the keys")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise InvalidArgument(
                "AesGcmCodec needs the cryptography package: install tapeflow[encryption]"
            ) from None
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @classmethod
    def from_environment(cls, variable: str = KEYS_VARIABLE) -> AesGcmCodec:
        """The keys of ``$TAPEFLOW_CODEC_KEYS`` (``"k2:<base64>,k1:<base64>"``), the first
        one writing. Raises InvalidArgument if it is unset or malformed."""
        spec = os.environ.get(variable, "").strip()
        if not spec:
            raise InvalidArgument(f"${variable} is not set: want 'key_id:<base64 key>,...'")
        return cls(parse_keys(spec, variable))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encode(self, data: bytes) -> tuple[bytes, str]:
        step = f"{self.name}:{self.write_key}"
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._ciphers[self.write_key].encrypt(nonce, data, step.encode()), step

    def decode(self, data: bytes, step: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        key_id = step.partition(":")[2]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"a payload is encrypted with AES key {key_id!r}, which is not configured "
                f"(keys: {', '.join(self._ciphers)}): add it to ${KEYS_VARIABLE}"
            )
        try:
            return cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], step.encode())
        except InvalidTag:
            raise CodecError(
                f"a payload does not decrypt with AES key {key_id!r}: the key configured "
                "under that id is not the one it was written with, or the payload was altered"
            ) from None

    def __repr__(self) -> str:  # never the keys themselves
        return f"AesGcmCodec(key ids {self.key_ids}, writing with {self.write_key!r})"


def parse_keys(spec: str, source: str = KEYS_VARIABLE) -> dict[str, bytes]:
    """``"k2:<base64>,k1:<base64>"`` as keys by id, in order; malformed entries are named by
    position, never by their key material."""
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in spec.split(","))), 1):
        key_id, colon, encoded = entry.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not colon or not key_id or not key:
            raise InvalidArgument(
                f"entry {position} of {source} is not 'key_id:<base64 key>'"
                + (f" (key id {key_id!r})" if colon and key_id else "")
            )
        if key_id in keys:
            raise InvalidArgument(f"key id {key_id!r} is twice in {source}")
        keys[key_id] = key
    return keys


def from_environment() -> list[PayloadCodec]:
    """The codecs ``connect`` uses when none are given: AES-GCM with the keys of
    ``$TAPEFLOW_CODEC_KEYS`` if it is set, else none (payloads stored as plain JSON)."""
    if not os.environ.get(KEYS_VARIABLE, "").strip():
        return []
    return [AesGcmCodec.from_environment()]
