"""AMF0 encoding and decoding, enough for RTMP connect/publish commands and onMetaData.

Python mapping:
    number       <-> float (ints encode as numbers)
    boolean      <-> bool
    string       <-> str (strings longer than 65535 UTF-8 bytes encode as long strings)
    long string  ->  str
    object       <-> dict
    null         <-> None
    undefined    <-> UNDEFINED
    ECMA array   <-> EcmaArray (a dict subclass)
    strict array <-> list (tuples encode as strict arrays too)
    date         <-> Date
    XML document ->  str
    typed object ->  dict
    object end   ->  only ever seen inside objects; a stray one decodes to OBJECT_END

Decoding is defensive: every length is checked against the remaining input and nesting
is bounded, so garbage raises ``AMF0Error`` (a ``ValueError``) and never anything else.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AMF0Error",
    "Date",
    "EcmaArray",
    "OBJECT_END",
    "UNDEFINED",
    "decode",
    "decode_all",
    "encode",
]

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
MOVIECLIP = 0x04
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END_MARKER = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10

MAX_DEPTH = 32

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_S16 = struct.Struct(">h")


class AMF0Error(ValueError):
    """Malformed AMF0 data, or a value that cannot be encoded."""


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Sentinel("UNDEFINED")
OBJECT_END = _Sentinel("OBJECT_END")


class EcmaArray(dict):
    """An AMF0 ECMA array (associative array); onMetaData usually carries one."""


@dataclass(frozen=True)
class Date:
    """An AMF0 date: milliseconds since the Unix epoch, plus a (deprecated) timezone."""

    millis: float
    timezone: int = 0


# ---------------------------------------------------------------- encoding


def _encode_utf8(s: str) -> bytes:
    return s.encode("utf-8", errors="surrogatepass")


def _encode_key(key: str, out: bytearray) -> None:
    raw = _encode_utf8(str(key))
    if len(raw) > 0xFFFF:
        raise AMF0Error("object key longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode_value(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AMF0Error("value nested too deeply")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif value is OBJECT_END:
        out += b"\x00\x00\x09"
    elif isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = _encode_utf8(value)
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, Date):
        out.append(DATE)
        out += _DOUBLE.pack(float(value.millis))
        out += _S16.pack(value.timezone)
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        for k, v in value.items():
            _encode_key(k, out)
            _encode_value(v, out, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, dict):
        out.append(OBJECT)
        for k, v in value.items():
            _encode_key(k, out)
            _encode_value(v, out, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for v in value:
            _encode_value(v, out, depth + 1)
    else:
        raise AMF0Error(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: Any) -> bytes:
    """Encode values one after another (as an RTMP command message carries them)."""
    out = bytearray()
    for v in values:
        _encode_value(v, out, 0)
    return bytes(out)


# ---------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.end = len(self.data)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise AMF0Error("truncated AMF0 data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        if self.pos >= self.end:
            raise AMF0Error("truncated AMF0 data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def string(self, n: int) -> str:
        return self.take(n).decode("utf-8", errors="replace")

    def properties(self, into: dict, depth: int, lenient_end: bool) -> dict:
        # Key/value pairs until the empty-key + object-end marker.  Some encoders end ECMA
        # arrays at the end of the data without a marker; accept that when lenient_end.
        while True:
            if lenient_end and self.pos >= self.end:
                return into
            key = self.string(self.u16())
            if key == "" and self.pos < self.end and self.data[self.pos] == OBJECT_END_MARKER:
                self.pos += 1
                return into
            if len(into) > 65535:
                raise AMF0Error("too many object properties")
            into[key] = self.value(depth + 1)

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise AMF0Error("AMF0 data nested too deeply")
        marker = self.u8()
        if marker == NUMBER:
            return _DOUBLE.unpack(self.take(8))[0]
        if marker == BOOLEAN:
            return self.u8() != 0
        if marker == STRING:
            return self.string(self.u16())
        if marker == LONG_STRING or marker == XML_DOCUMENT:
            return self.string(self.u32())
        if marker == OBJECT:
            return self.properties({}, depth, lenient_end=False)
        if marker == TYPED_OBJECT:
            self.string(self.u16())  # class name, dropped
            return self.properties({}, depth, lenient_end=False)
        if marker == ECMA_ARRAY:
            self.u32()  # advisory count; the end marker is authoritative
            return self.properties(EcmaArray(), depth, lenient_end=True)
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER or marker == UNSUPPORTED:
            return UNDEFINED
        if marker == OBJECT_END_MARKER:
            return OBJECT_END
        if marker == STRICT_ARRAY:
            count = self.u32()
            if count > self.end - self.pos:  # every value takes at least one byte
                raise AMF0Error("strict array count exceeds the data")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            millis = _DOUBLE.unpack(self.take(8))[0]
            tz = _S16.unpack(self.take(2))[0]
            return Date(millis if math.isfinite(millis) else 0.0, tz)
        if marker == REFERENCE:
            raise AMF0Error("AMF0 references are not supported")
        raise AMF0Error(f"unknown AMF0 marker 0x{marker:02x}")


def decode(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode one value starting at ``pos``; returns (value, position after it)."""
    d = _Decoder(data, pos)
    value = d.value()
    return value, d.pos


def decode_all(data: bytes | bytearray | memoryview, *, max_values: int = 256) -> list[Any]:
    """Decode every value in ``data`` (an RTMP command or data message body)."""
    d = _Decoder(data)
    values: list[Any] = []
    while d.pos < d.end:
        if len(values) >= max_values:
            raise AMF0Error("too many AMF0 values")
        values.append(d.value())
    return values
