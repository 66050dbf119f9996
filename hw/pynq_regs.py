"""The contract between the PYNQ top and its driver: constants, typed registers and what
the register block reports about a build (:class:`EngineInfo`).

The register map itself is declared in :class:`lcp.hw.pynq_axil.RegisterFile`; the driver
(:mod:`lcp.sw.pynq.driver`) reads it from ``lcp_engine.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from amaranth.lib import data

from lcp.frames import Port
from lcp.ir import IRError, Model

from .base import StreamFormat
from .graph import PlanGraph

__all__ = ["PYNQ_TOP_VERSION", "REGMAP_VERSION", "TOP_NAME", "VLNV", "ID_MAGIC", "AXIL_ADDR_WIDTH", "DMA_WIDTHS", "ENGINE_INSTANCE", "DMA_INSTANCE", "DMA_VLNV", "CLOCK_MHZ", "Field", "Register", "EngineInfo"]


#: Bumped whenever the generated top changes for the same engine.
PYNQ_TOP_VERSION = "2"
#: Register map version (major, minor): major changes break drivers, minor ones add registers.
REGMAP_VERSION = (1, 1)
#: Top module name.
TOP_NAME = "lcp_pynq"
#: VLNV of the packaged IP (the driver binds to it, :mod:`lcp.synth.bitstream` packages it).
VLNV = "lcp:lcp:lcp_engine:1.0"
#: ``ID`` register value: "LCP1".
ID_MAGIC = 0x4C435031
#: AXI4-Lite address bits (a 4 KiB window).
AXIL_ADDR_WIDTH = 12
#: ``tdata`` widths an AXI DMA stream port is configured with here.
DMA_WIDTHS = (32, 64)
#: Block-design instances and their AXI4-Lite windows on the Zynq's GP0 port: name, base, range.
ENGINE_INSTANCE = ("lcp_engine_0", 0x43C0_0000, 0x1_0000)
DMA_INSTANCE = ("axi_dma_0", 0x4040_0000, 0x1_0000)
#: The Xilinx AXI DMA the overlay uses (simple mode).
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"
#: PL clock of the overlay (FCLK_CLK0), MHz.
CLOCK_MHZ = 100


# -- the register map as data ----------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """A bit field of a register: ``width`` bits, ``access`` one of ``r rw w1c w1p``."""

    name: str
    width: int
    access: str
    doc: str = ""


class Register:
    """Base of the typed register classes (one 32-bit word, or ``count`` consecutive words).

    A subclass is declared as ``class Ctrl(Register, offset=0x08): fields = (...)``; its
    :meth:`layout` is the ``data.StructLayout`` of its fields (LSB first, padded to 32 bits).
    Constant registers compute their words from an :class:`EngineInfo` (:meth:`words`).
    """

    offset: ClassVar[int]
    count: ClassVar[int] = 1
    name: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]] = (Field("value", 32, "r"),)
    reset: ClassVar[int | None] = None

    def __init_subclass__(cls, *, offset: int, name: str, count: int = 1, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(offset, int) or offset < 0 or offset % 4:
            raise TypeError(f"Register offset must be a non-negative multiple of 4, not "
                            f"{offset!r}")
        cls.offset, cls.name, cls.count = offset, name, count

    @classmethod
    def layout(cls) -> data.StructLayout:
        members, used = {}, 0
        for f in cls.fields:
            members[f.name] = f.width
            used += f.width
        if used > 32:
            raise TypeError(f"Register {cls.name} fields take {used} bits, more than 32")
        if used < 32:
            members["_reserved"] = 32 - used
        return data.StructLayout(members)

    @classmethod
    def access(cls) -> str:
        return "/".join(dict.fromkeys(f.access for f in cls.fields))

    @classmethod
    def words(cls, info: "EngineInfo") -> list[int]:
        """Values of a constant register (read-only, fixed by the build)."""
        raise NotImplementedError(cls.name)

    @classmethod
    def to_json(cls) -> dict:
        d = {"name": cls.name, "offset": cls.offset, "count": cls.count,
             "access": cls.access(), "doc": (cls.__doc__ or "").strip(),
             "fields": [{"name": f.name, "lsb": lsb, "width": f.width, "access": f.access,
                         "doc": f.doc} for f, lsb in zip(cls.fields, _lsbs(cls.fields))]}
        if cls.reset is not None:
            d["reset"] = cls.reset
        return d


def _lsbs(fields) -> list[int]:
    out, pos = [], 0
    for f in fields:
        out.append(pos)
        pos += f.width
    return out


def _s32(v: int) -> int:
    """``v`` as the 32-bit two's complement word."""
    if not -(1 << 31) <= v < (1 << 31):
        raise IRError(f"integer {v} does not fit a 32-bit register")
    return v & 0xFFFF_FFFF


@dataclass(frozen=True)
class EngineInfo:
    """What the register block of one build reports: the model, the scope and both ports."""

    model: str
    digest: str
    scope: str
    index: int
    branches: int
    inp: Port
    out: Port

    @classmethod
    def of(cls, model: Model, graph: PlanGraph, scope: str = "core",
           index: int = 0) -> "EngineInfo":
        out_tensor = model.output if scope == "core" else model.branches[index].output
        return cls(model.name, model.digest(), scope, int(index), len(model.branches),
                   _port(model, model.input.name, graph.in_fmt, graph.in_width),
                   _port(model, out_tensor, graph.out_fmt, graph.out_width))

    def to_json(self) -> dict:
        return {"model": self.model, "digest": self.digest, "scope": self.scope,
                "index": self.index, "branches": self.branches,
                "input": self.inp.to_json(), "output": self.out.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "EngineInfo":
        return cls(d["model"], d["digest"], d["scope"], int(d["index"]), int(d["branches"]),
                   Port.from_json(d["input"]), Port.from_json(d["output"]))


def _port(model: Model, tensor: str, fmt: StreamFormat, width: int) -> Port:
    """The port carrying IR ``tensor`` (its own shape; the stream may carry it flattened)."""
    return Port.of(tensor, model.tensors[tensor].shape, fmt.lo, fmt.hi, fmt.perm, width)


def _dims(shape) -> list[int]:
    return [int(s) for s in shape] + [0] * (3 - len(shape))
