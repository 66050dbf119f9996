"""A tensor on a stream port, and its frames: one definition for every side of the wire.

The hardware generator (:mod:`lcp.hw.plumbing`, :mod:`lcp.hw.pynq_top`), the PYNQ driver and
its simulated board (:mod:`lcp.sw.pynq`) and the cluster's ``packed`` wire format
(:mod:`lcp.sw.cluster.wire`) all use this module; it needs neither torch nor Amaranth.

Packing contract (the engine's AXI4-Stream ports, ``lcp_engine.json``):

- an image is a *frame*: its elements in stream order (``perm[k]`` is the IR flat index of the
  ``k``-th element sent), ``bits`` each, two's complement, packed from the least significant
  bit up (element ``k``'s bit ``j`` is frame bit ``k * bits + j``);
- ``width``-bit words (``tdata``), word ``i`` holds frame bits ``[i * width, (i + 1) * width)``,
  the last word zero-padded; bytes little endian (a DMA buffer, cocotbext-axi).

:func:`pack_bits` / :func:`unpack_bits` are that bit order on their own (unsigned values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .tensor import IRError, bits_for_range

__all__ = ["Port", "pack_bits", "unpack_bits", "pack_frames", "unpack_frames",
           "words_per_frame"]

#: Element widths packed as whole little-endian words (fast path, same bit order).
_WORD_DTYPES = {8: np.uint8, 16: np.dtype("<u2"), 32: np.dtype("<u4"), 64: np.dtype("<u8")}


def words_per_frame(size: int, bits: int, width: int) -> int:
    """``width``-bit words of a frame of ``size`` elements of ``bits`` bits."""
    return -(-size * bits // width)


def pack_bits(v: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned values ``(N, n)`` (each below ``2**bits``) -> bytes ``uint8 (N, ceil(n*bits/8))``.

    Value ``k``'s bit ``j`` is bit ``k * bits + j`` of the row, from the first byte's least
    significant bit up.
    """
    v = np.asarray(v)
    rows = v.reshape(len(v), -1)
    if bits in _WORD_DTYPES:
        return np.ascontiguousarray(rows.astype(_WORD_DTYPES[bits])).view(np.uint8) \
            .reshape(len(rows), -1)
    planes = ((rows.astype(np.uint64)[:, :, None] >> np.arange(bits, dtype=np.uint64)) & 1)
    return np.packbits(planes.astype(np.uint8).reshape(len(rows), -1), axis=1,
                       bitorder="little")


def unpack_bits(buf: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: bytes ``(N, nbytes)`` -> unsigned int64 ``(N, count)``.

    Bytes past the ``count`` values (padding) are ignored; fewer raise :class:`IRError`.
    """
    buf = np.asarray(buf, dtype=np.uint8)
    buf = buf.reshape(len(buf), -1)
    need = -(-count * bits // 8)
    if buf.shape[1] < need:
        raise IRError(f"{buf.shape[1]} bytes hold fewer than {count} values of {bits} bits "
                      f"({need} bytes)")
    if bits in _WORD_DTYPES:
        return np.ascontiguousarray(buf[:, :need]).view(_WORD_DTYPES[bits]).astype(np.int64)
    planes = np.unpackbits(buf[:, :need], axis=1, bitorder="little")[:, :count * bits]
    return (planes.reshape(len(buf), count, bits).astype(np.int64)
            << np.arange(bits, dtype=np.int64)).sum(axis=2)


@dataclass(frozen=True)
class Port:
    """One stream port: the IR tensor it carries and how its frames are packed.

    ``shape``, ``lo`` and ``hi`` are the IR tensor's (:class:`~lcp.tensor.TensorSpec`); ``bits``
    and ``signed`` follow from the range; ``width`` is the ``tdata`` bits, ``words`` the words
    per image; ``perm`` maps stream position -> IR flat index. This is the ``input`` / ``output``
    entry of ``lcp_engine.json`` (:meth:`to_json`).
    """

    tensor: str
    shape: tuple[int, ...]
    lo: int
    hi: int
    bits: int
    signed: bool
    width: int
    words: int
    perm: tuple[int, ...] = field(repr=False)

    @classmethod
    def of(cls, tensor: str, shape, lo: int, hi: int, perm, width: int) -> "Port":
        """The port of a tensor of IR ``shape`` and range ``[lo, hi]`` streamed in ``perm``
        order on ``width``-bit words."""
        shape = tuple(int(s) for s in shape)
        bits, signed = bits_for_range(int(lo), int(hi))
        size = int(np.prod(shape))
        perm = tuple(range(size)) if perm is None else tuple(int(p) for p in perm)
        if sorted(perm) != list(range(size)):
            raise IRError(f"port {tensor!r}: perm is not a permutation of {size} elements")
        return cls(tensor, shape, int(lo), int(hi), bits, signed, int(width),
                   words_per_frame(size, bits, int(width)), perm)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def frame_bytes(self) -> int:
        return self.words * self.width // 8

    @cached_property
    def index(self) -> np.ndarray:
        """``perm`` as an int64 array (stream position -> IR flat index)."""
        return np.asarray(self.perm, dtype=np.int64)

    def format_word(self) -> int:
        """The port's FORMAT register: bits, signed, rank, ``tdata`` width."""
        return self.bits | (int(self.signed) << 8) | (len(self.shape) << 12) | (self.width << 16)

    def to_json(self) -> dict:
        natural = self.perm == tuple(range(self.size))
        return {"tensor": self.tensor, "shape": list(self.shape), "lo": self.lo, "hi": self.hi,
                "bits": self.bits, "signed": self.signed, "tdata_bits": self.width,
                "words_per_frame": self.words, "bytes_per_frame": self.frame_bytes,
                "perm": None if natural else list(self.perm)}

    @classmethod
    def from_json(cls, d: dict) -> "Port":
        shape = tuple(int(s) for s in d["shape"])
        perm = d.get("perm")
        perm = tuple(range(int(np.prod(shape)))) if perm is None else tuple(int(p) for p in perm)
        return cls(d["tensor"], shape, int(d["lo"]), int(d["hi"]), int(d["bits"]),
                   bool(d["signed"]), int(d["tdata_bits"]), int(d["words_per_frame"]), perm)


def pack_frames(x: np.ndarray, port: Port) -> np.ndarray:
    """Integer images ``(N, *port.shape)`` -> frames ``uint8 (N, port.frame_bytes)``."""
    x = np.asarray(x)
    s = x.reshape(len(x), -1)[:, port.index].astype(np.int64) & ((1 << port.bits) - 1)
    raw = pack_bits(s.astype(np.uint64), port.bits)
    out = np.zeros((len(x), port.frame_bytes), dtype=np.uint8)
    out[:, :raw.shape[1]] = raw
    return out


def unpack_frames(frames: np.ndarray, port: Port) -> np.ndarray:
    """Inverse of :func:`pack_frames`: frames ``uint8 (N, >= bytes of the data)`` -> integer
    images ``(N, *port.shape)`` (int64)."""
    frames = np.asarray(frames, dtype=np.uint8)
    v = unpack_bits(frames, port.bits, port.size)
    if port.signed:
        v = np.where(v >= 1 << (port.bits - 1), v - (1 << port.bits), v)
    out = np.empty_like(v)
    out[:, port.index] = v
    return out.reshape(len(frames), *port.shape)
