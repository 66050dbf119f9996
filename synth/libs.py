"""Standard-cell libraries for the ASIC flow: where they are, what their cells are.

Two libraries are known:

``osu018``
    OSU 0.18 um cells from Debian's ``qflow-tech-osu018`` package
    (``osu018_stdcells.lib``; time unit 1 ns, capacitance 1 pF, 1.8 V). Found in the package's
    install folder, or in ``--pdk-dir`` / ``$LCP_OSU018_DIR``.
``asap7``
    ASAP7 7.5-track RVT TT cells (time 1 ps, capacitance 1 fF, 0.7 V), five ``.lib.gz`` files
    that are decompressed once into a cache folder (never into the repository). Found in
    ``--pdk-dir`` / ``$LCP_ASAP7_DIR``, else in ``<repo>/../shared/pdk/asap7`` when that exists.
    Its plain flip-flops have an inverted output (``QN``); the only ``Q`` flip-flop is a large x4
    cell, so the flow forbids it and Yosys' ``dfflibmap`` inserts the inverters.

A small line-oriented liberty reader (:func:`read_cells`) gives each cell's area, pins (direction,
capacitance, function) and flip-flop group; the flow needs those to cut flip-flops for power
analysis and to check a mapped netlist.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LibraryError", "CellInfo", "CellLibrary", "LIBRARIES", "get_library", "read_cells",
           "cache_dir", "repo_root"]

#: Library names known to :func:`get_library`.
LIBRARIES = ("osu018", "asap7")

_OSU018_DEFAULT = Path("/usr/share/qflow/tech/osu018")   # Debian package qflow-tech-osu018
_ASAP7_FILES = ("asap7sc7p5t_AO_RVT_TT_nldm_211120.lib.gz",
                "asap7sc7p5t_INVBUF_RVT_TT_nldm_220122.lib.gz",
                "asap7sc7p5t_OA_RVT_TT_nldm_211120.lib.gz",
                "asap7sc7p5t_SEQ_RVT_TT_nldm_220123.lib.gz",
                "asap7sc7p5t_SIMPLE_RVT_TT_nldm_211120.lib.gz")


class LibraryError(ValueError):
    """A cell library that cannot be found or read (message names the path and the fix)."""


def repo_root() -> Path:
    """The repository folder (this package is installed in place from it)."""
    return Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Folder for decompressed libraries and parsed summaries: ``$LCP_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lcp``, else ``~/.cache/lcp``."""
    if os.environ.get("LCP_CACHE_DIR"):
        d = Path(os.environ["LCP_CACHE_DIR"])
    else:
        d = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lcp"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass(frozen=True)
class CellInfo:
    """One liberty cell.

    Members
    -------
    name, area : cell name and area (um2).
    inputs : input pin -> capacitance (library units).
    outputs : output pin -> function string (``""`` when the library gives none).
    ff : ``(state, state_inv, next_state, clocked_on)`` of the ``ff`` group, or ``None``.
    latch : whether the cell has a ``latch`` group.
    icg : integrated clock gate: ``(kind, clock_pin, enable_pin, out_pin, test_pin)`` (``kind``
        the liberty ``clock_gating_integrated_cell``, e.g. ``latch_posedge_precontrol``;
        ``test_pin`` may be ``None``), else ``None``.
    """

    name: str
    area: float
    inputs: dict[str, float]
    outputs: dict[str, str]
    ff: tuple[str, str, str, str] | None = None
    latch: bool = False
    icg: tuple[str, str, str, str, str | None] | None = None

    @property
    def sequential(self) -> bool:
        return self.ff is not None or self.latch

    def ff_output(self) -> tuple[str, bool] | None:
        """``(pin, inverted)``: an output pin that shows the flip-flop state, ``inverted`` when
        the pin carries the complement of ``next_state`` after a clock edge; ``None`` for cells
        that are not plain flip-flops (``next_state`` other than one input or its negation)."""
        if self.ff is None:
            return None
        state, state_inv, nxt, _ = self.ff
        nxt = nxt.replace(" ", "").strip("()")
        if nxt.startswith("!"):
            data_inv, data = True, nxt[1:]
        else:
            data_inv, data = False, nxt
        if data not in self.inputs:
            return None
        for pin, fn in sorted(self.outputs.items()):
            f = fn.replace(" ", "").strip("()")
            if f == state:
                return pin, data_inv
            if f in (state_inv, "!" + state):
                return pin, not data_inv
        return None

    def ff_data_pin(self) -> str | None:
        """The input pin that ``next_state`` reads (``D``), or ``None``."""
        if self.ff is None:
            return None
        d = self.ff[2].replace(" ", "").strip("()").lstrip("!")
        return d if d in self.inputs else None


