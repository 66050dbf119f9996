"""The PYNQ overlay driver of an LCP engine, on a board or on the simulated hardware.

On a board (``--backend pynq``)::

    from lcp.sw.pynq_driver import LcpOverlay
    ol = LcpOverlay("overlay/lcp_overlay.bit")        # the model IR is read next to it
    y = ol.predict(x)                                 # float images in, float outputs out

In simulation (``--backend pynq-sim``)::

    from lcp.sw.pynq_driver import open_driver
    drv = open_driver(model, backend="sim")           # builds and simulates the PYNQ top
    y = drv.predict(x)

The driver follows PYNQ's conventions: :class:`LcpEngine` is a ``pynq.DefaultIP`` bound by
``bindto`` to the engine's VLNV (it owns the register block, :mod:`lcp.hw.pynq_top`),
:class:`LcpOverlay` is a ``pynq.Overlay`` subclass, data moves through ``pynq.allocate``
buffers and the AXI DMA driver ``pynq.lib.dma.DMA`` (``sendchannel.transfer``,
``recvchannel.transfer``, ``wait``). :class:`LcpDriver` holds the logic: it reads the register
map from the build's ``lcp_engine.json``, checks that the loaded hardware computes the given
model (ID, register map version, SHA-256 of the model, input and output shapes, bit widths),
packs images into DMA frames, batches them (``BATCH`` register: one ``tlast`` per transfer),
waits on the channels with a wall-clock deadline and, on a timeout, reports the engine's flags
and counters, then recovers (stops and restarts the DMA, resets the engine).

Simulation backend: the *same* classes (:class:`LcpEngine`, :class:`LcpDriver`) and the same
PYNQ library code (``MMIO``, ``DefaultIP``, ``DMA``, ``allocate``) run against the Verilated
top: :mod:`lcp.sw.pynq_sim` replaces only PYNQ's *device* layer (register reads/writes and
buffer memory), so the driver under test is the driver that runs on the board.

Why not cocotbpynq (0.2.0, evaluated: its sample runs here, 1 test passes): (1) it inverts
control: the application must run *inside* the cocotb simulator as a test wrapped by
``synctest``, with imports switched on ``COCOTB_SYS_ARGV``, so the driver is "adapted", not
unchanged, and cannot be called from ``lcp run``, a Jupyter kernel or a Dask worker that keeps
one simulated board across calls; (2) its ``Overlay`` parses a Vivado ``.hwh`` file, which no
machine without Vivado has; (3) its DMA stand-in hard-codes 32-bit words, has no status
registers (``idle``/``error``), no timeout and hand-toggles the stream signals, and its
``allocate`` returns a plain ``ndarray`` (no ``physical_address``, ``flush``, ``invalidate``),
so PYNQ's real DMA driver cannot run on it; (4) it is GPL-3.0-or-later, this project is
BSD-3-Clause; (5) it pulls pyslang and a partial-reconfiguration engine we do not use.

Errors are :class:`PynqError` subclasses (of :class:`lcp.ir.IRError`, so ``lcp`` prints them as
one line): :class:`BoardUnavailable`, :class:`ModelMismatch`, :class:`InputMismatch`,
:class:`DriverTimeout`, :class:`DmaError`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pynq

from lcp.executor import Executor
from lcp.ir import IRError, Model

__all__ = [
    "VLNV", "OVERLAY_ENV", "PynqError", "BoardUnavailable", "ModelMismatch", "InputMismatch",
    "DriverTimeout", "DmaError", "Port", "pack_frames", "unpack_frames", "LcpEngine",
    "LcpDriver", "LcpOverlay", "open_driver", "board_available", "PynqExecutor",
    "PynqSimExecutor", "markdown",
]

#: VLNV the engine's IP is packaged with (:data:`lcp.hw.pynq_top.VLNV`; checked by a test).
VLNV = "lcp:lcp:lcp_engine:1.0"
#: Environment variable naming the overlay (``.bit`` file or its folder) for ``--backend pynq``.
OVERLAY_ENV = "LCP_PYNQ_OVERLAY"
_OVERLAY_BIT = "lcp_overlay.bit"
_ENGINE_JSON = "lcp_engine.json"


class PynqError(IRError):
    """Base of the driver's errors."""


class BoardUnavailable(PynqError):
    """No PYNQ board (or no overlay) here."""


class ModelMismatch(PynqError):
    """The loaded hardware does not compute the model given (hash, shape or bit width)."""


class InputMismatch(PynqError):
    """The input batch does not fit the hardware (shape, dtype or range)."""


class DriverTimeout(PynqError, TimeoutError):
    """A DMA transfer did not finish before its deadline (the message carries the engine's
    flags and counters)."""


class DmaError(PynqError):
    """The AXI DMA reported an error (its status register decoded in the message)."""


