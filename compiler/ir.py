"""The integer IR: the one contract that the golden reference, the hardware generator, the
estimators and the cluster runtime read.

A :class:`Model` is a set of :class:`Branch` es that all read the model's quantized input, plus a
``merge`` graph that reads the branch outputs (``concat`` first, then the last layer(s)).
Branches may also meet before the merge, at *exchange points*: a branch lists, after the model
input, tensors produced by other branches that it reads (the separable-network family between
LCP, no exchange, and model parallelism, an exchange after every layer); :attr:`Model.exchanges`
lists them and :meth:`Model.schedule` orders the branch layers so that each runs after its
inputs exist. A plain LCP model has none, and its branches run one after another. Every
tensor is an integer tensor described by a :class:`TensorSpec` (per-image shape, integer range,
bit width). Layers are plain records (:class:`Layer`): an op name from :data:`OPS`, input and
output tensor names, attributes (JSON scalars and lists) and integer parameter arrays.

The integer semantics of each op are defined once, in the op table (:mod:`lcp.ops`: one
:class:`~lcp.ops.OpDef` per op, its semantics in the docstring of the file that defines it):
``conv`` (1-D and 2-D, grouped, depthwise), ``dense``, ``threshold``, ``maxpool``, ``avgpool``,
``add``, ``concat``, ``flatten``, ``relu``.

The model output is integer; :class:`Dequant` maps it to the float output of the source model:
``y = x * scale[c] + offset[c]`` then ``max(y, 0)`` if ``relu``.

Serialization: :func:`save` writes ``NAME.json`` (structure, versioned) and ``NAME.npz`` (integer
arrays); :func:`load` reads them back without pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import ops as _ops
from .ops import OPS
from .tensor import IRError, TensorSpec, bits_for_range, int_range, round_float

__all__ = [
    "IR_FORMAT", "IR_VERSION", "OPS", "IRError",
    "TensorSpec", "Layer", "Branch", "InputSpec", "Dequant", "Model",
    "int_range", "bits_for_range", "round_float", "save", "load", "INPUT_FORMATS",
]

IR_FORMAT = "lcp-ir"
#: Version 2 added grouped/1-D convolutions, bipolar weights and tensors, scaled ``add``,
#: float pre-processing of the input and declared input formats. Version 1 files load
#: unchanged (every new field has the version 1 meaning as its default).
IR_VERSION = 2
_READS = (1, 2)


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
        for k, v in self.params.items():
            if not np.issubdtype(np.asarray(v).dtype, np.integer):
                raise IRError(f"layer {self.name!r}: parameter {k!r} is not integer "
                              f"({np.asarray(v).dtype})")
            self.params[k] = np.asarray(v, dtype=np.int64)
        self.attrs = dict(self.attrs)
        _ops.get(self.op).check(self)

    @property
    def opdef(self) -> _ops.OpDef:
        """This layer's op definition (the op table's entry)."""
        return OPS[self.op]

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


#: Float ops the input may go through before its quantizer (constants broadcast per image).
_PRE_OPS = {"mul": np.multiply, "add": np.add, "sub": np.subtract, "div": np.divide}
#: Input formats a user can declare for a model whose input is not quantized inside it.
INPUT_FORMATS = ("uint8", "uint8:SCALE", "int8:SCALE")


def parse_input_format(text: str) -> tuple[float, int, int]:
    """``(scale, lo, hi)`` of a declared input format: ``uint8`` (k/255, k = 0..255, images
    stored in bytes), ``uint8:SCALE`` (k * SCALE, k = 0..255) or ``int8:SCALE`` (k * SCALE,
    k = -128..127). :class:`IRError` on anything else."""
    kind, _, sc = str(text).partition(":")
    ranges = {"uint8": (0, 255), "int8": (-128, 127)}
    if kind not in ranges:
        raise IRError(f"input format {text!r} is not one of {', '.join(INPUT_FORMATS)}")
    if not sc:
        if kind == "int8":
            raise IRError("input format 'int8' needs a scale: int8:SCALE (values k * SCALE)")
        return 1.0 / 255.0, *ranges[kind]
    try:
        scale = float(sc)
    except ValueError:
        raise IRError(f"input format {text!r}: scale {sc!r} is not a number") from None
    if not (np.isfinite(scale) and scale > 0):
        raise IRError(f"input format {text!r}: the scale must be positive and finite")
    return scale, *ranges[kind]


@dataclass(frozen=True)
class InputSpec:
    """How the float model input becomes the integer tensor ``name``.

    ``pre`` lists the float ops the model applies to its input before the quantizer
    (``(op, constant)``, op in mul/add/sub/div, constants broadcast to one image, e.g.
    bnn_pynq's ``2 * x - 1``); they run in float32, in order, as the ONNX graph runs them.
    Then, by ``format``:

    ``quant`` (the model's own quantizer)
        ``q = round(clip(float32(v) / float32(scale), lo, hi))`` with the QONNX rounding mode
        ``rounding`` (half to even by default): the division is done in float32, as Brevitas
        and qonnx do it, so the integers agree with both.
    ``bipolar`` (a ``BipolarQuant``)
        ``q = +1 if v >= 0 else -1``.
    a declared format (``uint8``, ``uint8:SCALE``, ``int8:SCALE``; see
    :func:`parse_input_format`)
        the model reads the float input itself, and the user states that every input value is
        ``k * scale`` for an integer ``k`` in ``[lo, hi]`` (``uint8``: ``k / 255``). ``q = k``;
        a value off that grid (by more than 1e-3 of a step) or out of range is an error, never
        rounded silently.
    """

    name: str
    shape: tuple[int, ...]
    scale: float
    lo: int
    hi: int
    rounding: str = "ROUND"
    format: str = "quant"
    pre: tuple = ()

    def __post_init__(self):
        if self.format not in ("quant", "bipolar"):
            scale, lo, hi = parse_input_format(self.format)
            if (lo, hi) != (self.lo, self.hi):
                raise IRError(f"input format {self.format!r} has range [{lo}, {hi}], the "
                              f"input spec says [{self.lo}, {self.hi}]")
        if self.format == "bipolar" and (self.lo, self.hi) != (-1, 1):
            raise IRError("a bipolar input has the range [-1, 1]")
        for op, _ in self.pre:
            if op not in _PRE_OPS:
                raise IRError(f"input pre-processing op {op!r} is not one of "
                              f"{', '.join(_PRE_OPS)}")

    @property
    def declared(self) -> bool:
        """The input format was declared by the user (the model reads the float input)."""
        return self.format not in ("quant", "bipolar")

    @property
    def bipolar(self) -> bool:
        return self.format == "bipolar"

    def check(self, x: np.ndarray, where: str = "input") -> np.ndarray:
        """``x`` as a numeric array of the model's shape (``where`` names it in errors)."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise IRError(f"{where}: dtype {x.dtype} is not numeric")
        if tuple(x.shape[1:]) != tuple(self.shape) or x.ndim != len(self.shape) + 1:
            raise IRError(f"{where}: shape {tuple(x.shape)} does not match the model's "
                          f"(N, {', '.join(map(str, self.shape))})")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise IRError(f"{where}: holds NaN or infinite values")
        return x

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """The float32 values the model's quantizer sees (``pre`` applied in float32)."""
        v = np.asarray(x).astype(np.float32)
        for op, k in self.pre:
            v = _PRE_OPS[op](v, np.asarray(k, dtype=np.float32)).astype(np.float32)
        return v

    def quantize(self, x: np.ndarray, where: str = "input") -> np.ndarray:
        x = self.check(x, where)
        if self.declared:
            k = np.asarray(x, dtype=np.float64) / self.scale
            q = np.round(k)
            off = np.abs(k - q) > 1e-3
            if off.any():
                i = np.argwhere(off)[0]
                raise IRError(f"{where}: value {x[tuple(i)]!r} at index {tuple(int(j) for j in i)} "
                              f"is not on the declared {self.format} grid (k * {self.scale:g})")
            if q.size and (q.min() < self.lo or q.max() > self.hi):
                raise IRError(f"{where}: values outside the declared {self.format} range "
                              f"[{self.lo * self.scale:g}, {self.hi * self.scale:g}]")
            return q.astype(np.int64)
        v = self.preprocess(x)
        if self.bipolar:
            return np.where(v >= 0, 1, -1).astype(np.int64)
        q = np.clip(v / np.float32(self.scale), self.lo, self.hi)
        return round_float(q, self.rounding).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """A float image of integer inputs that :meth:`quantize` maps back to them: ``q * scale``
        with ``pre`` undone (float32), or float64 ``k * scale`` for a declared format (its
        exact value)."""
        q = np.asarray(q)
        if self.declared:
            return q.astype(np.float64) * self.scale
        v = q.astype(np.float64) * (1.0 if self.bipolar else float(np.float32(self.scale)))
        for op, k in reversed(self.pre):
            k = np.asarray(k, dtype=np.float64)
            v = {"mul": np.divide, "div": np.multiply, "add": np.subtract,
                 "sub": np.add}[op](v, k)
        return v.astype(np.float32)

    def to_json(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "scale": float(self.scale),
             "lo": self.lo, "hi": self.hi, "rounding": self.rounding}
        if self.format != "quant":
            d["format"] = self.format
        if self.pre:
            d["pre"] = [[op, np.asarray(k, dtype=np.float32).tolist()] for op, k in self.pre]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        pre = tuple((op, np.asarray(k, dtype=np.float32)) for op, k in d.get("pre", []))
        for f in ("lo", "hi"):
            if not isinstance(d[f], int) or isinstance(d[f], bool):
                raise IRError(f"{f} {d[f]!r} is not an integer")
        return cls(d["name"], TensorSpec((*d["shape"],), 0, 0).shape, float(d["scale"]),
                   d["lo"], d["hi"], d.get("rounding", "ROUND"), d.get("format", "quant"), pre)


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

    @property
    def exchanges(self) -> list[tuple[str, int, int]]:
        """``(tensor, from_branch, to_branch)`` for every tensor a branch reads from another
        branch before the merge (empty for a plain LCP model)."""
        producer = {l.output: i for i, b in enumerate(self.branches) for l in b.layers}
        return [(t, producer[t], i) for i, b in enumerate(self.branches) for t in b.inputs[1:]]

    def schedule(self) -> list[tuple[int, Layer]]:
        """Every branch layer as ``(branch index, layer)`` in an order that runs each layer after
        its inputs exist: branch after branch for a plain LCP model; with exchanges, each
        branch runs until it waits for another's tensor. :class:`IRError` on a cycle."""
        if not any(len(b.inputs) > 1 for b in self.branches):
            return [(i, l) for i, b in enumerate(self.branches) for l in b.layers]
        done = {self.input.name}
        pos = [0] * len(self.branches)
        order: list[tuple[int, Layer]] = []
        total = sum(len(b.layers) for b in self.branches)
        while len(order) < total:
            progress = False
            for i, b in enumerate(self.branches):
                while pos[i] < len(b.layers) and all(t in done for t in b.layers[pos[i]].inputs):
                    l = b.layers[pos[i]]
                    order.append((i, l))
                    done.add(l.output)
                    pos[i] += 1
                    progress = True
            if not progress:
                stuck = [b.layers[pos[i]].name for i, b in enumerate(self.branches)
                         if pos[i] < len(b.layers)]
                raise IRError(f"the branches' exchanges form a cycle (waiting: "
                              f"{', '.join(stuck)})")
        return order

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
                l.opdef.check(l)
                want = infer(l, [self.tensors[t] for t in l.inputs])
                have = self.tensors[l.output]
                if want.shape != have.shape:
                    raise IRError(f"layer {l.name!r}: output shape {have.shape}, the op gives "
                                  f"{want.shape}")
                if have.lo > want.lo or have.hi < want.hi:
                    raise IRError(f"layer {l.name!r}: output range [{have.lo}, {have.hi}] does "
                                  f"not hold the op's range [{want.lo}, {want.hi}]")
                if have.bipolar and not want.bipolar:
                    raise IRError(f"layer {l.name!r}: output {l.output!r} is marked bipolar, "
                                  f"the op can produce 0")
                known.add(l.output)
            if g.output not in known:
                raise IRError(f"{g.name}: output {g.output!r} is never produced")
        producer = {l.output: i for i, b in enumerate(self.branches) for l in b.layers}
        for i, b in enumerate(self.branches):
            if not b.inputs or b.inputs[0] != self.input.name:
                raise IRError(f"{b.name} must read the model input {self.input.name!r} first")
            for t in b.inputs[1:]:
                if producer.get(t, i) == i:
                    raise IRError(f"{b.name}: input {t!r} is not produced by another branch "
                                  f"(a branch reads the model input and, at exchange points, "
                                  f"tensors of other branches)")
        self.schedule()             # the branches' exchanges must not form a cycle
        if self.merge.inputs != [b.output for b in self.branches]:
            raise IRError("merge must read the branch outputs in branch order")
        n_out = self.tensors[self.output].channels
        if self.dequant.scale.size not in (1, n_out) or self.dequant.offset.size not in (1, n_out):
            raise IRError(f"dequant has {self.dequant.scale.size} scales for {n_out} channels")
        return self

    def validate_in(self, source) -> "Model":
        """:meth:`validate`, with ``source`` (a file) named in the error."""
        try:
            return self.validate()
        except IRError as e:
            raise IRError(f"{source}: {e}") from None

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


def infer(layer: Layer, ins: list[TensorSpec]) -> TensorSpec:
    """Output spec of ``layer`` for input specs ``ins`` (the op table's inference);
    :class:`IRError` names the layer."""
    try:
        return layer.opdef.infer(layer, ins)
    except IRError as e:
        raise IRError(f"layer {layer.name!r} ({layer.op}): {e}") from None


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
    if doc.get("version") not in _READS:
        raise IRError(f"{jpath}: IR version {doc.get('version')!r}, this build reads "
                      f"{', '.join(map(str, _READS))}")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise IRError(f"{npath}: not a readable IR array file ({e})") from None
    return _from_doc(doc, arrays, jpath).validate_in(jpath)


def _field(d, key, what: str):
    if not isinstance(d, dict):
        raise IRError(f"{what} is not a JSON object")
    if key not in d:
        raise IRError(f"missing field or array {key!r}")
    return d[key]


def _from_doc(doc: dict, arrays: dict, jpath: Path) -> "Model":
    """Build the model of a parsed IR file; every error names the file and the object."""
    def guard(what, fn):
        try:
            return fn()
        except IRError as e:
            raise IRError(f"{jpath}: {what}: {e}") from None
        except KeyError as e:
            raise IRError(f"{jpath}: {what}: missing field or array {e}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise IRError(f"{jpath}: {what}: bad field ({type(e).__name__}: {e})") from None

    def layer(ld, gname):
        name = ld.get("name", "?") if isinstance(ld, dict) else "?"
        what = f"{gname} layer {name!r}"

        def make():
            params = {}
            for k, v in _field(ld, "params", what).items():
                if v not in arrays:
                    raise IRError(f"parameter {k!r}: array {v!r} is not in the .npz file")
                params[k] = arrays[v]
            return Layer(_field(ld, "name", what), _field(ld, "op", what),
                         list(_field(ld, "inputs", what)), _field(ld, "output", what),
                         _untuple(_field(ld, "attrs", what)), params)
        return guard(what, make)

    def graph(d, what):
        return guard(what, lambda: Branch(
            _field(d, "name", what), list(_field(d, "inputs", what)),
            [layer(ld, what) for ld in _field(d, "layers", what)], _field(d, "output", what)))

    tensors = {}
    for k, v in guard("model", lambda: _field(doc, "tensors", "the model")).items():
        tensors[k] = guard(f"tensor {k!r}", lambda v=v: TensorSpec.from_json(v))
    branches = guard("model", lambda: _field(doc, "branches", "the model"))
    dq = guard("model", lambda: _field(doc, "dequant", "the model"))
    return Model(
        name=guard("model", lambda: _field(doc, "name", "the model")),
        input=guard("input", lambda: InputSpec.from_json(
            _field(doc, "input", "the model"))),
        tensors=tensors,
        branches=[graph(b, f"branch {i}") for i, b in enumerate(branches)],
        merge=graph(guard("model", lambda: _field(doc, "merge", "the model")), "merge"),
        dequant=guard("the dequantization", lambda: Dequant(
            np.array(_field(dq, "scale", "dequant"), dtype=np.float64),
            np.array(_field(dq, "offset", "dequant"), dtype=np.float64),
            bool(_field(dq, "relu", "dequant")))),
        meta=doc.get("meta", {}),
    )


def _untuple(attrs: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}


def iter_params(model: Model) -> Iterable[tuple[Layer, str, np.ndarray]]:
    for l in model.layers():
        for k, v in l.params.items():
            yield l, k, v
