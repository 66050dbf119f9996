"""The integer IR: the one contract that the golden reference, the hardware generator, the
estimators and the cluster runtime read.

A :class:`Model` is a set of :class:`Branch` es that all read the model's quantized input, plus a
``merge`` graph that reads the branch outputs (``concat`` first, then the last layer(s)). Every
tensor is an integer tensor described by a :class:`TensorSpec` (per-image shape, integer range,
bit width). Layers are plain records (:class:`Layer`): an op name from :data:`OPS`, input and
output tensor names, attributes (JSON scalars and lists) and integer parameter arrays.

Integer semantics of each op (``x`` the input, per image, channels first):

``conv``
    ``y[o,i,j] = bias[o] + sum_{c,u,v} w[o,c,u,v] * xpad[c, i*sh+u, j*sw+v]``; ``xpad`` pads with 0
    (``pads`` = top, left, bottom, right). Params ``weight`` (O,C,KH,KW), optional ``bias`` (O,).
    Attribute ``weight_bits``: the weight quantizer's bit width (weights fit in it, signed).
``dense``
    ``y[o] = bias[o] + sum_f w[o,f] * x[f]``. Params ``weight`` (O,F), optional ``bias`` (O,),
    attribute ``weight_bits`` as for ``conv``.
``threshold``
    ``y[c,...] = out_lo + #{k : x[c,...] >= T[c,k]}``; ``thresholds`` (C or 1, L) sorted
    ascending per row, ``L = out_hi - out_lo``. This is requantization (scale, bias, batch norm,
    ReLU, rounding and clipping) as exact integer decisions.
``maxpool``
    Window maximum; padding never wins (ONNX ``-inf`` padding).
``avgpool``
    ``y = clip(rnd(sum_window(x) / 2**shift), out_lo, out_hi)`` (``shift`` may be negative: an
    exact product) with ``rounding`` in
    ``floor | round | ceil`` (``round`` = half to even), zero padding counted in the sum.
``add``
    ``y = a + b`` elementwise (both operands share one scale).
``concat``
    Concatenation along channels (axis 0 of the per-image shape).
``flatten``
    ``(C,H,W) -> (C*H*W,)`` in C order.
``relu``
    ``max(x, 0)``.

The model output is integer; :class:`Dequant` maps it to the float output of the source model:
``y = x * scale[c] + offset[c]`` then ``max(y, 0)`` if ``relu``.

Serialization: :func:`save` writes ``NAME.json`` (structure, versioned) and ``NAME.npz`` (integer
arrays); :func:`load` reads them back without pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = [
    "IR_FORMAT", "IR_VERSION", "OPS", "IRError",
    "TensorSpec", "Layer", "Branch", "InputSpec", "Dequant", "Model",
    "int_range", "bits_for_range", "round_float", "save", "load",
]

IR_FORMAT = "lcp-ir"
IR_VERSION = 1

#: Op name -> (number of inputs, parameter names, attribute names).
OPS: dict[str, tuple[int | None, tuple[str, ...], tuple[str, ...]]] = {
    "conv": (1, ("weight", "bias"), ("kernel", "stride", "pads", "weight_bits")),
    "dense": (1, ("weight", "bias"), ("weight_bits",)),
    "threshold": (1, ("thresholds",), ("out_lo", "out_hi")),
    "maxpool": (1, (), ("kernel", "stride", "pads")),
    "avgpool": (1, (), ("kernel", "stride", "pads", "shift", "rounding", "out_lo", "out_hi")),
    "add": (2, (), ()),
    "concat": (None, (), ()),
    "flatten": (1, (), ()),
    "relu": (1, (), ()),
}


class IRError(ValueError):
    """An IR that breaks the contract (unknown op, bad shape, missing tensor, bad file)."""


#: Rounding modes of QONNX's Quant/Trunc (``HALF_EVEN`` = ``ROUND``), applied to floats.
_ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "DOWN": np.fix,
    "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)),
    "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
}


def round_float(x: np.ndarray, mode: str) -> np.ndarray:
    """Round floats to integers (still float) by a QONNX rounding mode name."""
    try:
        return _ROUNDING[mode.upper()](x)
    except KeyError:
        raise IRError(f"unknown rounding mode {mode!r} (known: {', '.join(_ROUNDING)})") from None


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a ``bits``-wide integer (``narrow``: symmetric signed range)."""
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, (1 << bits) - 1 - (1 if narrow else 0)


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """Smallest ``(bits, signed)`` that holds every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise IRError(f"empty integer range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, hi.bit_length()), False
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1, True


@dataclass(frozen=True)
class TensorSpec:
    """An integer tensor: per-image ``shape`` (channels first) and the range of its values.

    ``scale`` is the real value of one integer step when the tensor is a quantized activation
    with one per-tensor scale (informative: nothing in the integer semantics reads it);
    ``None`` for accumulators.
    """

    shape: tuple[int, ...]
    lo: int
    hi: int
    scale: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", int(self.hi))
        if any(s <= 0 for s in self.shape):
            raise IRError(f"tensor shape {self.shape} has a non-positive dimension")
        bits_for_range(self.lo, self.hi)

    @property
    def bits(self) -> int:
        return bits_for_range(self.lo, self.hi)[0]

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of one image's tensor, bit-packed (``ceil(size * bits / 8)``)."""
        return (self.size * self.bits + 7) // 8

    def to_json(self) -> dict:
        d = {"shape": list(self.shape), "lo": self.lo, "hi": self.hi,
             "bits": self.bits, "signed": self.signed}
        if self.scale is not None:
            d["scale"] = float(self.scale)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(_int_tuple(d["shape"], "shape"), _int(d["lo"], "lo"), _int(d["hi"], "hi"),
                   d.get("scale"))


