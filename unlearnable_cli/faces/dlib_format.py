"""A reader for dlib's binary serialization (``dlib/serialize.h``), in pure Python/numpy.

dlib writes every object as a sequence of primitives, with no type tags: the reader must
know what comes next.  The primitives this module reads, as ``dlib/serialize.h`` and
``dlib/cuda/tensor.h`` (commit 3d40bf5 of github.com/davisking/dlib) write them:

- **integers** (``pack_int``): one control byte, then that many little-endian magnitude
  bytes (1..8; the value 0 is ``01 00``).  For signed types bit ``0x80`` of the control
  byte is the sign and its low nibble the byte count; unsigned types mask it with ``0x8F``.
- **floats** (``float_details``): two integers, a signed 64-bit mantissa and a signed
  16-bit exponent, value ``mantissa * 2**exponent``; exponents 32000/32001/32002 mean
  +inf/-inf/NaN.  (An older ASCII form, recognisable by bits ``0x70`` of its first byte,
  is refused: the face model does not use it.)
- **strings** (and string literals such as a layer's version ``"con_4"``): the length as
  an unsigned integer, then the bytes.
- **bools**: the ASCII character ``'1'`` or ``'0'``.
- **tensors** (``resizable_tensor``): the integer version 2, four signed integers
  ``num_samples, k, nr, nc``, then ``n*k*nr*nc`` float32 little-endian IEEE values in
  row-major (NCHW) order.  **alias tensors** (views into a layer's ``params``): the
  integer version 1 and the four dimensions, no data.

Every read checks that the bytes are there and says at which offset it failed, so a
truncated or foreign file is a :class:`DlibFormatError`, never a silently wrong tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes are not what dlib's serialization of the expected object would be."""


class DlibReader:
    """Sequential reader over one dlib-serialized byte string.

    ``pos`` is the offset of the next unread byte; :meth:`at_end` tells whether the whole
    stream was consumed (the network reader insists on it, to prove the walk matched the
    writer's order byte for byte).
    """

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.name = name
        self.pos = 0

    @classmethod
    def from_file(cls, path: str | Path) -> "DlibReader":
        return cls(Path(path).read_bytes(), str(path))

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos} of {len(self.data)}")

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def take(self, n: int) -> memoryview:
        """The next ``n`` raw bytes."""
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} bytes wanted")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def _int(self, signed: bool, nbytes: int) -> int:
        """``pack_int``: control byte (size, sign bit for signed types), magnitude bytes."""
        control = self.take(1)[0]
        size = control & (0x0F if signed else 0x8F)
        if size == 0 or size > nbytes:
            raise self.fail(f"bad integer control byte 0x{control:02x} for a {nbytes}-byte type")
        value = int.from_bytes(bytes(self.take(size)), "little")
        return -value if signed and control & 0x80 else value

    def int(self, nbytes: int = 4) -> int:
        """A signed integer (``int``: 4 bytes, ``long``/``long long``/``int64``: 8)."""
        return self._int(True, nbytes)

    def uint(self, nbytes: int = 8) -> int:
        """An unsigned integer (``unsigned long``/``size_t``: 8 bytes, ``unsigned int``: 4)."""
        return self._int(False, nbytes)

    def float(self) -> float:
        """A ``float_details`` value: mantissa (int64) times 2**exponent (int16)."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("old ASCII float format (not supported)")
        mantissa, exponent = self.int(8), self.int(2)
        if exponent == _INF:
            return float("inf")
        if exponent == _NINF:
            return float("-inf")
        if exponent == _NAN:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        """A ``std::string`` or string literal: length, then bytes (ASCII in dlib's files)."""
        size = self.uint()
        if size > len(self.data):
            raise self.fail(f"string length {size} beyond the file")
        return bytes(self.take(size)).decode("latin-1")

    def bool(self) -> bool:
        ch = self.take(1)[0]
        if ch not in (ord("0"), ord("1")):
            raise self.fail(f"bad bool byte 0x{ch:02x}")
        return ch == ord("1")

    def expect(self, kind: str, allowed: tuple[str, ...]) -> str:
        """A version string that must be one of ``allowed`` (dlib's layer-format tags)."""
        return self._one_of(self.string, kind, allowed)

    def version(self, kind: str, allowed: tuple[int, ...]) -> int:
        """An integer version header (``add_layer``, tag, skip, loss, tensor)."""
        return self._one_of(self.int, kind, allowed)

    def _one_of(self, read, kind: str, allowed: tuple):  # type: ignore[no-untyped-def]
        """``read()`` a version; one not in ``allowed`` is refused, the position left before it."""
        start = self.pos
        value = read()
        if value not in allowed:
            self.pos = start
            raise self.fail(f"expected {kind} version {allowed}, found {value!r}")
        return value

    def _dims(self) -> tuple[int, int, int, int]:
        dims = tuple(self.int(8) for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: float32 array of shape (num_samples, k, nr, nc)."""
        self.version("resizable_tensor", (2,))
        dims = self._dims()
        count = int(np.prod(dims, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only the shape of a view into a layer's ``params``."""
        self.version("alias_tensor", (1,))
        return self._dims()


# -- writers: the same primitives, for building synthetic streams in tests ------------------

def pack_int(value: int, signed: bool = True) -> bytes:
    """``pack_int``'s bytes for ``value`` (control byte, then little-endian magnitude)."""
    magnitude = abs(value) if signed else value
    if magnitude < 0:
        raise ValueError("negative value for an unsigned integer")
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if signed and value < 0 else 0)]) + body


def pack_float(value: float, digits: int = 53) -> bytes:
    """``float_details`` of ``value`` as dlib writes it: ``digits`` significant bits (53 for a
    double, 24 for a float), then up to 8 zero low bytes shifted off the mantissa."""
    frac, exp = np.frexp(np.float64(value))
    mantissa, exponent = int(frac * (1 << digits)), int(exp) - digits
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return pack_int(mantissa) + pack_int(exponent)


def pack_string(text: str) -> bytes:
    return pack_int(len(text), signed=False) + text.encode("latin-1")


def pack_bool(value: bool) -> bytes:
    return b"1" if value else b"0"


def pack_tensor(array: np.ndarray) -> bytes:
    """A ``resizable_tensor`` holding ``array`` (padded to 4 dimensions on the right)."""
    shape = tuple(array.shape) + (1,) * (4 - array.ndim)
    head = pack_int(2) + b"".join(pack_int(d) for d in shape)
    return head + np.ascontiguousarray(array, dtype="<f4").tobytes()


def pack_alias(shape: tuple[int, ...]) -> bytes:
    shape = tuple(shape) + (1,) * (4 - len(shape))
    return pack_int(1) + b"".join(pack_int(d) for d in shape)
