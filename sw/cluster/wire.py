"""Wire encodings of integer activations between the dispatcher and the nodes.

Every tensor crosses the network as one *tensor message*: a small dict (msgpack, sent by Dask's
comm layer) whose only large field is the payload ``d`` (bytes)::

    {"e": encoding, "s": [N, *shape], "lo": int, "b": bits, "sc": scale, "d": payload}

Encodings
---------
``packed`` (default)
    Integers only. The values are offset by ``lo`` (the tensor's lower bound from the IR), so
    they lie in ``[0, hi - lo]``, and stored with ``b = bits_for_range(0, hi - lo)`` bits each:
    ``b`` of 8, 16, 32 or 64 as little-endian unsigned words; ``b`` below 8 bit-packed
    least-significant bit first (value ``i`` occupies bits ``i*b .. i*b+b-1`` of the stream,
    bytes filled from bit 0); other ``b`` rounded up to the next word. One image of a 4-bit
    activation therefore costs ``TensorSpec.nbytes`` = ``ceil(size * 4 / 8)`` bytes.
``packed-lz4``
    ``packed``, then an LZ4 frame.
``float32``
    The real values ``q * scale`` as little-endian float32 (a float pipeline without compression).
``zfp-lz4``
    What DEFER sends: the float32 real values (channels last for images, as Keras holds them),
    serialized with ZFP in its lossless (reversible) mode, then compressed with an LZ4 frame.
    The receiver decompresses and recovers the integers as ``round(f / scale)``, which is exact
    because ``|q| < 2**22``.

Decoding needs only the message; the receiver checks the result against the tensor spec it
expects (:func:`decode` with ``spec``).
"""

from __future__ import annotations

import numpy as np

from lcp.ir import IRError, TensorSpec, bits_for_range

__all__ = ["ENCODINGS", "encode", "decode", "payload_nbytes"]

#: Names accepted by :func:`encode`.
ENCODINGS = ("packed", "packed-lz4", "float32", "zfp-lz4")

_WORDS = (8, 16, 32, 64)


def _width(lo: int, hi: int) -> int:
    return bits_for_range(0, int(hi) - int(lo))[0]


def _pack(v: np.ndarray, b: int) -> bytes:
    """``v`` (unsigned, each < 2**b) as the ``packed`` payload."""
    v = v.reshape(-1)
    if b >= 8:
        w = next(w for w in _WORDS if w >= b)
        return v.astype(f"<u{w // 8}").tobytes()
    if b == 4:
        u = v.astype(np.uint8)
        if u.size % 2:
            u = np.append(u, np.uint8(0))
        return (u[0::2] | (u[1::2] << 4)).tobytes()
    planes = ((v.astype(np.uint8)[:, None] >> np.arange(b, dtype=np.uint8)) & 1)
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def _unpack(d: bytes, b: int, n: int) -> np.ndarray:
    """Inverse of :func:`_pack`: ``n`` unsigned values as int64."""
    if b >= 8:
        w = next(w for w in _WORDS if w >= b)
        a = np.frombuffer(d, dtype=f"<u{w // 8}")
        if a.size != n:
            raise IRError(f"packed payload holds {a.size} values, expected {n}")
        return a.astype(np.int64)
    buf = np.frombuffer(d, dtype=np.uint8)
    if buf.size != (n * b + 7) // 8:
        raise IRError(f"packed payload has {buf.size} bytes, expected {(n * b + 7) // 8}")
    if b == 4:
        out = np.empty(buf.size * 2, dtype=np.int64)
        out[0::2] = buf & 0x0F
        out[1::2] = buf >> 4
        return out[:n]
    bits = np.unpackbits(buf, count=n * b, bitorder="little").reshape(n, b).astype(np.int64)
    return (bits << np.arange(b, dtype=np.int64)).sum(axis=1)


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim == 4 else a


