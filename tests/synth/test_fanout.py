"""Driver replication before ECP5 placement (:mod:`lcp.synth._ysfanout`): no LUT4 or flip-flop
drives more than ``max_fanout`` loads, and every load still sees the same function of the same
nets (each copy is its original's type, parameters and inputs); a copied LUT fed by flip-flops
has copies of its own of them."""

import json

import pytest

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lcp.synth.design import from_component
from lcp.synth.tools import run_yosys_job


class WideEnable(wiring.Component):
    """A 4-bit-wide shift register of ``bits`` bits stepping when ``a & b``: one enable LUT
    into every flip-flop, the net a stream's advance is in a window unit."""

    def __init__(self, bits: int = 160, registered: bool = False):
        self.bits, self.registered = bits, registered
        super().__init__({"a": In(1), "b": In(1), "d": In(4), "q": Out(bits)})

    def elaborate(self, platform):
        m = Module()
        r = Signal(self.bits)
        a, b = self.a, self.b
        if self.registered:                 # the enable from two flip-flops
            a, b = Signal(), Signal()
            m.d.sync += [a.eq(self.a), b.eq(self.b)]
        with m.If(a & b):
            m.d.sync += r.eq(Cat(self.d, r[:-4]))
        m.d.comb += self.q.eq(r)
        return m


def _netlist(path):
    mod = next(m for m in json.loads(path.read_text())["modules"].values()
               if m["attributes"].get("top"))
    drivers, loads = {}, {}
    for name, c in mod["cells"].items():
        for port, bits in c["connections"].items():
            for b in bits:
                if isinstance(b, int):
                    if c["port_directions"][port] == "output":
                        drivers[b] = name
                    elif port != "CLK":
                        loads.setdefault(b, []).append((name, port))
    return mod["cells"], drivers, loads


def _origin(cells, drivers, bit):
    """The cell that drives ``bit``, or the one it copies (None: a port)."""
    name = drivers.get(bit)
    return None if name is None else cells[name]["attributes"].get("lcp_copy_of", name)


def _inputs(cells, drivers, name):
    c = cells[name]
    return {(p, k): _origin(cells, drivers, b) if isinstance(b, int) else b
            for p, bits in c["connections"].items() if c["port_directions"][p] == "input"
            for k, b in enumerate(bits)}


@pytest.mark.parametrize("registered", [False, True])
def test_replication_bounds_fanout_and_keeps_every_load_function(tmp_path, registered):
    d = from_component(WideEnable(160, registered), tmp_path / "rtl", "wide")
    runs = {}
    for name, fo in (("plain", None), ("replicated", 16)):
        w = tmp_path / name
        r = run_yosys_job("ecp5", {"files": [str(f) for f in d.files], "top": d.top,
                                   "json": str(w / "n.json"), "stat": str(w / "s.json"),
                                   "dsp": True, "max_fanout": fo}, w)
        runs[name] = (r, _netlist(w / "n.json"))
    (r0, (cells0, drv0, loads0)), (r1, (cells1, drv1, loads1)) = runs["plain"], runs["replicated"]
    rep = r1["replicated"]
    assert "replicated" not in r0
    assert rep["max_fanout_before"] >= 160 and rep["nets"] >= 1
    assert rep["copies"] >= 160 // 16 - 1 and rep["max_fanout_after"] <= 16
    # the copies are the only new cells
    assert len(cells1) == len(cells0) + rep["copies"] + rep["cone_copies"]
    replicable = {"LUT4", "TRELLIS_FF"}
    worst = max(len(ls) for b, ls in loads1.items() if cells1.get(drv1.get(b), {}).get("type")
                in replicable)
    assert worst <= 16
    # every original cell's inputs come from the same cells (or their copies) as before, and
    # each copy is its original: same type, parameters and inputs
    for name in cells0:
        assert _inputs(cells1, drv1, name) == _inputs(cells0, drv0, name), name
    copies = [n for n, c in cells1.items() if "lcp_copy_of" in c["attributes"]]
    assert len(copies) == rep["copies"] + rep["cone_copies"]
    for n in copies:
        orig = cells1[n]["attributes"]["lcp_copy_of"]
        assert cells1[n]["type"] == cells1[orig]["type"]
        assert cells1[n]["parameters"] == cells1[orig]["parameters"]
        assert _inputs(cells1, drv1, n) == _inputs(cells1, drv1, orig)
    # registered enable: every copy of the enable LUT reads flip-flops of its own (copies of
    # the two enable registers), which drive nothing else
    luts = [n for n in copies if cells1[n]["type"] == "LUT4"]
    ffs = [n for n in copies if cells1[n]["type"] == "TRELLIS_FF"]
    assert len(luts) == rep["copies"] >= 2
    assert len(ffs) == rep["cone_copies"] == (2 * len(luts) if registered else 0)
    for n in luts:
        c = cells1[n]
        feeding = {drv1.get(b) for p, bits in c["connections"].items()
                   if c["port_directions"][p] == "input" for b in bits if isinstance(b, int)}
        own = feeding & set(ffs)
        assert len(own) == (2 if registered else 0), n
        for f in own:
            (q,) = cells1[f]["connections"]["Q"]
            assert [cell for cell, _ in loads1[q]] == [n]