@dataclass(frozen=True)
class CellLibrary:
    """A standard-cell library as the flow uses it.

    Members
    -------
    name : ``osu018`` or ``asap7``.
    liberty : liberty files (all read by Yosys' ``abc``/``stat`` and by OpenSTA).
    seq_liberty : the file(s) holding the flip-flops (``dfflibmap``).
    time_unit_ps, cap_unit_ff : the library's time and capacitance units.
    voltage : nominal supply (V).
    dff_dont_use, dont_use : cells the mapper must not pick (flip-flops / logic).
    tie : ``(hi_cell, hi_pin, lo_cell, lo_pin)`` or ``None`` (constants stay ``1'b0``/``1'b1``).
    buffer : ``(cell, in_pin, out_pin)`` of the buffer that replaces wire-to-wire connections.
    fanout_buffer : the buffer of the fanout trees on high-fanout nets.
    lef : LEF files (for OpenROAD; informative otherwise).
    source : where the files were found (folder; shown in reports).
    """

    name: str
    liberty: tuple[Path, ...]
    seq_liberty: tuple[Path, ...]
    time_unit_ps: float
    cap_unit_ff: float
    voltage: float
    dff_dont_use: tuple[str, ...] = ()
    dont_use: tuple[str, ...] = ()
    tie: tuple[str, str, str, str] | None = None
    buffer: tuple[str, str, str] = ("BUFX2", "A", "Y")
    fanout_buffer: tuple[str, str, str] = ("BUFX4", "A", "Y")
    lef: tuple[Path, ...] = ()
    source: str = ""
    _cells: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def clock_gate(self) -> CellInfo | None:
        """The smallest integrated clock gate for rising-edge flip-flops (a latch-based
        ``latch_posedge*`` cell), or ``None`` when the library has none."""
        icgs = [c for c in self.cells.values()
                if c.icg and c.icg[0].startswith("latch_posedge") and c.icg[1] and c.icg[2]
                and c.icg[3]]
        return min(icgs, key=lambda c: (c.area, c.name)) if icgs else None

    @property
    def cells(self) -> dict[str, CellInfo]:
        """Cell name -> :class:`CellInfo`, over every liberty file (parsed once, cached)."""
        if not self._cells:
            for lib in self.liberty:
                self._cells.update(read_cells(lib))
        return self._cells

    def to_json(self) -> dict:
        return {"name": self.name, "source": self.source,
                "liberty": [p.name for p in self.liberty], "voltage_v": self.voltage,
                "time_unit_ps": self.time_unit_ps, "cap_unit_ff": self.cap_unit_ff}


def get_library(name: str, pdk_dir: str | os.PathLike | None = None) -> CellLibrary:
    """The library ``name`` (see :data:`LIBRARIES`), its files checked to exist.

    Parameters
    ----------
    name : ``osu018`` or ``asap7``.
    pdk_dir : folder holding the library files; default from the environment
        (``LCP_OSU018_DIR`` / ``LCP_ASAP7_DIR``) or the library's usual place.

    Raises
    ------
    LibraryError
        Unknown name, or a folder without the expected files (the message says how to fix it).
    """
    if name == "osu018":
        return _osu018(pdk_dir)
    if name == "asap7":
        return _asap7(pdk_dir)
    raise LibraryError(f"unknown cell library {name!r} (known: {', '.join(LIBRARIES)})")