def _channels_first(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if a.ndim == 4 else a


def encode(x: np.ndarray, spec: TensorSpec, encoding: str = "packed") -> dict:
    """Encode a batch-first integer tensor whose values lie in ``spec``'s range.

    Parameters
    ----------
    x : ndarray
        Integer array ``(N, *spec.shape)``.
    spec : TensorSpec
        Range (``lo``, ``hi``) and, for the float encodings, ``scale`` (1.0 when ``None``).
    encoding : str
        One of :data:`ENCODINGS`.

    Raises
    ------
    IRError
        on an unknown encoding, a non-integer array, or values outside ``spec``'s range.
    """
    if encoding not in ENCODINGS:
        raise IRError(f"unknown wire encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise IRError(f"wire: integer tensor expected, got {x.dtype}")
    if x.size and (x.min() < spec.lo or x.max() > spec.hi):
        raise IRError(f"wire: values outside the tensor range [{spec.lo}, {spec.hi}]")
    scale = float(spec.scale) if spec.scale is not None else 1.0
    b = _width(spec.lo, spec.hi)
    msg = {"e": encoding, "s": [int(s) for s in x.shape], "lo": int(spec.lo), "b": b,
           "sc": scale}
    if encoding in ("packed", "packed-lz4"):
        d = _pack((x.astype(np.int64) - spec.lo).astype(np.uint64), b)
        if encoding == "packed-lz4":
            import lz4.frame
            d = lz4.frame.compress(d)
    else:
        f = (x.astype(np.float32) * np.float32(scale)).astype(np.float32)
        if encoding == "float32":
            d = f.astype("<f4").tobytes()
        else:
            import lz4.frame
            import zfpy
            d = lz4.frame.compress(zfpy.compress_numpy(_channels_last(f)))
    msg["d"] = bytes(d)
    return msg


def decode(msg: dict, spec: TensorSpec | None = None) -> np.ndarray:
    """Integer array (int64, batch first) of a message made by :func:`encode`.

    With ``spec``, the per-image shape and the value range are checked against it.

    Raises
    ------
    IRError
        on a malformed message or one that does not match ``spec``.
    """
    try:
        enc, shape, lo, b, scale, d = (msg["e"], tuple(msg["s"]), int(msg["lo"]), int(msg["b"]),
                                       float(msg["sc"]), msg["d"])
    except (KeyError, TypeError, ValueError) as e:
        raise IRError(f"wire: malformed tensor message ({e!r})") from None
    n = int(np.prod(shape)) if shape else 1
    if enc in ("packed", "packed-lz4"):
        if enc == "packed-lz4":
            import lz4.frame
            d = lz4.frame.decompress(d)
        x = (_unpack(d, b, n) + lo).reshape(shape)
    elif enc == "float32":
        f = np.frombuffer(d, dtype="<f4")
        if f.size != n:
            raise IRError(f"wire: float32 payload holds {f.size} values, expected {n}")
        x = np.rint(f.astype(np.float64) / scale).astype(np.int64).reshape(shape)
    elif enc == "zfp-lz4":
        import lz4.frame
        import zfpy
        f = _channels_first(zfpy.decompress_numpy(lz4.frame.decompress(d)))
        if f.size != n:
            raise IRError(f"wire: zfp payload holds {f.size} values, expected {n}")
        x = np.rint(f.astype(np.float64) / scale).astype(np.int64).reshape(shape)
    else:
        raise IRError(f"wire: unknown encoding {enc!r}")
    if spec is not None:
        if tuple(shape[1:]) != tuple(spec.shape):
            raise IRError(f"wire: tensor of shape {shape}, expected (N, "
                          f"{', '.join(map(str, spec.shape))})")
        if x.size and (x.min() < spec.lo or x.max() > spec.hi):
            raise IRError(f"wire: decoded values outside [{spec.lo}, {spec.hi}]")
    return x


def payload_nbytes(msg: dict) -> int:
    """Bytes of the payload field of a tensor message (excluding the small header)."""
    return len(msg["d"])