# -- stream packing --------------------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    """One stream port as ``lcp_engine.json`` describes it (see :mod:`lcp.hw.pynq_top`)."""

    tensor: str
    shape: tuple[int, ...]
    lo: int
    hi: int
    bits: int
    signed: bool
    width: int
    words: int
    perm: np.ndarray

    @classmethod
    def from_json(cls, d: dict) -> "Port":
        shape = tuple(int(s) for s in d["shape"])
        size = int(np.prod(shape))
        perm = np.arange(size) if d.get("perm") is None else np.asarray(d["perm"], np.int64)
        return cls(d["tensor"], shape, int(d["lo"]), int(d["hi"]), int(d["bits"]),
                   bool(d["signed"]), int(d["tdata_bits"]), int(d["words_per_frame"]), perm)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def frame_bytes(self) -> int:
        return self.words * self.width // 8


def pack_frames(x: np.ndarray, port: Port) -> np.ndarray:
    """Integer images ``(N, *port.shape)`` -> DMA frames ``uint8 (N, port.frame_bytes)``.

    Same packing as :func:`lcp.hw.plumbing.pack_frames` (elements in stream order, ``bits``
    each, two's complement, from bit 0 of word 0 up, last word zero-padded), vectorized over the
    batch.
    """
    n = len(x)
    s = np.asarray(x).reshape(n, -1)[:, port.perm].astype(np.int64)
    b = port.bits
    s = (s & ((1 << b) - 1)).astype(np.uint64)
    out = np.zeros((n, port.frame_bytes), dtype=np.uint8)
    if b in (8, 16, 32):
        raw = np.ascontiguousarray(s.astype({8: np.uint8, 16: "<u2", 32: "<u4"}[b]))
        raw = raw.view(np.uint8).reshape(n, -1)
    else:
        bits = ((s[:, :, None] >> np.arange(b, dtype=np.uint64)) & 1).astype(np.uint8)
        raw = np.packbits(bits.reshape(n, -1), axis=1, bitorder="little")
    out[:, :raw.shape[1]] = raw
    return out