@dataclass
class Layer:
    """One integer op: ``output = op(*inputs)`` (see the module docstring for each op)."""

    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.op not in OPS:
            raise IRError(f"layer {self.name!r}: unknown op {self.op!r} "
                          f"(the IR has {', '.join(sorted(OPS))})")
        n_in, pnames, anames = OPS[self.op]
        if n_in is not None and len(self.inputs) != n_in:
            raise IRError(f"layer {self.name!r} ({self.op}) takes {n_in} input(s), "
                          f"not {len(self.inputs)}")
        for p in self.params:
            if p not in pnames:
                raise IRError(f"layer {self.name!r} ({self.op}): unknown parameter {p!r}")
        for a in anames:
            if a not in self.attrs:
                raise IRError(f"layer {self.name!r} ({self.op}): missing attribute {a!r}")
        for k, v in self.params.items():
            if not np.issubdtype(np.asarray(v).dtype, np.integer):
                raise IRError(f"layer {self.name!r}: parameter {k!r} is not integer "
                              f"({np.asarray(v).dtype})")
            self.params[k] = np.asarray(v, dtype=np.int64)

    @property
    def weight(self) -> np.ndarray | None:
        return self.params.get("weight")

    @property
    def bias(self) -> np.ndarray | None:
        return self.params.get("bias")


@dataclass
class Branch:
    """A chain (or small DAG) of layers in execution order, from ``inputs`` to ``output``."""

    name: str
    inputs: list[str]
    layers: list[Layer]
    output: str

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)