def _osu018(pdk_dir) -> CellLibrary:
    d = Path(pdk_dir or os.environ.get("LCP_OSU018_DIR") or _OSU018_DEFAULT)
    lib = d / "osu018_stdcells.lib"
    if not lib.is_file():
        raise LibraryError(
            f"OSU 0.18 um library not found: {lib} does not exist (install the Debian package "
            f"qflow-tech-osu018 with `make apt`, or pass --pdk-dir / set LCP_OSU018_DIR to a "
            f"folder holding osu018_stdcells.lib)")
    lef = d / "osu018_stdcells.lef"
    return CellLibrary(
        name="osu018", liberty=(lib,), seq_liberty=(lib,), time_unit_ps=1000.0, cap_unit_ff=1000.0,
        voltage=1.8,
        # DFFSR/LATCH are for asynchronous designs; tri-state buffers are never wanted.
        dff_dont_use=("DFFSR", "DFFNEGX1"), dont_use=("TBUFX1", "TBUFX2", "LATCH", "DFFSR"),
        lef=(lef,) if lef.is_file() else (), source=str(d))


def _asap7_default() -> Path | None:
    d = repo_root().parent / "shared" / "pdk" / "asap7"
    return d if d.is_dir() else None


def _asap7(pdk_dir) -> CellLibrary:
    given = pdk_dir or os.environ.get("LCP_ASAP7_DIR")
    d = Path(given) if given else _asap7_default()
    if d is None:
        raise LibraryError("ASAP7 library folder not given: pass --pdk-dir DIR or set "
                           "LCP_ASAP7_DIR to the folder with the asap7sc7p5t_*.lib.gz files")
    if not d.is_dir():
        raise LibraryError(f"ASAP7 library folder {d} does not exist (pass --pdk-dir DIR or set "
                           f"LCP_ASAP7_DIR)")
    missing = [f for f in _ASAP7_FILES if not (d / f).is_file() and not (d / f[:-3]).is_file()]
    if missing:
        raise LibraryError(f"ASAP7 library folder {d} lacks {', '.join(missing)}")
    libs = tuple(_decompressed(d / f) for f in _ASAP7_FILES)
    lef = tuple(sorted(d.glob("*.lef.gz")) + sorted(d.glob("*.lef")))
    return CellLibrary(
        name="asap7", liberty=libs, seq_liberty=tuple(p for p in libs if "_SEQ_" in p.name),
        time_unit_ps=1.0, cap_unit_ff=1.0, voltage=0.7,
        dff_dont_use=("DFFHQx4_ASAP7_75t_R", "DFFASRHQNx1_ASAP7_75t_R"),
        dont_use=("ICG*", "DHL*", "DLL*", "SDF*", "*x24*", "*x16*", "*x12*"),
        tie=("TIEHIx1_ASAP7_75t_R", "H", "TIELOx1_ASAP7_75t_R", "L"),
        buffer=("BUFx2_ASAP7_75t_R", "A", "Y"), fanout_buffer=("BUFx4_ASAP7_75t_R", "A", "Y"),
        lef=lef, source=str(d))


def _decompressed(path: Path) -> Path:
    """``path`` itself when it is not gzipped, else its decompressed copy in the cache."""
    if path.suffix != ".gz":
        return path
    if not path.exists() and path.with_suffix("").exists():
        return path.with_suffix("")
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_dir() / "lib" / key / path.name[:-3]
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out)
    return out


_CELL = re.compile(r'^\s*cell\s*\(\s*"?([^")\s]+)"?\s*\)')
_PIN = re.compile(r'^\s*pin\s*\(\s*"?([^")\s]+)"?\s*\)')
_ATTR = re.compile(r'^\s*(\w+)\s*:\s*"?([^";]*?)"?\s*;?\s*$')
_FF = re.compile(r'^\s*(ff|latch)\s*\(\s*"?(\w+)"?\s*,\s*"?(\w+)"?\s*\)')