def unpack_frames(frames: np.ndarray, port: Port) -> np.ndarray:
    """DMA frames ``uint8 (N, port.frame_bytes)`` -> integer results ``(N, *port.shape)``."""
    frames = np.asarray(frames, dtype=np.uint8)
    n, b, size = len(frames), port.bits, port.size
    if b in (8, 16, 32):
        dt = {8: np.uint8, 16: "<u2", 32: "<u4"}[b]
        v = np.ascontiguousarray(frames[:, :size * b // 8]).view(dt).astype(np.int64)
    else:
        bits = np.unpackbits(frames, axis=1, bitorder="little")[:, :size * b]
        v = (bits.reshape(n, size, b).astype(np.int64) << np.arange(b)).sum(axis=2)
    if port.signed:
        v = np.where(v >= 1 << (b - 1), v - (1 << b), v)
    out = np.empty((n, size), dtype=np.int64)
    out[:, port.perm] = v
    return out.reshape(n, *port.shape)


# -- the engine's register block -------------------------------------------------------------

class LcpEngine(pynq.DefaultIP):
    """PYNQ driver of the engine's AXI4-Lite register block (bound to :data:`VLNV`).

    The register map comes from the build (:meth:`attach`); registers are read and written by
    name (``engine.read("FRAMES_OUT")``, ``engine.read("MODEL_HASH", 3)``).
    """

    bindto = [VLNV]

    def __init__(self, description):
        super().__init__(description=description)
        self._regs: dict[str, dict] | None = None
        self.regmap: dict | None = None

    def attach(self, regmap: dict) -> None:
        """Use ``regmap`` (``lcp_engine.json["regmap"]``); check the hardware's ID and the
        register map's major version against it."""
        if regmap.get("format") != "lcp-regmap":
            raise ModelMismatch("lcp_engine.json has no register map")
        self.regmap = regmap
        self._regs = {r["name"]: r for r in regmap["registers"]}
        ident = self.read("ID")
        if ident != regmap["id"]:
            raise ModelMismatch(f"the IP at 0x{self.mmio.base_addr:08X} is not an LCP engine "
                                f"(ID 0x{ident:08X}, expected 0x{regmap['id']:08X})")
        major = (self.read("VERSION") >> 8) & 0xFF
        if major != regmap["version"][0]:
            raise ModelMismatch(f"the engine's register map is version {major}.x, this "
                                f"lcp_engine.json describes {regmap['version'][0]}.x")

    def _reg(self, name: str) -> dict:
        if self._regs is None:
            raise PynqError("LcpEngine: no register map (call attach(regmap) first)")
        try:
            return self._regs[name]
        except KeyError:
            raise PynqError(f"the register map has no register {name!r}") from None

    def read(self, name: str, k: int = 0) -> int:
        """Word ``k`` of register ``name``."""
        r = self._reg(name)
        return self.mmio.read(r["offset"] + 4 * k)

    def write(self, name: str, value: int, k: int = 0) -> None:
        r = self._reg(name)
        self.mmio.write(r["offset"] + 4 * k, int(value) & 0xFFFF_FFFF)

    def fields(self, name: str, value: int | None = None) -> dict[str, int]:
        """Register ``name`` split into its fields (read now unless ``value`` is given)."""
        r = self._reg(name)
        v = self.read(name) if value is None else value
        return {f["name"]: (v >> f["lsb"]) & ((1 << f["width"]) - 1) for f in r["fields"]
                if not f["name"].startswith("_")}

    def read64(self, name: str) -> int:
        """A 64-bit counter (``_LO`` latches ``_HI``)."""
        lo = self.read(name, 0)
        return lo | (self.read(name, 1) << 32)

    # -- identity -----------------------------------------------------------------------------
    def digest(self) -> str:
        return "".join(f"{self.read('MODEL_HASH', k):08x}" for k in range(8))

    def port(self, side: str) -> dict:
        """``side`` "IN" or "OUT": shape, bits, signed, range and tdata width in the registers."""
        fmt = self.fields(f"{side}_FORMAT")
        dims = [self.read(f"{side}_DIM", k) for k in range(3)]
        lo, hi = (self.read(f"{side}_RANGE", k) for k in range(2))
        s = lambda v: v - (1 << 32) if v >= 1 << 31 else v
        return {"shape": tuple(dims[:fmt["rank"]]), "bits": fmt["bits"],
                "signed": bool(fmt["signed"]), "lo": s(lo), "hi": s(hi),
                "tdata_bits": fmt["tdata_bits"], "words": self.read(f"{side}_WORDS")}

    def scope(self) -> dict:
        f = self.fields("SCOPE")
        return {"scope": "branch" if f["branch"] else "core", "index": f["index"],
                "branches": f["branches"]}

    # -- control --------------------------------------------------------------------------
    def start(self, watchdog: int = 0) -> None:
        """Reset the engine, zero the counters and flags, set the watchdog, accept input."""
        self.write("CTRL", 0b110)
        self.write("WATCHDOG", watchdog)
        self.write("BATCH", 1)
        self.write("CTRL", 0b001)

    def stop(self) -> None:
        self.write("CTRL", 0)

    def soft_reset(self) -> None:
        """Drop partial images and clear the engine's state (keeps ``RUN``)."""
        run = self.read("CTRL") & 1
        self.write("CTRL", 0b100 | run)

    def errors(self) -> list[str]:
        return [k.upper() for k, v in self.fields("ERROR").items() if v]

    def clear_errors(self) -> None:
        self.write("ERROR", 0xFFFF_FFFF)

    def counters(self) -> dict[str, int]:
        return {"cycles": self.read64("CYCLES"), "busy_cycles": self.read64("BUSY_CYCLES"),
                "frames_in": self.read("FRAMES_IN"), "frames_out": self.read("FRAMES_OUT")}


# -- the driver ------------------------------------------------------------------------------

def _sr_text(sr: int) -> str:
    names = [(0x1, "halted"), (0x2, "idle"), (0x10, "DMAIntErr"), (0x20, "DMASlvErr"),
             (0x40, "DMADecErr"), (0x1000, "IOC"), (0x4000, "Err_Irq")]
    return f"0x{sr:08X} (" + ", ".join(n for b, n in names if sr & b) + ")"


class LcpDriver:
    """Inference through an :class:`LcpEngine` and an AXI DMA, in PYNQ's conventions.

    Parameters
    ----------
    engine : LcpEngine
        The engine's IP driver (``overlay.lcp_engine_0``).
    dma : pynq.lib.dma.DMA
        The DMA wired to the engine's streams (``overlay.axi_dma_0``).
    doc : dict
        The build's ``lcp_engine.json`` (register map, ports, SoC).
    model : Model, optional
        Checked against the hardware (hash, shapes, bit widths); needed by :meth:`predict`.
    allocate : callable
        ``pynq.allocate`` (the simulated board passes its own, on its device).
    batch : int
        Most images per DMA transfer (also bounded by the DMA's maximum transfer length).
    timeout : float, optional
        Seconds per transfer; default from the cycle model: ``1 + 20 * cycles / speed``.
    speed : float, optional
        Clock cycles per wall second the timeout assumes (default the PL clock).
    owner : object, optional
        Kept alive with the driver and closed by :meth:`close` (the overlay or simulated board).

    Raises
    ------
    ModelMismatch
        when the hardware is not an LCP engine, its register map version differs, or it does
        not compute ``model``.
    """

    def __init__(self, engine: LcpEngine, dma, *, doc: dict, model: Model | None = None,
                 allocate=None, batch: int = 256, timeout: float | None = None,
                 speed: float | None = None, owner=None):
        if not isinstance(engine, LcpEngine):
            raise TypeError(f"Engine must be an LcpEngine (the IP bound to {VLNV}), not "
                            f"{engine!r}")
        if not isinstance(batch, int) or batch < 1:
            raise TypeError(f"Batch must be a positive integer, not {batch!r}")
        self.engine, self.dma, self.doc, self.model = engine, dma, doc, model
        self.allocate = allocate if allocate is not None else pynq.allocate
        self.owner = owner
        self.clock_mhz = float(doc.get("soc", {}).get("clock_mhz", 100))
        self.speed = float(speed) if speed else self.clock_mhz * 1e6
        self.timeout = timeout
        self.inp = Port.from_json(doc["engine"]["input"])
        self.out = Port.from_json(doc["engine"]["output"])
        mc = doc.get("model_cycles", {})
        self.model_latency = int(mc.get("latency_cycles", 0))
        self.model_interval = int(mc.get("interval_cycles", 0))
        engine.attach(doc["regmap"])
        self.hw = self._read_hw()
        self._check_doc()
        if model is not None:
            self.check_model(model)
        limit = int(getattr(dma, "buffer_max_size", 1 << 26))
        per = max(self.inp.frame_bytes, self.out.frame_bytes)
        if per > limit:
            raise PynqError(f"one image needs a {per}-byte DMA transfer, the DMA takes at most "
                            f"{limit} (c_sg_length_width too small)")
        self.batch = max(1, min(batch, limit // per))
        self._bufs = None
        self.calls = 0
        self.last_call: dict = {}
        wd = 16 * max(self.model_latency, self.model_interval, 1000)
        engine.start(watchdog=wd)

    # -- checks -------------------------------------------------------------------------------
    def _read_hw(self) -> dict:
        e = self.engine
        return {"digest": e.digest(), **e.scope(), "input": e.port("IN"),
                "output": e.port("OUT")}

    def _check_doc(self) -> None:
        d = self.doc["engine"]
        if d["digest"] != self.hw["digest"]:
            raise ModelMismatch(f"lcp_engine.json describes model {d['model']!r} (hash "
                                f"{d['digest'][:16]}...), the loaded hardware computes hash "
                                f"{self.hw['digest'][:16]}...: use the lcp_engine.json built "
                                f"with this bitstream")
        for side, port in (("input", self.inp), ("output", self.out)):
            h = self.hw[side]
            if (h["shape"], h["bits"], h["tdata_bits"], h["words"]) != (
                    port.shape, port.bits, port.width, port.words):
                raise ModelMismatch(f"lcp_engine.json's {side} port {port.shape} "
                                    f"{port.bits}-bit does not match the hardware's")

    def check_model(self, model: Model) -> None:
        """Raise :class:`ModelMismatch` unless the hardware computes ``model``: input and output
        shapes and bit widths first (the clearer message), then the SHA-256 of the model."""
        hw = self.hw
        spec_in = model.tensors[model.input.name]
        out_name = model.output if hw["scope"] == "core" else (
            model.branches[hw["index"]].output if hw["index"] < len(model.branches) else None)
        if out_name is None:
            raise ModelMismatch(f"the hardware computes branch {hw['index']}, the model has "
                                f"{len(model.branches)} branch(es)")
        spec_out = model.tensors[out_name]
        for side, spec in (("input", spec_in), ("output", spec_out)):
            h = hw[side]
            if tuple(spec.shape) != h["shape"] or spec.bits != h["bits"] \
                    or spec.signed != h["signed"]:
                sg = lambda s: "signed" if s else "unsigned"
                raise ModelMismatch(
                    f"the loaded hardware's {side} is {h['shape']} {h['bits']}-bit "
                    f"{sg(h['signed'])}, model {model.name!r} has {tuple(spec.shape)} "
                    f"{spec.bits}-bit {sg(spec.signed)}: it was built for another model")
        digest = model.digest()
        if digest != hw["digest"]:
            raise ModelMismatch(
                f"the loaded hardware computes another model (hash {hw['digest'][:16]}..., "
                f"built from {self.doc['engine']['model']!r}) than {model.name!r} (hash "
                f"{digest[:16]}...): build its overlay with `lcp bitstream`")

    # -- running ------------------------------------------------------------------------------
    def _buffers(self, n: int):
        if self._bufs is None or self._bufs[2] < n:
            self._free_buffers()
            cap = max(n, min(self.batch, 16))
            ib = self.allocate((cap * self.inp.frame_bytes,), np.uint8)
            ob = self.allocate((cap * self.out.frame_bytes,), np.uint8)
            self._bufs = (ib, ob, cap)
        return self._bufs

    def _free_buffers(self) -> None:
        if self._bufs is not None:
            for b in self._bufs[:2]:
                b.freebuffer()
            self._bufs = None

    def _deadline(self, n: int) -> float:
        t = self.timeout
        if t is None:
            cycles = self.model_latency + n * max(self.model_interval, 1)
            t = 1.0 + 20.0 * cycles / self.speed
        return time.monotonic() + t

    def _wait(self, ch, what: str, deadline: float, n: int) -> None:
        """Poll the channel's status register (one read per poll: idle and error bits, as
        PYNQ's ``idle``/``error`` decode them) until idle, an error or the deadline; then
        ``ch.wait()`` (returns at once: invalidates the buffer, reads ``transferred``)."""
        off = 0x04 if ch is self.dma.sendchannel else 0x34
        while True:
            sr = self.dma.mmio.read(off)
            if sr & 0x70:
                self._fail(DmaError, f"the DMA's {what} channel reports an error: status "
                                     f"{_sr_text(sr)}", n)
            if sr & 0x02:
                break
            if time.monotonic() > deadline:
                self._fail(DriverTimeout, f"timeout waiting for the DMA's {what} channel", n)
        ch.wait()

    def _fail(self, kind, message: str, n: int) -> None:
        e = self.engine
        try:
            st = e.fields("STATUS")
            c = e.counters()
            flags = e.errors()
            info = (f"; engine {'BUSY' if st['busy'] else 'IDLE'}, RUN={st['run']}, "
                    f"IN_READY={st['in_ready']}, OUT_VALID={st['out_valid']}, error flags "
                    f"{', '.join(flags) or 'none'}; FRAMES_IN {c['frames_in']}, FRAMES_OUT "
                    f"{c['frames_out']} ({n} image(s) in this transfer)")
        except Exception as ex:        # the bus itself may be what failed
            info = f"; engine registers unreadable ({ex})"
        self.recover()
        raise kind(message + info + "; the DMA and the engine were reset")

    def recover(self) -> None:
        """Stop and restart both DMA channels, reset the engine (after a timeout or error)."""
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            ch.stop()
        self.engine.soft_reset()
        self.engine.clear_errors()
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            ch.start()

    def _check_input(self, xq: np.ndarray) -> np.ndarray:
        xq = np.asarray(xq)
        want = self.inp.shape
        if xq.ndim != len(want) + 1 or tuple(xq.shape[1:]) != want:
            raise InputMismatch(f"input shape {tuple(xq.shape)} does not match the hardware's "
                                f"(N, {', '.join(map(str, want))})")
        if xq.dtype.kind not in "iu":
            raise InputMismatch(f"integer input expected, got dtype {xq.dtype} (predict() "
                                f"takes float images)")
        if xq.size and (xq.min() < self.inp.lo or xq.max() > self.inp.hi):
            raise InputMismatch(f"input values outside the hardware's range "
                                f"[{self.inp.lo}, {self.inp.hi}]")
        return xq

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        """Integer results ``(N, *output shape)`` for integer images ``(N, *input shape)``.

        Raises
        ------
        InputMismatch, DriverTimeout, DmaError
        """
        t0 = time.perf_counter()
        xq = self._check_input(xq)
        n_all = len(xq)
        frames = pack_frames(xq, self.inp)
        out = np.empty((n_all, self.out.frame_bytes), dtype=np.uint8)
        ifb, ofb = self.inp.frame_bytes, self.out.frame_bytes
        e = self.engine
        busy0 = e.read64("BUSY_CYCLES")
        f0 = e.read("FRAMES_OUT")
        transfers = 0
        for k in range(0, n_all, self.batch):
            n = min(self.batch, n_all - k)
            ib, ob, _ = self._buffers(n)
            ib[:n * ifb] = frames[k:k + n].reshape(-1)
            e.write("BATCH", n)
            deadline = self._deadline(n)
            self.dma.recvchannel.transfer(ob, nbytes=n * ofb)
            self.dma.sendchannel.transfer(ib, nbytes=n * ifb)
            self._wait(self.dma.sendchannel, "MM2S (images in)", deadline, n)
            self._wait(self.dma.recvchannel, "S2MM (results out)", deadline, n)
            got = int(self.dma.recvchannel.transferred)
            if got != n * ofb:
                self._fail(DmaError, f"the S2MM transfer brought {got} bytes, expected "
                                     f"{n * ofb} ({n} result(s))", n)
            out[k:k + n] = np.asarray(ob[:n * ofb]).reshape(n, ofb)
            transfers += 1
        done = (e.read("FRAMES_OUT") - f0) & 0xFFFF_FFFF
        if done != n_all:
            self._fail(PynqError, f"the engine counted {done} results for {n_all} images", 0)
        busy = e.read64("BUSY_CYCLES") - busy0
        y = unpack_frames(out, self.out)
        self.calls += 1
        self.last_call = {"images": n_all, "transfers": transfers, "busy_cycles": busy,
                          "seconds": time.perf_counter() - t0}
        return y

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for float images ``(N, *input shape)`` (the model's input quantizer,
        the hardware, the model's dequantization); a branch engine returns its integer output.

        Raises
        ------
        PynqError
            without a model (pass ``model=``), or as :meth:`run_int`.
        """
        if self.model is None:
            raise PynqError("predict() needs the model (LcpDriver(..., model=...)); "
                            "run_int() takes integer images without one")
        x = np.asarray(x)
        if x.ndim == len(self.inp.shape):
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.model.input.shape):
            raise InputMismatch(f"input shape {tuple(x.shape)} does not match the model's "
                                f"(N, {', '.join(map(str, self.model.input.shape))})")
        y = self.run_int(self.model.input.quantize(x))
        return self.model.dequant(y) if self.hw["scope"] == "core" else y

    def info(self) -> dict:
        """What the hardware reports: model hash, scope, ports, counters."""
        return {**self.hw, "model": self.doc["engine"]["model"], "batch": self.batch,
                "counters": self.engine.counters()}

    def close(self) -> None:
        """Free the DMA buffers; close the owner (simulated board) if it has ``close``."""
        self._free_buffers()
        close = getattr(self.owner, "close", None)
        if callable(close) and not isinstance(self.owner, pynq.Overlay):
            close()
        self.owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- on a board ------------------------------------------------------------------------------

def board_available() -> str | None:
    """None on a PYNQ board, else why not (one line)."""
    import platform
    if not pynq.ps.ON_TARGET:
        return (f"this machine ({platform.machine()}) is not a PYNQ board "
                f"(no /proc/device-tree/chosen/pynq_board)")
    return None


def _find_overlay(path: str | Path | None, model: Model | None = None) -> Path:
    """The overlay's ``.bit``: ``path`` (or ``$LCP_PYNQ_OVERLAY``) is the ``.bit``, its folder,
    or a library of overlay folders, searched for the one built for ``model`` (by hash; how a
    cluster node holding the overlays of several branch parts finds the one it is asked for)."""
    p = path or os.environ.get(OVERLAY_ENV)
    if not p:
        raise BoardUnavailable(f"no overlay given: pass overlay=PATH or set {OVERLAY_ENV} to the "
                               f"{_OVERLAY_BIT} built by `lcp bitstream`")
    p = Path(p)
    if p.is_dir() and not (p / _OVERLAY_BIT).is_file() and model is not None:
        digest = model.digest()
        for cand in sorted(p.glob(f"*/{_OVERLAY_BIT}")):
            try:
                doc = json.loads((cand.parent / _ENGINE_JSON).read_text())
            except (OSError, ValueError):
                continue
            if doc.get("engine", {}).get("digest") == digest:
                return cand
        raise BoardUnavailable(f"{p}: no overlay folder built for model {model.name!r} (hash "
                               f"{digest[:16]}...); build it with `lcp bitstream`")
    if p.is_dir():
        p = p / _OVERLAY_BIT
    if not p.is_file():
        raise BoardUnavailable(f"{p}: no such overlay (build it with `lcp bitstream`)")
    return p


class LcpOverlay(pynq.Overlay):
    """A loaded LCP overlay: ``pynq.Overlay`` plus :meth:`predict` (see :class:`LcpDriver`).

    Parameters
    ----------
    bitfile : path
        ``lcp_overlay.bit``; ``lcp_overlay.hwh``, ``lcp_engine.json`` and the model IR
        (``model.json``/``model.npz``) are expected next to it (the overlay folder).
    model : Model, optional
        The model to check the hardware against (default: the IR in the overlay folder).
    download : bool
        Program the PL (``pynq.Overlay``'s argument).
    batch, timeout
        As for :class:`LcpDriver`.
    """

    def __init__(self, bitfile, *, model: Model | None = None, download: bool = True,
                 batch: int = 256, timeout: float | None = None, **kwargs):
        why = board_available()
        if why:
            raise BoardUnavailable(f"LcpOverlay needs a PYNQ board: {why}")
        bitfile = Path(bitfile)
        doc = json.loads((bitfile.parent / _ENGINE_JSON).read_text())
        super().__init__(str(bitfile), download=download, **kwargs)
        names = [k for k, v in self.ip_dict.items() if v.get("type") == VLNV]
        if not names:
            raise ModelMismatch(f"{bitfile.name} has no IP {VLNV}")
        engine = getattr(self, names[0])
        dma = getattr(self, doc["soc"]["dma"]["instance"])
        if model is None:
            from lcp.ir import load
            model = load(bitfile.parent / "model.json")
        self.driver = LcpDriver(engine, dma, doc=doc, model=model, allocate=pynq.allocate,
                                batch=batch, timeout=timeout, owner=self)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.driver.predict(x)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.driver.run_int(xq)


# -- opening a driver, board or simulation ---------------------------------------------------

def _cached_folding(model: Model, scope: str, index: int, in_width: int, out_width: int,
                    target, budget, root: Path | None):
    """The folding chooser's answer, cached by model digest (the chooser can take minutes)."""
    from lcp.hw.build import GENERATOR_VERSION, cache_root, default_folding
    from lcp.hw.chooser import choose
    from lcp.hw.folding import Folding

    root = Path(root) if root is not None else cache_root() / "pynq"
    key = f"{model.digest()[:24]}_{scope}{index}_{in_width}x{out_width}_{target}_{budget}" \
          f"_g{GENERATOR_VERSION}"
    path = root / "folding" / f"{key}.json"
    if path.exists():
        return Folding.load(path)
    if target is None and budget is None:
        f = default_folding(model, scope, index, in_width, out_width).folding
    else:
        f = choose(model, target=target, budget=budget, scope=scope, index=index,
                   in_width=in_width, out_width=out_width).folding
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    f.save(tmp)
    tmp.rename(path)
    return f


def open_driver(model: Model | None = None, *, backend: str = "sim", overlay=None,
                **options) -> LcpDriver:
    """An :class:`LcpDriver` on a board (``backend="board"``, ``overlay`` = the ``.bit`` or its
    folder, default ``$LCP_PYNQ_OVERLAY``) or on the simulated hardware (``"sim"``; options as
    for :class:`PynqSimExecutor`). Close it when done (it stops the simulator)."""
    if backend in ("board", "pynq"):
        why = board_available()
        if why:
            raise BoardUnavailable(f"backend 'board' needs a PYNQ board: {why}; use "
                                   f"backend='sim' for the simulated hardware")
        drv_opts = {k: options.pop(k) for k in ("batch", "timeout") if k in options}
        return LcpOverlay(_find_overlay(overlay, model), model=model, **drv_opts,
                          **options).driver
    if backend in ("sim", "pynq-sim"):
        if model is None:
            raise PynqError("the simulated board builds its hardware from the model: pass it")
        return PynqSimExecutor(model, **options).prepare().driver
    raise PynqError(f"unknown PYNQ backend {backend!r} (board or sim)")


class PynqExecutor(Executor):
    """``--backend pynq``: the overlay on this PYNQ board (``overlay=`` or
    ``$LCP_PYNQ_OVERLAY``: the ``.bit``, its folder, or a folder of overlay folders searched by
    model hash), checked against the model; construction fails at once, with
    :class:`BoardUnavailable`, anywhere else."""

    name = "pynq"

    def __init__(self, model: Model, *, source=None, overlay=None, batch: int = 256,
                 timeout: float | None = None, **options):
        super().__init__(model, source=source, **options)
        why = board_available()
        if why:
            raise BoardUnavailable(f"--backend pynq needs a PYNQ board with the overlay built "
                                   f"by `lcp bitstream`: {why}. Run the same driver on the "
                                   f"simulated hardware with --backend pynq-sim")
        self.overlay = LcpOverlay(_find_overlay(overlay, model), model=model, batch=batch,
                                  timeout=timeout)
        self.driver = self.overlay.driver

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.driver.run_int(xq)

    def close(self) -> None:
        self.driver.close()


class PynqSimExecutor(Executor):
    """``--backend pynq-sim``: :class:`LcpDriver` on the simulated board (:mod:`.pynq_sim`).

    Construction is cheap; :meth:`prepare` (called by the first :meth:`run_int`) chooses the
    folding (cached), generates the PYNQ top (cached), compiles it with Verilator (cached) and
    starts the simulator. Call :meth:`close` to stop it.

    Options
    -------
    folding : Folding or path, optional
        Per-layer parallelism (default: the XC7Z020 budget, as ``lcp compile``).
    target, budget : optional
        Choose the folding for a latency target (cycles) or a device budget.
    scope, index : str, int
        ``"core"`` (the whole model) or ``"branch"`` ``index``.
    in_width, out_width : int
        DMA stream widths, 32 or 64 (default 64).
    batch : int
        Images per DMA transfer (default 64).
    timeout : float, optional
        Seconds per transfer (default: from the cycle model at 2,000 simulated cycles/s).
    src_pause, sink_pause : list of int, optional
        Idle / back-pressure patterns of the DMA streams (:class:`~.pynq_sim.SimBoard`).
    cache : path, optional
        Build cache folder (default ``lcp.hw.build.cache_root()/"pynq"``).
    waves : bool
        Record a VCD (in ``board.run_dir``).
    """

    name = "pynq-sim"
    #: Simulated cycles per wall second the default timeout assumes (a lower bound).
    SIM_SPEED = 2_000.0

    def __init__(self, model: Model, *, source=None, folding=None, target=None, budget=None,
                 scope: str = "core", index: int = 0, in_width: int | None = None,
                 out_width: int | None = None, batch: int = 64, timeout: float | None = None,
                 src_pause=None, sink_pause=None, cache=None, waves: bool = False, **options):
        super().__init__(model, source=source, **options)
        if scope not in ("core", "branch"):
            raise IRError(f"unknown scope {scope!r} (core or branch)")
        self.folding, self.target, self.budget = folding, target, budget
        self.scope, self.index = scope, int(index)
        self.in_width, self.out_width = in_width or 64, out_width or 64
        self.batch, self.timeout = batch, timeout
        self.src_pause, self.sink_pause = src_pause, sink_pause
        self.cache = Path(cache) if cache is not None else None
        self.waves = waves
        self.build = None
        self.board = None
        self.driver: LcpDriver | None = None

    def prepare(self) -> "PynqSimExecutor":
        """Build, compile and start the simulated board (once); returns ``self``."""
        if self.driver is not None:
            return self
        from lcp.hw.folding import Folding
        from lcp.hw.pynq_top import cached_pynq_build

        from .pynq_sim import SimBoard

        f = self.folding
        if f is not None and not isinstance(f, Folding):
            f = Folding.load(f)
        if f is None:
            f = _cached_folding(self.model, self.scope, self.index, self.in_width,
                                self.out_width, self.target, self.budget, self.cache)
        elif (f.in_width, f.out_width) != (self.in_width, self.out_width) and (
                self.in_width, self.out_width) != (64, 64):
            f = Folding(f.layers, self.in_width, self.out_width)
        self.build = cached_pynq_build(self.model, f, scope=self.scope, index=self.index,
                                       root=self.cache)
        self.board = SimBoard(self.build.dir, src_pause=self.src_pause,
                              sink_pause=self.sink_pause, waves=self.waves)
        try:
            ol = self.board.overlay()
            soc = self.board.doc["soc"]
            self.driver = LcpDriver(getattr(ol, soc["engine"]["instance"]),
                                    getattr(ol, soc["dma"]["instance"]), doc=self.board.doc,
                                    model=self.model, allocate=self.board.allocate,
                                    batch=self.batch, timeout=self.timeout,
                                    speed=self.SIM_SPEED, owner=self.board)
        except BaseException:
            self.board.close()
            self.board = None
            raise
        return self

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.prepare().driver.run_int(xq)

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
            self.driver = None
        elif self.board is not None:
            self.board.close()
        self.board = None


# -- results for REPRODUCTION.md -------------------------------------------------------------

#: File the PYNQ benchmark writes into the results folder (:func:`lcp.sw.pynq_bench.run_bench`).
BENCH_FILE = "pynq_sim.json"


def markdown(results_dir, runs=None) -> str:
    """The PYNQ driver benchmark (``results_dir/pynq_sim.json``) as markdown for
    REPRODUCTION.md; a note naming the command when it has not been run."""
    path = Path(results_dir) / BENCH_FILE
    if not path.exists():
        return ("_Not measured yet: run `make bench` (or `lcp pynq-bench`), which writes "
                f"`{BENCH_FILE}`._")
    r = json.loads(path.read_text())
    lines = [
        f"Produced by `{r.get('command', 'lcp pynq-bench')}`: the overlay driver "
        f"(`lcp.sw.pynq_driver.LcpDriver`, PYNQ's DMA and MMIO code) against the Verilated PYNQ "
        f"top (`lcp.sw.pynq_sim`), model `{r['model']}` ({r['weights']} weights) as one LCP "
        f"core, DMA streams {r['in_width']}/{r['out_width']} bits. Wall-clock figures are of "
        f"the simulation on this machine ({r.get('machine', 'unknown')}), not of a board; "
        f"hardware cycles are counted by the engine's own BUSY_CYCLES register "
        f"(at {r['clock_mhz']:.0f} MHz on a PYNQ-Z1/Z2 they would take the time shown).",
        "",
        "| batch | calls | images/s (sim, wall) | ms per call | driver overhead per call (ms, "
        "outside the simulator) | overhead per image (us) | hw cycles per image | "
        "hw images/s at clock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['batch']} | {row['calls']} | {row['images_per_second']:.1f} | "
            f"{1e3 * row['seconds_per_call']:.1f} | {1e3 * row['overhead_per_call']:.2f} | "
            f"{1e6 * row['overhead_per_image']:.1f} | {row['hw_cycles_per_image']:.0f} | "
            f"{row['hw_images_per_second']:,.0f} |")
    lines += ["", f"All outputs equal the golden reference bit for bit: "
                  f"**{'yes' if r['bit_exact'] else 'NO'}**. Driver overhead = wall time of "
                  f"`run_int` minus the time spent waiting for the simulator's answers "
                  f"(packing, checks, PYNQ's MMIO/DMA/buffer code, Python)."]
    return "\n".join(lines)
