"""The PYNQ overlay driver of an LCP engine, on a board or on the simulated hardware.

On a board (``--backend pynq``)::

    from lcp.sw.pynq.executors import LcpOverlay
    ol = LcpOverlay("overlay/lcp_overlay.bit")        # the model IR is read next to it
    y = ol.predict(x)                                 # float images in, float outputs out

In simulation (``--backend pynq-sim``)::

    from lcp.sw.pynq.executors import open_driver
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
top: :mod:`lcp.sw.pynq.sim` replaces only PYNQ's *device* layer (register reads/writes and
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

import time

import numpy as np
import pynq

from lcp.frames import Port, pack_frames, unpack_frames
from lcp.ir import IRError, Model

from .weights import WeightBuffer

__all__ = ["VLNV", "PynqError", "BoardUnavailable", "ModelMismatch", "InputMismatch",
           "DriverTimeout", "DmaError", "LcpEngine", "LcpDriver"]

#: VLNV the engine's IP is packaged with (:data:`lcp.hw.pynq_regs.VLNV`; checked by a test).
VLNV = "lcp:lcp:lcp_engine:1.0"


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

    def set_weight_base(self, address: int) -> None:
        """Write ``WEIGHT_BASE`` (the DRAM address of the weight image) and check it reads
        back; :class:`PynqError` when the build's register map (before 1.1) has none."""
        if self._regs is not None and "WEIGHT_BASE" not in self._regs:
            raise PynqError(f"this build's register map {tuple(self.regmap['version'])} has "
                            f"no WEIGHT_BASE register (added in 1.1): rebuild the bitstream")
        if not 0 <= int(address) < 1 << 32:
            raise PynqError(f"weight address 0x{int(address):X} is not a 32-bit address")
        self.write("WEIGHT_BASE", address)
        got = self.read("WEIGHT_BASE")
        if got != int(address):
            raise PynqError(f"WEIGHT_BASE reads 0x{got:08X} after writing 0x{int(address):08X}")

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
        self.weights: WeightBuffer | None = None
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

    def load_weights(self, design) -> WeightBuffer:
        """Allocate and fill the DRAM weight buffer of ``design`` (a plan graph with DRAM
        layers or a reused-engine program, :class:`~lcp.sw.pynq.weights.WeightBuffer`) and
        point the engine's ``WEIGHT_BASE`` at it; kept until :meth:`close`."""
        if self.weights is not None:
            self.weights.close()
        self.weights = WeightBuffer(design, allocate=self.allocate)
        self.weights.attach(self.engine)
        return self.weights

    def close(self) -> None:
        """Free the DMA and weight buffers; close the owner (simulated board) if it has
        ``close``."""
        self._free_buffers()
        if self.weights is not None:
            self.weights.close()
            self.weights = None
        close = getattr(self.owner, "close", None)
        if callable(close) and not isinstance(self.owner, pynq.Overlay):
            close()
        self.owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