@dataclass(frozen=True)
class InputSpec:
    """How the float model input becomes the integer tensor ``name``.

    ``q = round(clip(float32(x) / float32(scale), lo, hi))`` with the QONNX rounding mode
    ``rounding`` (half to even by default): the division is done in float32, as Brevitas and
    qonnx do it, so the integers agree with both.
    """

    name: str
    shape: tuple[int, ...]
    scale: float
    lo: int
    hi: int
    rounding: str = "ROUND"

    def quantize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise IRError(f"input dtype {x.dtype} is not numeric")
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise IRError(f"input shape {tuple(x.shape)} does not match the model's "
                          f"(N, {', '.join(map(str, self.shape))})")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise IRError("input holds NaN or infinite values")
        q = np.clip(x.astype(np.float32) / np.float32(self.scale), self.lo, self.hi)
        return round_float(q, self.rounding).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Float32 image of integer inputs (``q * scale``), which :meth:`quantize` maps back."""
        return (np.asarray(q).astype(np.float32) * np.float32(self.scale)).astype(np.float32)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "scale": float(self.scale),
                "lo": self.lo, "hi": self.hi, "rounding": self.rounding}

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        return cls(d["name"], _int_tuple(d["shape"], "shape"), float(d["scale"]),
                   _int(d["lo"], "lo"), _int(d["hi"], "hi"), d.get("rounding", "ROUND"))


@dataclass
class Dequant:
    """Float output of the model from the integer output: ``x*scale[c] + offset[c]`` (float64),
    then ``max(., 0)`` when ``relu``. ``scale`` and ``offset`` have one entry per channel."""

    scale: np.ndarray
    offset: np.ndarray
    relu: bool = False

    def __post_init__(self):
        self.scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        self.offset = np.asarray(self.offset, dtype=np.float64).reshape(-1)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (y.ndim - 2)
        out = y.astype(np.float64) * self.scale.reshape(shape) + self.offset.reshape(shape)
        return np.maximum(out, 0.0) if self.relu else out


@dataclass
class Model:
    """A whole LCP model: ``branches`` (each reads ``input.name``) and ``merge`` (reads the
    branch outputs, in branch order). ``tensors`` describes every tensor by name."""

    name: str
    input: InputSpec
    tensors: dict[str, TensorSpec]
    branches: list[Branch]
    merge: Branch
    dequant: Dequant
    meta: dict = field(default_factory=dict)

    # -- navigation ------------------------------------------------------------------------
    @property
    def output(self) -> str:
        return self.merge.output

    @property
    def graphs(self) -> list[Branch]:
        return [*self.branches, self.merge]

    def layers(self) -> Iterator[Layer]:
        for g in self.graphs:
            yield from g.layers

    def layer(self, name: str) -> Layer:
        for l in self.layers():
            if l.name == name:
                return l
        raise KeyError(name)

    def spec(self, tensor: str) -> TensorSpec:
        return self.tensors[tensor]

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> "Model":
        """Check names, wiring and shapes; raise :class:`IRError` naming the first problem."""
        from .shapes import infer_layer  # local import: shapes depends on this module

        if self.input.name not in self.tensors:
            raise IRError(f"input tensor {self.input.name!r} has no spec")
        names = set()
        for g in self.graphs:
            known = set(g.inputs)
            for t in g.inputs:
                if t not in self.tensors:
                    raise IRError(f"{g.name}: input tensor {t!r} has no spec")
            for l in g.layers:
                if l.name in names:
                    raise IRError(f"duplicate layer name {l.name!r}")
                names.add(l.name)
                for t in l.inputs:
                    if t not in known:
                        raise IRError(f"layer {l.name!r} reads {t!r} before it is produced "
                                      f"in {g.name}")
                if l.output not in self.tensors:
                    raise IRError(f"layer {l.name!r}: output {l.output!r} has no spec")
                want = infer_layer(l, [self.tensors[t] for t in l.inputs])
                have = self.tensors[l.output]
                if want.shape != have.shape:
                    raise IRError(f"layer {l.name!r}: output shape {have.shape}, the op gives "
                                  f"{want.shape}")
                if have.lo > want.lo or have.hi < want.hi:
                    raise IRError(f"layer {l.name!r}: output range [{have.lo}, {have.hi}] does "
                                  f"not hold the op's range [{want.lo}, {want.hi}]")
                known.add(l.output)
            if g.output not in known:
                raise IRError(f"{g.name}: output {g.output!r} is never produced")
        for b in self.branches:
            if b.inputs != [self.input.name]:
                raise IRError(f"{b.name} must read only the model input {self.input.name!r}")
        if self.merge.inputs != [b.output for b in self.branches]:
            raise IRError("merge must read the branch outputs in branch order")
        n_out = self.tensors[self.output].channels
        if self.dequant.scale.size not in (1, n_out) or self.dequant.offset.size not in (1, n_out):
            raise IRError(f"dequant has {self.dequant.scale.size} scales for {n_out} channels")
        return self

    # -- identity --------------------------------------------------------------------------
    def digest(self) -> str:
        """SHA-256 of the canonical JSON and every array: equal digests, equal models."""
        h = hashlib.sha256()
        doc, arrays = _to_doc(self)
        h.update(json.dumps(doc, sort_keys=True).encode())
        for k in sorted(arrays):
            a = np.ascontiguousarray(arrays[k])
            h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()


# -- serialization -------------------------------------------------------------------------

def _layer_doc(l: Layer, arrays: dict) -> dict:
    d = {"name": l.name, "op": l.op, "inputs": list(l.inputs), "output": l.output,
         "attrs": _jsonable(l.attrs), "params": {}}
    for k, v in l.params.items():
        key = f"{l.name}/{k}"
        arrays[key] = np.asarray(v, dtype=np.int64)
        d["params"][k] = key
    return d


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def _to_doc(m: Model) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    graph = lambda g: {"name": g.name, "inputs": list(g.inputs), "output": g.output,
                       "layers": [_layer_doc(l, arrays) for l in g.layers]}
    doc = {
        "format": IR_FORMAT, "version": IR_VERSION, "name": m.name,
        "input": m.input.to_json(),
        "tensors": {k: v.to_json() for k, v in m.tensors.items()},
        "branches": [graph(b) for b in m.branches],
        "merge": graph(m.merge),
        "dequant": {"scale": m.dequant.scale.tolist(), "offset": m.dequant.offset.tolist(),
                    "relu": bool(m.dequant.relu)},
        "meta": _jsonable(m.meta),
    }
    return doc, arrays


def save(model: Model, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` with suffixes ``.json`` and ``.npz``; return both paths."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    doc, arrays = _to_doc(model)
    jpath, npath = base.with_suffix(".json"), base.with_suffix(".npz")
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(doc, indent=1))
    np.savez_compressed(npath, **arrays)
    return jpath, npath


def load(path: str | Path) -> Model:
    """Read a model written by :func:`save` (``.json`` or ``.npz`` path, or the common stem).

    Raises :class:`IRError` naming the file and field on a bad or foreign file.
    """
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    jpath, npath = base.with_suffix(".json"), base.with_suffix(".npz")
    try:
        doc = json.loads(jpath.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IRError(f"{jpath}: not a readable IR JSON file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != IR_FORMAT:
        raise IRError(f"{jpath}: not an {IR_FORMAT} file")
    if doc.get("version") != IR_VERSION:
        raise IRError(f"{jpath}: IR version {doc.get('version')!r}, this build reads "
                      f"{IR_VERSION}")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise IRError(f"{npath}: not a readable IR array file ({e})") from None

    def part(where: str, make):
        """``make()``, its errors named by the file and the object ``where``."""
        try:
            return make()
        except KeyError as e:
            raise IRError(f"{jpath}: {where}: missing field or array {e}") from None
        except (TypeError, ValueError, AttributeError) as e:   # IRError is a ValueError
            if str(e).startswith(f"{jpath}: "):                # named by an inner part()
                raise
            raise IRError(f"{jpath}: {where}: {e}") from None

    def graph(d, where):
        layers = []
        for i, ld in enumerate(part(where, lambda: d["layers"])):
            lw = f"{where} layer {ld.get('name', i) if isinstance(ld, dict) else i!r}"
            layers.append(part(lw, lambda: Layer(
                ld["name"], ld["op"], list(ld["inputs"]), ld["output"], _untuple(ld["attrs"]),
                {k: arrays[v] for k, v in ld["params"].items()})))
        return part(where, lambda: Branch(d["name"], list(d["inputs"]), layers, d["output"]))

    top = part("top level", lambda: (doc["name"], doc["input"], doc["tensors"], doc["branches"],
                                     doc["merge"], doc["dequant"]))
    name, inp, tensors, branches, merge, dq = top
    model = part("top level", lambda: Model(
        name=name, input=part("input", lambda: InputSpec.from_json(inp)),
        tensors={k: part(f"tensor {k!r}", lambda: TensorSpec.from_json(v))
                 for k, v in part("tensors", lambda: tensors.items())},
        branches=[graph(b, f"branch {i}") for i, b in enumerate(branches)],
        merge=graph(merge, "merge"),
        dequant=part("dequant", lambda: Dequant(np.array(dq["scale"]), np.array(dq["offset"]),
                                                bool(dq["relu"]))),
        meta=doc.get("meta", {})))
    try:
        return model.validate()
    except IRError as e:
        raise IRError(f"{jpath}: {e}") from None


def _int(v, field: str) -> int:
    """A JSON integer field (not a float, string or bool), else :class:`IRError`."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise IRError(f"{field} {v!r} is not an integer")
    return v


def _int_tuple(v, field: str) -> tuple[int, ...]:
    if not isinstance(v, list):
        raise IRError(f"{field} {v!r} is not a list of integers")
    bad = [s for s in v if isinstance(s, bool) or not isinstance(s, int)]
    if bad:
        raise IRError(f"{field} {v!r}: {bad[0]!r} is not an integer")
    return tuple(v)


def _untuple(attrs: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}


def iter_params(model: Model) -> Iterable[tuple[Layer, str, np.ndarray]]:
    for l in model.layers():
        for k, v in l.params.items():
            yield l, k, v
