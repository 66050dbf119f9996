"""A stand-in PYNQ board: the pieces of ``pynq`` a driver touches, over the simulated hardware.

Only the lowest layer of PYNQ is replaced. :class:`SimDevice` is a ``pynq`` *device* (the class
PYNQ itself uses for boards, XRT cards and remote devices) with the ``REGISTER_RW`` capability:
PYNQ's own ``MMIO``, ``DefaultIP``, ``pynq.lib.dma.DMA`` and ``allocate``/``PynqBuffer`` run
unchanged on top of it, and so does a driver written against them (:mod:`lcp.sw.pynq.driver`).
Underneath:

- register reads and writes become requests to the simulator process (:mod:`lcp.sw.pynq.simtb`),
  which performs them as AXI4-Lite transactions on the Verilated ``lcp_pynq`` top (engine
  window) or on its model of the AXI DMA (DMA window);
- ``allocate`` places buffers in a file shared with the simulator (the "DDR": a sparse file in
  ``/dev/shm`` when available), at physical address ``DDR_BASE + offset``; the DMA model reads
  and writes that file, so a transfer moves the bytes of the very ``PynqBuffer`` the driver
  filled, as on the board.

:class:`SimOverlay` gives what ``pynq.Overlay`` gives a driver: ``ip_dict`` and one driver per
IP, chosen by VLNV from PYNQ's registry of ``DefaultIP`` subclasses (``bindto``), exactly as
``pynq.Overlay`` does. The address map and the DMA's configuration come from the build's
``lcp_engine.json`` (:func:`lcp.hw.pynq_top.soc_json`), the same ones the Vivado project uses.

:class:`SimBoard` owns it all: it compiles the build's top with Verilator once, starts the
simulator (``python -m lcp.sw.pynq.simtb``, its own process group), connects over a Unix socket
and stops the simulator on :meth:`SimBoard.close` (or when the driver's process exits: the
simulator ends when the socket closes). Time spent waiting for the simulator is counted in
:attr:`SimDevice.wait_seconds`, so the driver's own overhead can be measured apart from it.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from lcp.ir import IRError

from . import wire as w
from .simtb import compile_top

__all__ = ["DDR_BASE", "SimError", "SimDevice", "SimOverlay", "SimBoard"]

#: Physical address of byte 0 of the simulated DDR.
DDR_BASE = 0x1000_0000
_PAGE = 4096


class SimError(IRError):
    """The simulated board failed: the simulator did not start, died, or refused a request."""


class _Ddr:
    """The shared "DDR" file and a first-fit allocator of page-aligned blocks."""

    def __init__(self, size: int, folder: Path):
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else folder
        fd, path = tempfile.mkstemp(prefix="lcp_ddr_", dir=where)
        os.ftruncate(fd, size)
        self.mm = mmap.mmap(fd, size)
        os.close(fd)
        self.path, self.size = Path(path), size
        self.free_blocks = [(0, size)]
        self.used: dict[int, int] = {}
        self.lock = threading.Lock()

    def alloc(self, nbytes: int) -> int:
        n = max(_PAGE, -(-nbytes // _PAGE) * _PAGE)
        with self.lock:
            for k, (off, size) in enumerate(self.free_blocks):
                if size >= n:
                    self.free_blocks[k] = (off + n, size - n)
                    if size == n:
                        del self.free_blocks[k]
                    self.used[off] = n
                    return off
        raise MemoryError(f"simulated DDR full: {nbytes} bytes asked, {self.size} in all "
                          f"(pass a larger ddr_bytes to SimBoard)")

    def free(self, off: int) -> None:
        with self.lock:
            n = self.used.pop(off, None)
            if n is None:
                return
            blocks = sorted(self.free_blocks + [(off, n)])
            merged = [blocks[0]]
            for o, s in blocks[1:]:
                po, ps = merged[-1]
                if po + ps == o:
                    merged[-1] = (po, ps + s)
                else:
                    merged.append((o, s))
            self.free_blocks = merged

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:       # buffers still alive: the mapping goes with them
            pass
        self.path.unlink(missing_ok=True)


class SimDevice(Device):
    """A PYNQ device whose registers and memory are the simulated board's.

    Members
    -------
    requests : int
        Requests sent to the simulator so far.
    wait_seconds : float
        Wall time spent waiting for the simulator's answers (send to reply).
    cycle : int
        Simulated clock cycle of the last answer.
    """

    def __init__(self, conn: socket.socket, ddr: _Ddr, tag: str = "lcp-pynq-sim"):
        super().__init__(tag)
        self.capabilities = {"REGISTER_RW": True}
        self._conn, self._ddr = conn, ddr
        self._lock = threading.Lock()
        self.requests = 0
        self.wait_seconds = 0.0
        self.cycle = 0

    def request(self, op: int, addr: int = 0, value: int = 0, payload: bytes = b"") -> int:
        """One request to the simulator; its value. Raises :class:`SimError` on a refusal."""
        with self._lock:
            t0 = time.perf_counter()
            try:
                w.send_request(self._conn, op, addr, value, payload)
                status, value, cycle, msg = w.recv_reply(self._conn)
            except (OSError, w.WireError) as e:
                raise SimError(f"the simulator is gone ({e}); see its sim.log") from None
            finally:
                self.wait_seconds += time.perf_counter() - t0
                self.requests += 1
        self.cycle = cycle
        if status != w.OK:
            raise SimError(f"simulated board: {msg.decode(errors='replace')}")
        return value

    # -- the REGISTER_RW capability (pynq.MMIO calls these) -------------------------------
    def read_registers(self, address: int, length: int) -> bytes:
        out = b""
        for k in range(0, length, 4):
            out += self.request(w.OP_READ, address + k).to_bytes(4, "little")
        return out[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        data = bytes(data)
        if len(data) % 4:
            raise MemoryError("register writes are whole 32-bit words")
        for k in range(0, len(data), 4):
            self.request(w.OP_WRITE, address + k, int.from_bytes(data[k:k + 4], "little"))

    # -- memory (pynq.allocate calls these) ------------------------------------------------
    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        dtype = np.dtype(dtype)
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        off = self._ddr.alloc(nbytes)
        buf = PynqBuffer(shape, dtype, buffer=self._ddr.mm, offset=off, device=self,
                         device_address=DDR_BASE + off, bo=off, coherent=False)
        weakref.finalize(buf, self._ddr.free, off)
        return buf

    def flush(self, bo, offset, ptr, size) -> None:
        """The shared file is coherent: nothing to write back."""

    def invalidate(self, bo, offset, ptr, size) -> None:
        """The shared file is coherent: nothing to drop."""


class SimOverlay:
    """What ``pynq.Overlay`` offers a driver, for the simulated board.

    ``ip_dict`` has one entry per IP (``phys_addr``, ``addr_range``, ``type`` (VLNV),
    ``parameters``, ``interrupts``, ``device``); attribute access creates the IP's driver, the
    ``DefaultIP`` subclass registered for its VLNV (``pynq.overlay._ip_drivers``), as
    ``pynq.Overlay`` does.
    """

    def __init__(self, device: SimDevice, soc: dict):
        self.device = device
        self.ip_dict = {}
        for part in ("engine", "dma"):
            d = soc[part]
            self.ip_dict[d["instance"]] = {
                "fullpath": d["instance"], "type": d["vlnv"], "phys_addr": int(d["base"]),
                "addr_range": int(d["range"]), "parameters": dict(d.get("parameters", {})),
                "interrupts": {}, "gpio": {}, "device": device, "state": None,
            }
        self._drivers: dict = {}

    def __getattr__(self, key):
        ip = self.__dict__.get("ip_dict", {}).get(key)
        if ip is None:
            raise AttributeError(f"the simulated overlay has no IP {key!r}")
        if key not in self._drivers:
            import pynq.lib.dma  # noqa: F401  (registers PYNQ's DMA driver, as Overlay does)
            from pynq.overlay import _ip_drivers
            vlnv = ip["type"]
            cls = _ip_drivers.get(vlnv) or _ip_drivers.get(vlnv.rpartition(":")[0],
                                                            pynq.DefaultIP)
            self._drivers[key] = cls(dict(ip))
        return self._drivers[key]


class SimBoard:
    """The simulated PYNQ board for one build folder (of :func:`lcp.hw.pynq_top.generate_pynq`).

    Parameters
    ----------
    build_dir : path
        Holds ``lcp_pynq.v`` and ``lcp_engine.json``.
    src_pause, sink_pause : list of int, optional
        Cycled idle patterns of the DMA's MM2S stream and back-pressure of its S2MM stream
        (1 = idle / not ready), e.g. ``[1, 1, 1, 0]``; :meth:`set_pause` changes them later.
    ddr_bytes : int
        Size of the simulated DDR (a sparse file).
    chunk : int
        Cycles the simulation runs between looks at the socket while a DMA transfer is busy
        (a chunk ends early when a transfer completes, so this bounds the polling rate without
        wasting simulated time).
    waves : bool
        Record a VCD in the run folder (``run_dir``).
    start_timeout : float
        Seconds to wait for the simulator to connect.

    Raises
    ------
    SimError
        when the simulator does not start (with the tail of its log).
    """

    def __init__(self, build_dir: str | Path, *, src_pause=None, sink_pause=None,
                 ddr_bytes: int = 64 << 20, chunk: int = 4096, waves: bool = False,
                 start_timeout: float = 300.0):

        self.build_dir = Path(build_dir)
        doc_path = self.build_dir / "lcp_engine.json"
        try:
            self.doc = json.loads(doc_path.read_text())
        except (OSError, ValueError) as e:
            raise SimError(f"{doc_path}: not a PYNQ build ({e})") from None
        self.compile_seconds = compile_top(self.build_dir, waves)
        self.run_dir = Path(tempfile.mkdtemp(prefix="lcp_pynq_sim_", dir=self.build_dir))
        self._sock_dir = Path(tempfile.mkdtemp(prefix="lcp-pl-"))
        self._ddr = _Ddr(int(ddr_bytes), self.run_dir)
        self._proc = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock_path = self._sock_dir / "pl.sock"
        self._listener.bind(str(sock_path))
        self._listener.listen(1)
        soc = self.doc["soc"]
        cfg = {"socket": str(sock_path), "ddr_path": str(self._ddr.path), "ddr_base": DDR_BASE,
               "ddr_bytes": int(ddr_bytes), "engine_base": soc["engine"]["base"],
               "engine_range": soc["engine"]["range"], "dma_base": soc["dma"]["base"],
               "dma_range": soc["dma"]["range"], "period_ns": 1000.0 / soc["clock_mhz"],
               "chunk": int(chunk), "src_pause": list(src_pause or []),
               "sink_pause": list(sink_pause or []), "build_dir": str(self.build_dir),
               "waves": bool(waves)}
        cfg_path = self.run_dir / "config.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        self.log = self.run_dir / "serve.log"
        t0 = time.time()
        with open(self.log, "w") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "lcp.sw.pynq.simtb",
                                           str(cfg_path)], cwd=self.run_dir, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._ddr, self._sock_dir)
        conn = self._accept(start_timeout)
        status, _, cycle, hello = w.recv_reply(conn)
        self.start_seconds = time.time() - t0
        self.hello = json.loads(hello.decode())
        self.device = SimDevice(conn, self._ddr)
        self.device.cycle = cycle
        self._overlay = SimOverlay(self.device, soc)

    def _accept(self, timeout: float) -> socket.socket:
        deadline = time.time() + timeout
        self._listener.settimeout(0.5)
        while True:
            try:
                conn, _ = self._listener.accept()
                conn.settimeout(None)
                return conn
            except socket.timeout:
                pass
            if self._proc.poll() is not None or time.time() > deadline:
                tail = _tail(self.run_dir / "sim.log") or _tail(self.log)
                self.close()
                what = ("exited" if self._proc.poll() is not None
                        else f"did not connect within {timeout:.0f} s")
                raise SimError(f"the simulator {what}; log tail:\n{tail}")

    # -- what a driver uses ----------------------------------------------------------------
    def overlay(self) -> SimOverlay:
        """The stand-in for the loaded ``pynq.Overlay``."""
        return self._overlay

    def allocate(self, shape, dtype="u4", **kwargs) -> PynqBuffer:
        """``pynq.allocate`` on this board (``target`` = its device)."""
        return pynq.allocate(shape, dtype, target=self.device, **kwargs)

    # -- simulation controls ---------------------------------------------------------------
    def set_pause(self, src_pause=None, sink_pause=None) -> None:
        """Change the DMA streams' idle / back-pressure patterns (see the constructor)."""
        self.device.request(w.OP_PAUSE, payload=json.dumps(
            {"src_pause": list(src_pause or []), "sink_pause": list(sink_pause or [])}).encode())

    def cycle(self) -> int:
        """The simulated clock cycle now."""
        return self.device.request(w.OP_CYCLE)

    def close(self) -> None:
        """Stop the simulator and remove the shared DDR file (idempotent)."""
        dev = getattr(self, "device", None)
        if dev is not None and self._proc is not None and self._proc.poll() is None:
            try:
                dev.request(w.OP_QUIT)
            except SimError:
                pass
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            self._listener.close()
        except OSError:
            pass
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer()
        else:
            _stop(self._proc, self._ddr, self._sock_dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _stop(proc, ddr: _Ddr, sock_dir: Path) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    ddr.close()
    for p in sock_dir.glob("*"):
        p.unlink(missing_ok=True)
    try:
        sock_dir.rmdir()
    except OSError:
        pass


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