def read_cells(path: str | os.PathLike) -> dict[str, CellInfo]:
    """Cells of one liberty file: name -> :class:`CellInfo` (cached as JSON by file identity).

    Reads one statement per line (the layout of the OSU and ASAP7 files); table contents are
    skipped. Raises :class:`LibraryError` when the file has no cell.
    """
    path = Path(path)
    st = path.stat()
    key = hashlib.sha1(f"v4:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir() / "cells" / f"{path.name}.{key[:12]}.json"
    if memo.exists():
        raw = json.loads(memo.read_text())
    else:
        raw = _parse_liberty(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(raw))
    if not raw:
        raise LibraryError(f"{path}: no cell found (not a liberty file?)")
    return {n: CellInfo(n, c["area"], c["inputs"], c["outputs"],
                        tuple(c["ff"]) if c["ff"] else None, c["latch"],
                        _icg(c)) for n, c in raw.items()}


def _icg(c: dict) -> tuple | None:
    kind = c.get("icg")
    if not kind:
        return None
    roles = c.get("gate_pins", {})
    return (kind, roles.get("clock"), roles.get("enable"), roles.get("out"), roles.get("test"))


def _parse_liberty(path: Path) -> dict:
    cells: dict[str, dict] = {}
    depth = 0
    cell = pin = None
    cell_depth = pin_depth = ff_depth = -1
    pin_attrs: dict = {}
    ff: dict = {}
    with open(path, "r", errors="replace") as f:
        for line in f:
            if cell is None:
                m = _CELL.match(line)
                if m:
                    cell = {"area": 0.0, "inputs": {}, "outputs": {}, "ff": None, "latch": False,
                            "icg": None, "gate_pins": {}}
                    cells[m.group(1)] = cell
                    cell_depth = depth
            elif depth == cell_depth + 1:
                m = _PIN.match(line)
                if m:
                    pin, pin_depth, pin_attrs = m.group(1), depth, {}
                else:
                    m = _FF.match(line)
                    if m:
                        if m.group(1) == "latch":
                            cell["latch"] = True
                        else:
                            ff = {"state": m.group(2), "inv": m.group(3)}
                            ff_depth = depth
                    else:
                        m = _ATTR.match(line)
                        if m and m.group(1) == "area":
                            cell["area"] = float(m.group(2))
                        elif m and m.group(1) == "clock_gating_integrated_cell":
                            cell["icg"] = m.group(2).strip()
            elif pin is not None and depth == pin_depth + 1:
                m = _ATTR.match(line)
                if m and m.group(1) in ("direction", "capacitance", "function"):
                    pin_attrs[m.group(1)] = m.group(2).strip()
                elif (m and m.group(1).startswith("clock_gate_") and m.group(1).endswith("_pin")
                      and m.group(2).strip() == "true"):
                    cell["gate_pins"][m.group(1)[len("clock_gate_"):-len("_pin")]] = pin
            elif ff_depth >= 0 and depth == ff_depth + 1:
                m = _ATTR.match(line)
                if m and m.group(1) in ("next_state", "clocked_on"):
                    ff[m.group(1)] = m.group(2).strip()
            depth += line.count("{") - line.count("}")
            if pin is not None and depth <= pin_depth:
                d = pin_attrs.get("direction")
                if d == "input":
                    cell["inputs"][pin] = float(pin_attrs.get("capacitance", 0.0))
                elif d == "output":
                    cell["outputs"][pin] = pin_attrs.get("function", "")
                pin = None
            if ff_depth >= 0 and depth <= ff_depth:
                cell["ff"] = [ff["state"], ff["inv"], ff.get("next_state", ""),
                              ff.get("clocked_on", "")]
                ff_depth = -1
            if cell is not None and depth <= cell_depth:
                cell = None
    return cells
