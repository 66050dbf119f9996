"""Opening the driver: on a PYNQ board (:class:`LcpOverlay`, ``--backend pynq``) or on the
simulated board (``--backend pynq-sim``), and the two :class:`~lcp.executor.Executor` backends.

:class:`PynqSimExecutor` chooses the folding (cached, :func:`lcp.hw.build.cached_choice`),
generates the PYNQ top (cached, :func:`lcp.hw.pynq_top.cached_pynq_build`), compiles it with
Verilator and starts :class:`~lcp.sw.pynq.sim.SimBoard`; the driver is the same
:class:`~lcp.sw.pynq.driver.LcpDriver` that runs on a board.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import pynq

from lcp.executor import Executor
from lcp.hw.build import cached_choice
from lcp.hw.folding import Folding
from lcp.hw.pynq_top import cached_pynq_build
from lcp.ir import IRError, Model, load

from .driver import VLNV, BoardUnavailable, LcpDriver, ModelMismatch, PynqError
from .sim import SimBoard

__all__ = ["OVERLAY_ENV", "board_available", "LcpOverlay", "open_driver", "PynqExecutor",
           "PynqSimExecutor"]

#: Environment variable naming the overlay (``.bit`` file or its folder) for ``--backend pynq``.
OVERLAY_ENV = "LCP_PYNQ_OVERLAY"
_OVERLAY_BIT = "lcp_overlay.bit"
_ENGINE_JSON = "lcp_engine.json"


# -- on a board ------------------------------------------------------------------------------

def board_available() -> str | None:
    """None on a PYNQ board, else why not (one line)."""
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
            model = load(bitfile.parent / "model.json")
        self.driver = LcpDriver(engine, dma, doc=doc, model=model, allocate=pynq.allocate,
                                batch=batch, timeout=timeout, owner=self)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.driver.predict(x)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.driver.run_int(xq)


# -- opening a driver, board or simulation ---------------------------------------------------

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
    """``--backend pynq-sim``: :class:`LcpDriver` on the simulated board (:mod:`.sim`).

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
        Idle / back-pressure patterns of the DMA streams (:class:`~.sim.SimBoard`).
    cache : path, optional
        Build cache folder (default ``lcp.cache.cache_root()/"pynq"``).
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

        f = self.folding
        if f is not None and not isinstance(f, Folding):
            f = Folding.load(f)
        if f is None:
            f = cached_choice(self.model, self.scope, self.index, self.in_width,
                              self.out_width, target=self.target, budget=self.budget).folding
        elif (f.in_width, f.out_width) != (self.in_width, self.out_width) and (
                self.in_width, self.out_width) != (64, 64):
            f = replace(f, in_width=self.in_width, out_width=self.out_width)
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
