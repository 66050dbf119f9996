"""Per-layer parallelism (folding): the data the graph builder reads.

A :class:`Folding` maps layer names to ``{"pe": P, "simd": S, "dsp": D}`` (``PE x SIMD``
engines: conv, dense; other engines take one beat per cycle and follow their producer's lanes,
requantizers and concatenations may take ``{"lanes": L}``; which keys an op takes is its plan's
``fold_keys`` in :mod:`lcp.hw.plans`; ``D`` of the ``P*S`` multipliers of a folded layer are
DSP48 slices, the others LUT logic; default: DSP when the operands together exceed 12 bits) and
fixes the AXI4-Stream widths of the boundary. Missing layers default to ``pe = simd = 1``.

The chooser that picks a folding for a cycle or resource target is :mod:`lcp.hw.chooser`
(above the graph builder; this module is below it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from lcp.ir import IRError, Model

from .plans import plan_for

__all__ = ["Folding", "DEFAULT_AXIS_WIDTH"]

#: Default ``tdata`` width of the input and output AXI4-Stream ports.
DEFAULT_AXIS_WIDTH = 64


@dataclass
class Folding:
    """Per-layer parallelism and boundary widths.

    Members
    -------
    layers : dict
        Layer name -> ``{"pe": int, "simd": int}``.
    in_width, out_width : int
        ``tdata`` bits of the input and output AXI4-Stream ports (multiples of 8).
    link_reg : int
        1: every stream between two engines passes a register slice (valid, data and ready
        from registers, one cycle; :class:`~lcp.hw.skid.RegisterSlice`) and the lane
        converters' splits shift their word out (:class:`~lcp.hw.plumbing.RelanePlan`), for
        clocks where the routes between engines miss the period
        (:func:`~lcp.hw.delay.link_register`); 0 (the default): only ``ready`` is registered
        (:class:`~lcp.hw.skid.SkidBuffer`).
    """

    layers: dict[str, dict] = field(default_factory=dict)
    in_width: int = DEFAULT_AXIS_WIDTH
    out_width: int = DEFAULT_AXIS_WIDTH
    link_reg: int = 0

    def layer(self, name: str) -> dict:
        return dict(self.layers.get(name, {}))

    def with_layer(self, name: str, **kw) -> "Folding":
        layers = {k: dict(v) for k, v in self.layers.items()}
        layers[name] = {**layers.get(name, {}), **kw}
        return replace(self, layers=layers)

    def check(self, model: Model) -> "Folding":
        """:class:`~lcp.ir.IRError` naming the layer when an entry is for an unknown layer, a
        layer without folding, or a ``pe``/``simd`` that does not divide it."""
        layers = {l.name: l for l in model.layers()}
        for name, f in self.layers.items():
            if name not in layers:
                raise IRError(f"folding: the model has no layer {name!r}")
            l = layers[name]
            cls = plan_for(l)
            extra = set(f) - set(cls.fold_keys)
            if extra:
                raise IRError(f"layer {name!r} ({l.op}) takes no {'/'.join(sorted(extra))} "
                              f"folding (it takes {', '.join(cls.fold_keys) or 'none'})")
            if not cls.parallel:
                continue
            O, F = cls.mvu_shape(l)
            pe, simd = int(f.get("pe", 1)), int(f.get("simd", 1))
            if pe < 1 or O % pe:
                raise IRError(f"layer {name!r}: PE={pe} does not divide the {O} outputs")
            if simd < 1 or F % simd:
                raise IRError(f"layer {name!r}: SIMD={simd} does not divide the {F} inputs per "
                              f"output")
        for w in (self.in_width, self.out_width):
            if w < 8 or w % 8:
                raise IRError(f"AXI-Stream width {w} is not a positive multiple of 8")
        if self.link_reg not in (0, 1):
            raise IRError(f"folding: link_reg is {self.link_reg} (0 or 1)")
        return self

    def to_json(self) -> dict:
        return {"format": "lcp-folding", "version": 1, "in_width": self.in_width,
                "out_width": self.out_width,
                "layers": {k: dict(sorted(v.items())) for k, v in sorted(self.layers.items())},
                # absent when 0: the foldings (and build digests) of before it stay as they were
                **({"link_reg": self.link_reg} if self.link_reg else {})}

    @classmethod
    def from_json(cls, d: dict) -> "Folding":
        if d.get("format") != "lcp-folding":
            raise IRError("not an lcp-folding document")
        layers = {str(k): {kk: int(vv) for kk, vv in v.items()} for k, v in d["layers"].items()}
        return cls(layers, int(d.get("in_width", DEFAULT_AXIS_WIDTH)),
                   int(d.get("out_width", DEFAULT_AXIS_WIDTH)), int(d.get("link_reg", 0)))

    @classmethod
    def load(cls, path: str | Path) -> "Folding":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise IRError(f"{path}: not a readable folding file ({e})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


