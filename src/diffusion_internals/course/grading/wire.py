"""The grading wire: framed messages and plain values between the trusted grader and a submission.

The hidden tests run in the grader's (trusted) process; the submission runs in a sandbox. They talk
over a pair of pipes in frames: a 4-byte length, a JSON header, then the raw bytes of the arrays it
names. Values cross as plain data only: None, bools, numbers, strings, lists, tuples, dicts, numpy
arrays and torch tensors (dtype and shape kept). Anything else (a function, a model, a class) stays
where it lives and crosses as a numbered *handle* that the other side can call.

`decode` is strict because what the sandbox sends is written by the student: an unknown tag, a
dtype outside the list, a shape that does not match its bytes, a frame over the size limit or a
structure nested too deep raise `WireError`; nothing sent is ever unpickled or evaluated.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = ["WireError", "Handle", "encode", "decode", "send", "receive", "MAX_FRAME_BYTES"]

MAX_FRAME_BYTES = 256 * 2**20  # one message: headers and arrays together
MAX_HEADER_BYTES = 16 * 2**20
MAX_DEPTH = 32
_LENGTH = struct.Struct(">I")
_BUFFER = struct.Struct(">Q")

# The dtypes that cross (numpy names; bfloat16 travels as its raw 16 bits).
TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
NUMPY_DTYPES = {name: np.dtype(name) for name in TORCH_DTYPES if name != "bfloat16"}
_TORCH_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


class WireError(Exception):
    """A message that breaks the protocol (malformed, too large, or of a kind that is not allowed)."""


class Handle:
    """A reference to an object that stays on the other side: its number and what kind of thing it is."""

    __slots__ = ("id", "kind", "description")

    def __init__(self, id: int, kind: str, description: str) -> None:
        self.id, self.kind, self.description = id, kind, description


def encode(value: Any, buffers: list[bytes], export: Callable[[Any], Handle], depth: int = 0) -> Any:
    """value as JSON-able data (arrays appended to buffers); export(obj) makes a handle for anything else."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep cannot be sent")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ["int", str(value)] if abs(value) >= 2**53 else value
    if isinstance(value, float):
        return value if math.isfinite(value) else ["float", repr(value)]
    if isinstance(value, (list, tuple)):
        items = [encode(v, buffers, export, depth + 1) for v in value]
        return ["list" if isinstance(value, list) else "tuple", items]
    if isinstance(value, dict):
        return [
            "dict",
            [[encode(k, buffers, export, depth + 1), encode(v, buffers, export, depth + 1)] for k, v in value.items()],
        ]
    if isinstance(value, torch.Tensor) and _TORCH_NAMES.get(value.dtype) and value.layout == torch.strided:
        name = _TORCH_NAMES[value.dtype]
        flat = value.detach().to("cpu").contiguous()
        raw = flat.view(torch.int16) if name == "bfloat16" else flat
        buffers.append(raw.numpy().tobytes())
        return ["tensor", name, list(value.shape), len(buffers) - 1]
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.name in NUMPY_DTYPES:
        array = np.ascontiguousarray(value)
        buffers.append(array.tobytes())
        tag = "ndarray" if isinstance(value, np.ndarray) else "npscalar"
        return [tag, value.dtype.name, list(array.shape), len(buffers) - 1]
    handle = export(value)
    return ["handle", handle.id, handle.kind, handle.description]


def decode(data: Any, buffers: list[bytes], resolve: Callable[[Handle], Any], depth: int = 0) -> Any:
    """The value encode produced; resolve(handle) gives the local stand-in (or the object) for a handle."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise WireError(f"malformed value of type {type(data).__name__}")
    tag, rest = data[0], data[1:]
    if tag == "int" and len(rest) == 1 and isinstance(rest[0], str) and len(rest[0]) <= 4000:
        return int(rest[0])
    if tag == "float" and rest in (["nan"], ["inf"], ["-inf"]):
        return float(rest[0])
    if tag in ("list", "tuple") and len(rest) == 1 and isinstance(rest[0], list):
        items = [decode(v, buffers, resolve, depth + 1) for v in rest[0]]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and len(rest) == 1 and isinstance(rest[0], list):
        out = {}
        for pair in rest[0]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict entry")
            key = decode(pair[0], buffers, resolve, depth + 1)
            try:
                out[key] = decode(pair[1], buffers, resolve, depth + 1)
            except TypeError as error:  # an unhashable key
                raise WireError(f"dict key of type {type(key).__name__} is not allowed") from error
        return out
    if tag in ("tensor", "ndarray", "npscalar") and len(rest) == 3:
        return _array(tag, *rest, buffers)
    if tag == "handle" and len(rest) == 3 and isinstance(rest[0], int) and all(isinstance(r, str) for r in rest[1:]):
        return resolve(Handle(rest[0], rest[1], rest[2][:200]))
    raise WireError(f"unknown value tag {tag!r}")


def _array(tag: str, dtype: Any, shape: Any, index: Any, buffers: list[bytes]) -> Any:
    table = TORCH_DTYPES if tag == "tensor" else NUMPY_DTYPES
    if dtype not in table:
        raise WireError(f"dtype {dtype!r} is not allowed (allowed: {', '.join(table)})")
    if not isinstance(shape, list) or len(shape) > 32 or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise WireError(f"malformed shape {shape!r}")
    if not isinstance(index, int) or not 0 <= index < len(buffers):
        raise WireError("an array names a buffer that was not sent")
    raw = buffers[index]
    item = 2 if dtype == "bfloat16" else NUMPY_DTYPES[dtype].itemsize
    if math.prod(shape) * item != len(raw):
        raise WireError(f"an array of shape {tuple(shape)} and dtype {dtype} cannot have {len(raw)} bytes")
    if tag == "tensor":
        if dtype == "bfloat16":
            return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape).clone()
        if not raw:
            return torch.empty(shape, dtype=TORCH_DTYPES[dtype])
        return torch.frombuffer(bytearray(raw), dtype=TORCH_DTYPES[dtype]).reshape(shape)
    array = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype]).reshape(shape).copy()
    return array[()] if tag == "npscalar" else array


def send(stream: BinaryIO, header: dict, buffers: list[bytes] = ()) -> None:
    """Write one frame: header (JSON) and buffers."""
    header = {**header, "buffers": [len(b) for b in buffers]}
    text = json.dumps(header, allow_nan=False).encode()
    stream.write(_LENGTH.pack(len(text)) + text)
    for raw in buffers:
        stream.write(raw)
    stream.flush()


def _read(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(stream: BinaryIO, max_bytes: int = MAX_FRAME_BYTES) -> tuple[dict, list[bytes]]:
    """Read one frame; WireError if it is malformed or larger than max_bytes."""
    (size,) = _LENGTH.unpack(_read(stream, _LENGTH.size))
    if size > min(MAX_HEADER_BYTES, max_bytes):
        raise WireError(f"a message header of {size} bytes is over the limit")
    try:
        header = json.loads(_read(stream, size))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"a message header is not JSON ({error})") from error
    lengths = header.get("buffers") if isinstance(header, dict) else None
    if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
        raise WireError("a message header without a valid list of buffer sizes")
    if size + sum(lengths) > max_bytes:
        raise WireError(f"a message of {size + sum(lengths)} bytes is over the limit of {max_bytes}")
    return header, [_read(stream, n) for n in lengths]
